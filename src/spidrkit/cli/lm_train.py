"""Train a causal unit language model (OPT-125M by default) on deduplicated units.

Example (a tiny model on a laptop, then the paper's size on GPUs):

    spidrkit lm-train lm_tiny --set data.train=units/train.jsonl
    torchrun --nproc-per-node 4 -m spidrkit.cli.main lm-train lm_opt125m \\
        --set data.train=units/train.jsonl --set data.valid=units/valid.jsonl

The units JSONL is what `spidrkit units` writes. The run folder (run.output_dir) gets
checkpoint_<step>.pt, best.pt, config.json, metrics.jsonl and TensorBoard events in tb/; running the
same command again resumes from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import os

from spidrkit.cli.options import add_training_options, training_overrides
from spidrkit.config import load_config

HELP = "train a unit language model (OPT-125M or tiny presets) on units JSONL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", help="TOML config, or a shipped config name (lm_tiny, lm_opt125m)"
    )
    add_training_options(parser)


def run(args: argparse.Namespace) -> int:
    from spidrkit.lm.config import LMTrainConfig
    from spidrkit.lm.train import train_lm
    from spidrkit.train.distributed import cleanup

    cfg = load_config(LMTrainConfig, args.config, training_overrides(args))
    try:
        result = train_lm(cfg, overwrite=args.overwrite)
    finally:
        cleanup()
    if os.environ.get("RANK", "0") != "0":
        return 0
    line = f"step {result.step}: train loss {result.train_loss:.4f}"
    if result.valid_loss is not None:
        line += f", valid loss {result.valid_loss:.4f} (ppl {result.valid_ppl:.2f})"
    print(line)
    best = result.output_dir / "best.pt"
    if best.is_file():
        print(f"model: {best}")
    else:  # no validation loss was computed (no validation tokens): the last checkpoint
        from spidrkit.train.checkpoint import find_latest_checkpoint

        print(f"model: {find_latest_checkpoint(result.output_dir)} (no best.pt: no validation)")
    return 0
