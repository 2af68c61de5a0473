"""Run the whole spidrkit path on a synthetic corpus made on the spot (no download).

synth -> pretrain SpidR -> ABX per layer vs MFCC -> k-means units -> PNMI/purity -> unit LM ->
sWUGGY/sBLIMP/tSC. Each stage prints the `spidrkit` command it is equal to, then runs its library
functions; run it again to skip what is done. Pretraining: configs/small.toml plus --set overrides.

Examples:
    spidrkit demo --out runs/demo              # ~2 h corpus; see docs/demo.md for timings
    spidrkit demo --plan quick --out runs/quick    # tiny corpus, a couple of minutes
    spidrkit demo --plan full --out runs/full      # longer: beside the LM, MFCC units and gold phones
    spidrkit demo --seed 1 --out runs/demo-s1      # another pretraining seed
    chromium runs/demo/report.html                 # the run's report (also: spidrkit report DIR)
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import SEED, add_no_progress, add_out, count

HELP = "run the whole path (synth -> train -> ABX -> units -> LM -> scores) on synthetic data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        "--plan",
        choices=["demo", "full", "quick"],
        default="demo",
        help="demo: 2 h corpus, 2000 pretraining steps; full: 8000 steps, a larger unit LM with "
        "its MFCC-unit baseline and gold-phone topline (about 35 min on 2 cores); quick: tiny "
        "corpus, for a first look",
    )
    parser.add_argument("--train-steps", type=count(1), help="override the pretraining steps")
    parser.add_argument(
        "--seed",
        type=SEED,
        default=0,
        help="pretraining and k-means seed (default 0); the corpus is the same for every seed",
    )
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from spidrkit.demo import PLANS, run_demo

    plan = PLANS[args.plan]
    if args.train_steps:
        plan = dataclasses.replace(plan, train_steps=args.train_steps)
    plan = dataclasses.replace(plan, seed=args.seed)
    run_demo(args.out, plan, progress=not args.no_progress)
    return 0
