"""Unit quality against phone labels: PNMI, phone/cluster purity, perplexity, bitrate (docs/evaluation.md).

Labels: JSONL {"name": fileid, "phones": [one phone per 10 ms frame]}. Units: JSONL
{"audio": path_or_fileid, "units": [...], "durations": [...]} at 20 ms (durations expanded).

examples:
  spidrkit unit-quality dev-clean.phones.jsonl units_layer6.jsonl --vocab-size 256 --json q.json
  spidrkit plot phone-unit q.json --out phone_unit.png      # P(phone | unit) heatmap
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import Number, add_json, count, json_to_stdout, write_json_output

HELP = "PNMI, purities, perplexity and bitrate of units against phone labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", help="phone labels JSONL (one phone per label frame)")
    parser.add_argument("units", help="units JSONL (audio, units, durations)")
    parser.add_argument(
        "--label-step",
        type=Number(float, 0.0, 10.0, lo_open=True),
        default=0.01,
        help="s per label (0.01)",
    )
    parser.add_argument(
        "--unit-step",
        type=Number(float, 0.0, 10.0, lo_open=True),
        default=0.02,
        help="s per unit frame (0.02)",
    )
    parser.add_argument(
        "--vocab-size", type=count(1, 1 << 20), help="codebook size V (default: max unit + 1)"
    )
    parser.add_argument(
        "--tolerance", type=count(0, 1 << 20), default=2, help="max length mismatch (frames)"
    )
    add_json(parser, help="write the metrics and the phone x unit counts as JSON")


def run(args: argparse.Namespace) -> int:
    from spidrkit.eval.unit_quality import unit_quality_from_files

    q = unit_quality_from_files(
        args.labels,
        args.units,
        label_step=args.label_step,
        unit_step=args.unit_step,
        vocab_size=args.vocab_size,
        tolerance=args.tolerance,
    )
    if json_to_stdout(args):
        write_json_output(q.to_dict(), args.json_out)
        return 0
    for name, value in q.metrics().items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<18} {text}")
    if args.json_out:
        q.write_json(args.json_out)
        print(f"wrote {args.json_out}")
    return 0
