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
from typing import Any

from spidrkit.cli.options import add_device, add_layers, add_model, add_no_progress, add_out

HELP = "extract layer features (or MFCC/log-mel/HF baselines) to one file per utterance"


def add_source_arguments(parser: argparse.ArgumentParser, *, one_layer: bool = False) -> None:
    """--model / --baseline / --layers / --device / batching options (shared with kmeans, units).

    ``one_layer``: ``--layer`` (= ``--layers``) takes a single layer, into ``args.layer``.
    """
    src = parser.add_mutually_exclusive_group()
    add_model(src, help="spidrkit or official checkpoint, or a preset name (spidr_base, ...)")
    src.add_argument(
        "--baseline",
        metavar="NAME",
        help="mfcc, logmel, or hf:<folder-or-hub-name> (needs spidrkit[hf])",
    )
    if one_layer:
        add_layers(parser, one=True)
    else:
        add_layers(parser, help="1-based layers: 4,5,6 or 4 5 6 (0 = HF Transformer input)")
    parser.add_argument(
        "--after-residual",
        action="store_true",
        help="layer outputs x instead of the layer results f (before residual)",
    )
    parser.add_argument(
        "--hop-ms",
        type=int,
        default=20,
        choices=[10, 20],
        help="frame step of the mfcc/logmel baselines (default 20, as the encoders)",
    )
    parser.add_argument(
        "--cmvn",
        action="store_true",
        help="mfcc/logmel: normalise each dimension per utterance (the ZeroSpeech MFCC baseline)",
    )
    add_device(parser)
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=200.0,
        help="max padded audio seconds per batch (default 200)",
    )
    parser.add_argument("--batch-items", type=int, default=64, help="max files per batch")


def build_source(args: argparse.Namespace, layers: list[int] | None, device: Any) -> Any:
    """The feature source named by --model / --baseline, on ``device``."""
    from spidrkit.errors import ConfigError
    from spidrkit.units.baselines import parse_baseline
    from spidrkit.units.extract import EncoderFeatures, load_encoder

    if args.baseline:
        cmvn = getattr(args, "cmvn", False)
        return parse_baseline(args.baseline, layers, hop_ms=args.hop_ms, cmvn=cmvn).to(device)
    if not args.model:
        raise ConfigError("give the encoder with --model CKPT_OR_PRESET, or --baseline")
    if not layers:
        raise ConfigError("give the layers to extract with --layers (e.g. --layers 6)")
    model = load_encoder(args.model, device)
    return EncoderFeatures(model, layers, before_residual=not args.after_residual)


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
    import logging

    import torch

    from spidrkit.units.extract import dist_rank_world, extract_features, list_audio
    from spidrkit.utils.device import resolve_device

    rank, world, local_rank = dist_rank_world()
    device = resolve_device(args.device, local_rank)
    items = list_audio(args.input, show_progress=not args.no_progress and rank == 0)
    source = build_source(args, args.layers, device)
    stats = extract_features(
        source,
        items,
        args.out,
        fmt=args.format,
        dtype=getattr(torch, args.dtype),
        rank=rank,
        world=world,
        max_batch_seconds=args.batch_seconds,
        max_batch_items=args.batch_items,
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
