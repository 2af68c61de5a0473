"""Command-line interface: one ``spidrkit`` entry point, one small module per subcommand.

Each module ``spidrkit.cli.<name>`` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int | None``; heavy imports happen inside ``run`` so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--set section.key=value`` option of every TOML-driven command (into ``args.overrides``)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, TOML syntax, e.g. --set run.max_steps=100 (repeatable)",
    )
