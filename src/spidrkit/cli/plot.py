"""PNG plots of evaluation results (needs the `plot` extra: pip install 'spidrkit[plot]').

  abx-layers   ABX error against layer, one line per model (from `spidrkit abx --json` files)
  phone-unit   P(phone | unit) heatmap (from a `spidrkit unit-quality --json` file)

examples:
  spidrkit abx dev-clean.item --model spidr_base --layers 1,2,3,4,5,6,7,8,9,10,11,12 \\
      --audio LibriSpeech/dev-clean --json spidr.json
  spidrkit plot abx-layers spidr.json dinosr.json --out abx_layers.png
  spidrkit unit-quality dev-clean.phones.jsonl units.jsonl --json q.json
  spidrkit plot phone-unit q.json --out phone_unit.png
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import add_out

HELP = "PNG plots: ABX per layer, P(phone | unit) heatmap"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="plot_kind", metavar="KIND", required=True)
    p = sub.add_parser("abx-layers", help="ABX error per layer from `spidrkit abx --json` files")
    p.add_argument("results", nargs="+", help="ABX results JSON files")
    add_out(p, required=True, help="output PNG")
    p.add_argument("--title", default="")
    p = sub.add_parser("phone-unit", help="P(phone | unit) from `spidrkit unit-quality --json`")
    p.add_argument("quality", help="unit-quality JSON file")
    add_out(p, required=True, help="output PNG")
    p.add_argument("--title", default="")


def run(args: argparse.Namespace) -> int:
    from spidrkit.eval.plots import plot_abx_layers, plot_phone_unit

    if args.plot_kind == "abx-layers":
        from spidrkit.eval.abx import read_results_json

        results = [r for path in args.results for r in read_results_json(path)]
        out = plot_abx_layers(results, args.out, args.title)
    else:
        from spidrkit.eval.unit_quality import UnitQuality

        out = plot_phone_unit(UnitQuality.read_json(args.quality), args.out, args.title)
    print(f"wrote {out}")
    return 0
