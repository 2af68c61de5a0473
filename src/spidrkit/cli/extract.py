"""Extract features of chosen layers (or a baseline) for every utterance of a manifest or folder.

Writes one [frames, dim] tensor per utterance at <out>/<fileid>.pt (or .npy), the layout ABX tools
read; with several layers, one folder per layer: <out>/layer6/<fileid>.pt. Finished files are
skipped, so an interrupted run resumes. Under torchrun each rank takes every world-th file.

Examples:
    spidrkit extract data/dev-clean.csv --model spidr_base --layers 6 --out feats/spidr-l6
    spidrkit extract wavs/ --model runs/tiny/checkpoints/checkpoint_00000200.pt --layers 4,6 -o feats/ --format npy
    spidrkit extract wavs/ --baseline mfcc --out feats/mfcc
    spidrkit extract wavs/ --baseline hf:facebook/hubert-base-ls960 --layers 11 --out feats/hubert
    torchrun --nproc-per-node 4 -m spidrkit.cli.main extract data/train.csv --model spidr_base \\
        --layers 6 --out feats/train-l6
"""

from __future__ import annotations

import argparse
import logging

from spidrkit.cli.options import add_no_progress, add_out, add_source_arguments, build_encoder

HELP = "extract layer features (or MFCC/log-mel/HF baselines) to one file per utterance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        help="manifest (CSV / archive CSV / fairseq TSV), CSV of paths, or audio folder",
    )
    add_out(parser, required=True, help="output folder")
    add_source_arguments(parser)
    parser.add_argument("--format", default="pt", choices=["pt", "npy"], help="file format")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16"],
        help="stored precision (default float32)",
    )
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from spidrkit.units.extract import dist_rank_world, extract_features, list_audio
    from spidrkit.utils.device import resolve_device

    rank, world, local_rank = dist_rank_world()
    device = resolve_device(args.device, local_rank)
    items = list_audio(args.input, show_progress=not args.no_progress and rank == 0)
    encoder = build_encoder(args, args.layers, device)
    stats = extract_features(
        encoder,
        items,
        args.out,
        layers=args.layers,
        before_residual=not args.after_residual,
        fmt=args.format,
        dtype=getattr(torch, args.dtype),
        rank=rank,
        world=world,
        show_progress=not args.no_progress,
    )
    logging.getLogger("spidrkit.extract").info(
        "rank %d/%d: %d files written, %d already done, %.1f audio-s in %.1f s (%.1f audio-s/s)"
        " -> %s",
        rank,
        world,
        stats.num_files,
        stats.num_skipped,
        stats.audio_seconds,
        stats.wall_seconds,
        stats.speed,
        args.out,
    )
    return 0
