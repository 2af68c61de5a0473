"""One self-contained HTML page for a run: results table, training curves (loss, target perplexity
and active codewords per codebook), ABX per layer against the untrained model and baselines, the
P(phone | unit) heatmap and spoken-LM accuracies against chance. Images are embedded, so the page can
be mailed or opened anywhere.

It reads only files a run writes (metrics.jsonl, `spidrkit abx --json`, `spidrkit unit-quality
--json`, `spidrkit slm-eval` scores.json, the demo's summary.json), so it also works on a training
folder copied back from a cluster.

examples:
  spidrkit report runs/demo                      # -> runs/demo/report.html (the demo writes it too)
  spidrkit report runs/base --out base.html      # a pretraining output_dir: the curves
  chromium --headless --screenshot=r.png runs/demo/report.html
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import add_out

HELP = "HTML report of a run: curves, ABX per layer, units, spoken-LM scores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a demo folder or a training output_dir")
    add_out(parser, help="HTML file to write (default: RUN_DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from spidrkit.report import write_report

    out = write_report(args.run_dir, args.out)
    print(f"wrote {out}")
    return 0
