"""Make the synthetic multi-speaker speech corpus (eSpeak NG), with alignments and test sets.

Examples:
  spidrkit synth --preset tiny --out data/tiny                 # ~50 utterances, seconds
  spidrkit synth --preset demo --out data/demo --seed 0        # ~2 h, realistic voices and rooms
  spidrkit synth --preset clean --out data/clean               # ~2 h, clean studio speech
  spidrkit synth --preset tiny --conditions realistic --out data/tiny-r
  spidrkit synth --hours 0.5 --out data/half --workers 2       # demo layout, 0.5 hour
  spidrkit synth --out data/tiny --check-only                  # check an existing corpus
  spidrkit synth --out data/tiny --check-only --verify-determinism

Needs the `synth` extra: pip install 'spidrkit[synth]'. Layout and formats: docs/synth.md.
"""

from __future__ import annotations

import argparse

from spidrkit.cli.options import SEED, Number, add_no_progress, add_out, count

HELP = "make the synthetic speech corpus (audio, alignments, ABX items, minimal pairs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, required=True, help="output folder")
    parser.add_argument(
        "--preset",
        default="tiny",
        choices=["tiny", "demo", "clean"],
        help="corpus size and layout (default: tiny)",
    )
    parser.add_argument(
        "--hours",
        type=Number(float, 0.0, 10_000.0, lo_open=True),
        default=None,
        help="total hours of audio (overrides the preset's size)",
    )
    parser.add_argument(
        "--conditions",
        default=None,
        choices=["clean", "realistic"],
        help="voices and recording conditions (default: the preset's; tiny and clean: clean, "
        "demo: realistic)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--workers",
        type=count(1, 1024),
        default=None,
        help="worker processes (default: every usable core)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing corpus in --out"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the checks after building")
    parser.add_argument(
        "--check-only", action="store_true", help="do not build: check the corpus already in --out"
    )
    parser.add_argument(
        "--verify-determinism",
        action="store_true",
        help="rebuild into a temporary folder and compare every file",
    )
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from spidrkit.synth.checks import check_corpus, verify_determinism
    from spidrkit.synth.corpus import make_corpus

    if not args.check_only:
        info = make_corpus(
            args.out,
            preset=args.preset,
            seed=args.seed,
            hours=args.hours,
            workers=args.workers,
            overwrite=args.overwrite,
            show_progress=not args.no_progress,
            conditions=args.conditions,
        )
        print(info.summary())
    status = 0
    if args.check_only or not args.no_check:
        report = check_corpus(args.out)
        print(report.summary())
        status = 0 if report.ok else 1
    if args.verify_determinism:
        differ = verify_determinism(args.out, workers=args.workers)
        if differ:
            print(f"NOT deterministic: {len(differ)} file(s) differ, e.g. {differ[:5]}")
            status = 1
        else:
            print("deterministic: a rebuild with the same seed gives byte-identical files")
    return status
