"""Validate a pretraining or unit-LM config and print it fully resolved (defaults filled in, overrides
applied). A unit-LM config (for `spidrkit lm-train`) is recognised by its `preset` key or `[optim]`
section.

Every unknown key and bad value is reported at once, by its dotted path; the exit status is 2 then.

Example:
    spidrkit check-config tiny --set optimizer.lr=1e-3 --set data.train_manifests=m.csv
    spidrkit check-config base --json resolved.json
    spidrkit check-config base --json -        # JSON on stdout instead of TOML
    spidrkit check-config lm_tiny
"""

from __future__ import annotations

import argparse
import sys

from spidrkit.cli.options import add_json, add_overrides, json_to_stdout, write_json_output
from spidrkit.config import dump_toml, load_config, read_toml, to_dict

HELP = "validate a pretraining or unit-LM config and print the resolved values"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="pretraining or unit-LM TOML file, or a shipped config name (spidrkit config list)",
    )
    add_overrides(parser)
    add_json(parser, help="write the resolved config as JSON")


def run(args: argparse.Namespace) -> int:
    raw = read_toml(args.config)
    is_lm = "preset" in raw or "optim" in raw
    missing_manifests = False
    if is_lm:
        from spidrkit.lm.config import LMTrainConfig

        data = to_dict(load_config(LMTrainConfig, args.config, args.overrides))
    else:
        from spidrkit.train.config import load_train_config

        cfg = load_train_config(args.config, args.overrides)
        data = cfg.to_dict()
        missing_manifests = not cfg.data.train_manifests
    if json_to_stdout(args):
        write_json_output(data, args.json_out)
    else:
        print(
            f"# resolved from {args.config}"
            + (f" with {len(args.overrides)} override(s)" if args.overrides else "")
        )
        print(dump_toml(data))
        if args.json_out:
            write_json_output(data, args.json_out)
            print(f"# wrote {args.json_out}")
    if missing_manifests:
        print(
            "# note: data.train_manifests is empty; `spidrkit train` needs it "
            "(--set data.train_manifests=PATH)",
            file=sys.stderr if json_to_stdout(args) else sys.stdout,
        )
    return 0
