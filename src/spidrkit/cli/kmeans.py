"""Train minibatch k-means (k-means++ init, seeded) on a capped random sample of feature frames.

Frames come from a features folder written by `spidrkit extract`, or straight from audio with an
encoder (--model + --layer) or a baseline. The result is a weights_only-safe torch file with the
centroids [k, dim] and metadata (layer, k, inertia, source, ...).

Examples:
    spidrkit kmeans --features feats/spidr-l6 -k 256 --out km/spidr-l6-256.pt
    spidrkit kmeans --audio data/train-clean-100.csv --model spidr_base --layer 6 -k 256 \\
        --max-files 2000 --max-frames 1000000 --out km/spidr-l6-256.pt --device cuda
"""

from __future__ import annotations

import argparse
import re

from spidrkit.cli.options import (
    SEED,
    add_no_progress,
    add_out,
    add_source_arguments,
    build_encoder,
    count,
)
from spidrkit.errors import ConfigError
from spidrkit.utils.progress import progress

HELP = "train k-means on features (or audio + encoder) and save the centroids"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--features", metavar="DIR", help="features folder (.pt / .npy per file)")
    data.add_argument("--audio", metavar="MANIFEST_OR_DIR", help="audio to run --model on")
    parser.add_argument(
        "-k", "--k", type=count(1, 1 << 20), default=256, help="number of clusters (256)"
    )
    add_out(parser, required=True, help="output file (.pt)")
    add_source_arguments(parser, one_layer=True)
    parser.add_argument(
        "--max-frames",
        type=count(1, 1 << 34),
        default=1_000_000,
        help="frames sampled uniformly at random for training (1,000,000)",
    )
    parser.add_argument(
        "--max-files", type=count(1), help="use a random subset of this many files (default: all)"
    )
    parser.add_argument(
        "--batch-size", type=count(1, 1 << 28), default=10000, help="frames per minibatch"
    )
    parser.add_argument(
        "--epochs", type=count(1, 1 << 20), default=100, help="max passes over the sample"
    )
    parser.add_argument(
        "--patience",
        type=count(0),
        default=20,
        help="stop after this many minibatches without improvement (0 = never)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (sampling and k-means)")
    add_no_progress(parser)


def _subset(n: int, max_files: int | None, seed: int) -> list[int]:
    import torch

    if max_files is None or max_files >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:max_files].tolist())


def run(args: argparse.Namespace) -> int:
    from spidrkit.audio.io import SAMPLE_RATE
    from spidrkit.units.extract import list_audio, run_corpus
    from spidrkit.units.files import list_features, load_features
    from spidrkit.units.kmeans import KMeansConfig, kmeans_of_frames
    from spidrkit.utils.device import resolve_device
    from spidrkit.utils.provenance import features_folder_source

    device = resolve_device(args.device)
    show = not args.no_progress
    layer = args.layer
    if args.features:
        identity, recorded_layer = features_folder_source(args.features)
        if layer is not None and recorded_layer is not None and layer != recorded_layer:
            raise ConfigError(
                f"{args.features}: holds layer {recorded_layer} features (its extract record), "
                f"not layer {layer}"
            )
        layer = layer if layer is not None else recorded_layer
        files = list_features(args.features)
        files = [files[i] for i in _subset(len(files), args.max_files, args.seed)]
        stream = (load_features(p) for _, p in progress(files, desc="read features", enabled=show))
        source_desc = str(args.features)
        if layer is None:  # <out>/layer6 written by `spidrkit extract --layers 6 7`
            m = re.fullmatch(r"layer(\d+)", args.features.rstrip("/").split("/")[-1])
            layer = int(m.group(1)) if m else None
    else:
        if args.model and layer is None:
            raise ConfigError("give the layer to cluster with --layer (e.g. --layer 6)")
        items = list_audio(args.audio, show_progress=show)
        items = [items[i] for i in _subset(len(items), args.max_files, args.seed)]
        encoder = build_encoder(args, [layer] if layer is not None else None, device)
        (key,) = encoder.check_layers([layer] if layer is not None else None)
        bar = progress(
            total=round(sum(it.num_samples for it in items) / SAMPLE_RATE, 2),
            desc="extract",
            unit="s",
            enabled=show,
        )
        before_residual = not args.after_residual
        feats = run_corpus(
            encoder, items, layers=[key], before_residual=before_residual, on_batch=bar.update
        )
        identity = encoder.identity(before_residual=before_residual)
        stream = (f[key] for _, f in feats)
        source_desc = f"{args.audio} ({args.model or args.baseline})"
    config = KMeansConfig(
        k=args.k,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
    )
    km = kmeans_of_frames(
        stream,
        config,
        max_frames=args.max_frames,
        layer=layer,
        source=source_desc,
        identity=identity,
        device=device,
        progress=show,
    )
    km.save(args.out)
    print(
        f"k-means k={km.k} dim={km.dim} layer={layer}: inertia/frame "
        f"{km.meta['inertia_per_frame']:.4f} on {km.meta['num_frames']} frames -> {args.out}"
    )
    return 0
