"""ABX phone discriminability error of features, units or a checkpoint's layers (docs/evaluation.md).

Lower is better, chance is 50 %. Defaults = ZeroSpeech 2021 triphone ABX: within speaker, within
context, angular distance, 20 ms frames, at most 10 items per group and 5 X speakers (seed 0).

examples:
  # features folder: <feats>/<fileid>.pt or .npy, one [frames, dim] tensor per utterance
  spidrkit abx dev-clean.item feats/layer6 --speaker within,across --json abx.json --csv cells.csv

  # units JSONL (expanded by their durations, 0/1 distance)
  spidrkit abx dev-clean.item units.jsonl

  # every layer of a checkpoint, features computed in memory from audio at <root>/<fileid>.flac
  spidrkit abx dev-clean.item --model spidr_base --layers 4,5,6,7,8 --audio LibriSpeech/dev-clean \\
      --json spidr_layers.json
  spidrkit plot abx-layers spidr_layers.json --out abx_layers.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spidrkit
from spidrkit.cli.options import (
    SEED,
    Number,
    add_device,
    add_json,
    add_layers,
    add_model,
    add_no_progress,
    count,
    json_to_stdout,
    startup_done,
    write_json_output,
)
from spidrkit.errors import ConfigError

HELP = "ABX error rate of features, units or checkpoint layers"
ONE_SHOT = True  # spidrkit.cli.main: a short command, nothing to clean up once results are written


def _modes(value: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    modes = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [m for m in modes if m not in allowed]
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"{flag}: choose from {', '.join(allowed)} (got {value!r})"
        )
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("item", help="ABX item file (#file onset offset #phone prev next speaker)")
    parser.add_argument(
        "features",
        nargs="?",
        help="features folder (<fileid>.pt/.npy) or units .jsonl; omit with --model",
    )
    parser.add_argument(
        "--speaker",
        default="within",
        type=lambda v: _modes(v, ("within", "across"), "--speaker"),
        help="within, across, or within,across (default: within)",
    )
    parser.add_argument(
        "--context",
        default="within",
        type=lambda v: _modes(v, ("within", "any"), "--context"),
        help="within (triphone ABX), any (phoneme ABX), or within,any (default: within)",
    )
    parser.add_argument(
        "--distance",
        choices=["angular", "euclidean", "kl_symmetric", "identical"],
        help="frame distance (default: angular for features, identical for units)",
    )
    parser.add_argument(
        "--step",
        type=Number(float, 0.0, 10.0, lo_open=True),
        default=0.02,
        help="frame step in s (default 0.02)",
    )
    parser.add_argument(
        "--drop-last", action="store_true", help="Libri-Light variant: drop each item's last frame"
    )
    parser.add_argument(
        "--max-size-group",
        type=count(0, 1 << 30),
        default=10,
        help="items per group, 0 = all (default 10)",
    )
    parser.add_argument(
        "--max-x-across",
        type=count(0, 1 << 30),
        default=5,
        help="X speakers per cell, 0 = all (default 5)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="subsampling seed (default 0)")
    add_device(parser)
    parser.add_argument("--label", default="", help="name stored in the results (for plots)")
    add_json(parser, help="write the results (aggregates) as JSON")
    parser.add_argument("--json-cells", action="store_true", help="include every cell in --json")
    parser.add_argument("--csv", dest="csv_out", help="write one row per cell as CSV")
    add_no_progress(parser)
    model = parser.add_argument_group("checkpoint mode (features computed in memory)")
    add_model(model, help="preset name or checkpoint path (see spidrkit.load)")
    add_layers(
        model,
        also=["--layer"],
        help="with --model: 1-based layers to score, 4,5,6 or 4 5 6; with FEATURES: the one "
        "layer they come from (stored in the results)",
    )
    model.add_argument("--audio", help="audio root: <root>/<fileid>.wav|flac")
    model.add_argument("--manifest", help="manifest CSV/TSV giving each fileid's audio path")


def run(args: argparse.Namespace) -> int:
    from spidrkit.eval.abx import (
        ABXConfig,
        compute_abx_modes,
        format_table,
        read_item_file,
        write_cells_csv,
        write_results_json,
    )
    from spidrkit.utils.device import resolve_device

    startup_done()

    if (args.model is None) == (args.features is None):
        raise ConfigError("give either FEATURES (a folder or a units .jsonl) or --model")
    units = args.features is not None and Path(args.features).suffix == ".jsonl"
    config = ABXConfig(
        distance=args.distance or ("identical" if units else "angular"),
        step=args.step,
        drop_last=args.drop_last,
        max_size_group=args.max_size_group or None,
        max_x_across=args.max_x_across or None,
        seed=args.seed,
    )
    common = dict(
        speakers=args.speaker,
        contexts=args.context,
        device=resolve_device(args.device),
        show_progress=not args.no_progress,
    )
    items = read_item_file(args.item)
    results = []
    if args.model is None:
        if args.layers and len(args.layers) > 1:
            raise ConfigError("with FEATURES, --layers names the one layer they come from")
        layer = args.layers[0] if args.layers else None
        results = compute_abx_modes(
            items, args.features, config, label=args.label, layer=layer, **common
        )
    else:
        from spidrkit.eval.abx.model_features import find_audio, model_abx

        if not args.layers:
            raise ConfigError("--model needs --layers (e.g. --layers 4,5,6)")
        layers = args.layers
        if args.audio is None and args.manifest is None:
            raise ConfigError("--model needs --audio ROOT or --manifest CSV to find the audio")
        audio = find_audio(sorted(set(items.fileid)), args.audio, args.manifest)
        encoder = spidrkit.load(args.model, device=common["device"])
        label = args.label or Path(args.model).stem
        results = model_abx(items, encoder, audio, layers, config, label=label, **common)
    if json_to_stdout(args):
        write_json_output({"results": [r.to_dict(args.json_cells) for r in results]}, args.json_out)
    else:
        print(format_table(results))
        if args.json_out:
            write_results_json(results, args.json_out, with_cells=args.json_cells)
            print(f"wrote {args.json_out}")
    if args.csv_out:
        write_cells_csv(results, args.csv_out)
        if not json_to_stdout(args):
            print(f"wrote {args.csv_out}")
    return 0
