"""Download published weights into the cache ($SPIDRKIT_CACHE, default ~/.cache/spidrkit).

Examples:
    spidrkit download spidr_base
    spidrkit download --list
"""

from __future__ import annotations

import argparse

HELP = "download published model weights into the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="preset name, e.g. spidr_base")
    parser.add_argument("--list", action="store_true", help="list the published models")


def run(args: argparse.Namespace) -> int:
    from spidrkit.models.hub import cache_dir, fetch_preset
    from spidrkit.models.presets import PRESETS

    if args.list or not args.name:
        for name, preset in PRESETS.items():
            where = preset.url or "(no weights: random init)"
            print(f"{name:<24} {preset.model_type:<7} {where}")
        print(f"cache: {cache_dir()}")
        return 0
    print(fetch_preset(args.name))
    return 0
