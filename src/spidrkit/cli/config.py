"""List the configs shipped with spidrkit, print one, or copy one to edit.

examples:
  spidrkit config list
  spidrkit config show tiny
  spidrkit config copy base my.toml        # then: spidrkit train my.toml --set ...
  spidrkit train tiny --set data.train_manifests=train.csv   # a shipped config by name
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spidrkit import configs
from spidrkit.errors import ConfigError
from spidrkit.utils.files import atomic_write

HELP = "list, show or copy the shipped TOML configs (tiny, small, base, lm_tiny, lm_opt125m)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="names and first comment line of the shipped configs")
    show = sub.add_parser("show", help="print a shipped config")
    show.add_argument("name", help="config name, e.g. tiny")
    copy = sub.add_parser("copy", help="copy a shipped config to a file to edit")
    copy.add_argument("name", help="config name, e.g. base")
    copy.add_argument("dest", help="file to write (an existing file is not replaced)")
    copy.add_argument("--force", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in configs.names():
            first = configs.path(name).read_text(encoding="utf-8").splitlines()[0]
            print(f"{name:12s} {first.lstrip('# ').strip()}")
        return 0
    text = configs.path(args.name).read_text(encoding="utf-8")
    if args.action == "show":
        print(text, end="")
        return 0
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / configs.path(args.name).name
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest}: exists; choose another name or pass --force")
    with atomic_write(dest, "w") as f:
        f.write(text)
    print(f"wrote {dest}")
    return 0
