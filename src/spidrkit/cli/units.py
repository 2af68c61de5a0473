"""Turn audio (or saved features) into discrete units, written as JSONL (and optionally text).

Codebook units are the argmax of the model's student head for a layer (SpidR: the head on that
layer; DinoSR: the head predicting that layer's codes); k-means units are the nearest centroid of
the layer's features. Consecutive repeats are merged (with durations in 20 ms frames) unless
--no-dedup. Each JSONL line: {"audio": ..., "units": [...], "durations": [...]}.

Examples:
    spidrkit units data/dev-clean.csv --model spidr_base --layer 6 --out units/cb-l6.jsonl
    spidrkit units wavs/ --model spidr_base --layer 6 --kmeans km/spidr-l6-256.pt \\
        --out units/km-l6.jsonl --txt units/km-l6.txt
    spidrkit units --features feats/spidr-l6 --kmeans km/spidr-l6-256.pt --out units/km-l6.jsonl
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import add_no_progress, add_out, add_source_arguments, build_encoder
from spidrkit.errors import ConfigError
from spidrkit.utils.files import refuse_clobbering
from spidrkit.utils.progress import progress

HELP = "codebook or k-means units of audio/features, as JSONL (+ text)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", help="manifest or audio folder (omit with --features)")
    parser.add_argument("--features", metavar="DIR", help="features folder instead of audio")
    add_out(parser, required=True, help="output units JSONL file")
    parser.add_argument("--txt", help="also write one line of space-separated units per utterance")
    parser.add_argument(
        "--kmeans",
        metavar="FILE",
        help="k-means file from `spidrkit kmeans`; without it, the model's codebook units",
    )
    parser.add_argument(
        "--no-dedup",
        action="store_true",
        help="keep one unit per 20 ms frame (no merging of repeats)",
    )
    parser.add_argument(
        "--name",
        choices=["path", "fileid"],
        default="path",
        help="what the 'audio' field holds for audio input (default: path)",
    )
    add_source_arguments(parser, one_layer=True)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from spidrkit.units.extract import list_audio
    from spidrkit.units.files import list_features, load_features, write_units
    from spidrkit.units.kmeans import KMeans
    from spidrkit.units.units import units_from_features, units_of_audio
    from spidrkit.utils.device import resolve_device
    from spidrkit.utils.provenance import features_folder_source

    refuse_clobbering(
        {"--out": args.out, "--txt": args.txt}, [args.input, args.kmeans, args.features]
    )
    dedup = not args.no_dedup
    show = not args.no_progress
    device = resolve_device(args.device)
    kmeans = KMeans.load(args.kmeans, device) if args.kmeans else None
    if args.features:
        if args.input:
            raise ConfigError("give either an audio input or --features, not both")
        if kmeans is None:
            raise ConfigError("units from --features need --kmeans (codebook units need audio)")
        identity, layer = features_folder_source(args.features)
        if args.layer is not None and layer is not None and args.layer != layer:
            raise ConfigError(f"{args.features}: holds layer {layer} features, not {args.layer}")
        kmeans.check_source(identity, layer if layer is not None else args.layer)
        files = list_features(args.features)
        stream = (
            (fid, load_features(p).to(device))
            for fid, p in progress(files, desc="units", enabled=show)
        )
        records = list(units_from_features(stream, kmeans, deduplicate=dedup))
    else:
        if not args.input:
            raise ConfigError("give a manifest or audio folder, or --features DIR")
        if args.layer is None and not args.baseline:
            raise ConfigError("give the layer with --layer (e.g. --layer 6)")
        items = list_audio(args.input, show_progress=show)
        if kmeans is None and args.baseline:
            raise ConfigError("baselines have no codebooks: give --kmeans")
        encoder = build_encoder(args, [args.layer] if args.layer is not None else None, device)
        (layer,) = encoder.check_layers([args.layer] if args.layer is not None else None)
        records = units_of_audio(
            encoder,
            items,
            layer,
            kmeans,
            before_residual=not args.after_residual,
            deduplicate=dedup,
            name=args.name,
            show_progress=show,
        )
    n = write_units(records, args.out, txt=args.txt)
    print(f"{n} utterances -> {args.out}" + (f" and {args.txt}" if args.txt else ""))
    return 0
