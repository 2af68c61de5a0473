"""Pretrain a SpidR or DinoSR model from a TOML config (resumes automatically from its last checkpoint).

The same command runs on one CPU/GPU, under torchrun (one or many nodes, DDP), or on SLURM.

Examples:
    spidrkit manifest data/wavs --out data/train.csv
    spidrkit train tiny --set data.train_manifests=data/train.csv --set run.output_dir=runs/tiny
    torchrun --nproc-per-node 8 -m spidrkit.cli.main train base \\
        --set 'data.train_manifests=["librispeech/train-960.csv"]'
    spidrkit train base --slurm --nodes 2 --gpus-per-node 8 --partition gpu --time 3-00:00:00

Adapt a pretrained model to new audio (continued pretraining; docs/training.md, "Adapting a
pretrained model"): the architecture comes from the checkpoint, the recipe sets the rest:
    spidrkit train adapt --init spidr_base --set data.train_manifests=my_audio.csv
    spidrkit train adapt --init runs/small/checkpoints/checkpoint_00002000.pt \
        --set data.train_manifests=new.csv --set run.init_codebooks=kmeans

Outputs in run.output_dir: checkpoints/checkpoint_<step>.pt (official {"model": ...} layout plus
optimizer, scheduler, RNG and sampler state), checkpoints/config.json, metrics.jsonl, tb/ (TensorBoard).
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import add_training_options, count, training_overrides
from spidrkit.errors import ConfigError

HELP = "pretrain or adapt SpidR/DinoSR (single process, torchrun, or SLURM via submitit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="pretraining TOML file, or a shipped config name (tiny, small, base, adapt)",
    )
    parser.add_argument(
        "--init",
        metavar="CKPT_OR_PRESET",
        default=None,
        help="start from this model (= --set run.init_checkpoint=...): a preset with published "
        "weights (spidr_base, dinosr_base_reproduced, dinosr_base_original), a checkpoint file "
        "(official, spidrkit, .safetensors, fairseq DinoSR) or a model folder; the [model] "
        "section then comes from it, the optimizer and schedule start fresh",
    )
    add_training_options(parser)
    slurm = parser.add_argument_group("SLURM (submitit)")
    slurm.add_argument(
        "--slurm", action="store_true", help="submit to SLURM instead of running here"
    )
    slurm.add_argument("--nodes", type=count(1, 1 << 16), default=1, help="nodes [1]")
    slurm.add_argument(
        "--gpus-per-node", type=count(1, 1024), default=1, help="GPUs (= processes) per node [1]"
    )
    slurm.add_argument("--partition", default=None, help="SLURM partition")
    slurm.add_argument("--time", default="24:00:00", help="time limit per allocation [24:00:00]")
    slurm.add_argument(
        "--cpus-per-task", type=count(1, 1 << 16), default=10, help="CPUs per GPU process [10]"
    )
    slurm.add_argument(
        "--mem-gb", type=count(1, 1 << 24), default=None, help="memory per node in GB"
    )
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--qos", default=None)
    slurm.add_argument("--constraint", default=None)
    slurm.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other submitit parameter, e.g. slurm_exclusive=true (repeatable)",
    )


def _slurm_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import tomllib

    from spidrkit.train.slurm import SlurmOptions, parse_time

    extra = {}
    for item in args.slurm_arg:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--slurm-arg {item!r}: expected KEY=VALUE")
        try:
            extra[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            extra[key] = raw
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise ConfigError("--nodes and --gpus-per-node must be >= 1")
    return SlurmOptions(
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        partition=args.partition,
        time_min=parse_time(args.time),
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        account=args.account,
        qos=args.qos,
        constraint=args.constraint,
        extra=extra,
    )


def run(args: argparse.Namespace) -> int:
    import json

    if args.slurm:
        from spidrkit.train.slurm import submit

        if args.overwrite or args.no_resume:
            raise ConfigError(
                "--overwrite and --no-resume are not passed to SLURM jobs (a requeued job resumes "
                "its own run); move or delete the old run folder first"
            )

        overrides = training_overrides(args)
        if args.init is not None:
            overrides.append(f"run.init_checkpoint={json.dumps(str(args.init))}")
        job = submit(args.config, overrides, _slurm_options(args))
        print(f"submitted SLURM job {job.job_id}")
        return 0

    from spidrkit.train.config import load_train_config
    from spidrkit.train.distributed import cleanup
    from spidrkit.train.trainer import pretrain

    overrides = training_overrides(args)
    if args.init is not None:
        overrides.append(f"run.init_checkpoint={json.dumps(str(args.init))}")
    cfg = load_train_config(args.config, overrides)
    try:
        result = pretrain(cfg, overwrite=args.overwrite)
    finally:
        cleanup()
    if result.checkpoint is not None:
        print(f"step {result.step}: {result.checkpoint}")
    return 0
