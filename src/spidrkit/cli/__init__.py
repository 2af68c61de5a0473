"""Command-line interface: one ``spidrkit`` entry point, one small module per subcommand.

Each module ``spidrkit.cli.<name>`` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int | None``; heavy imports happen inside ``run`` so ``--help`` stays fast. Shared
options (``--model``, ``--layers``, ``-o/--out``, ``--device``, ``--no-progress``) come from
:mod:`spidrkit.cli.options`.
"""

from __future__ import annotations
