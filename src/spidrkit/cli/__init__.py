"""Command-line interface: one ``spidrkit`` entry point, one small module per subcommand.

Each module ``spidrkit.cli.<name>`` defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int | None``. Imports of spidrkit modules that load torch or numpy happen inside
``run`` (and :func:`spidrkit.cli.options.build_encoder`): building the parser imports every command
module, and ``spidrkit --help`` / ``spidrkit env`` must neither wait for torch nor load it before
``OMP_WAIT_POLICY`` is set (tests/test_cli_threads.py checks that torch is not loaded). Light
imports (errors, config, options, file helpers) sit at the top. Shared options (``--model``,
``--layers``, ``-o/--out``, ``--json``, ``--device``, ``--no-progress``) come from
:mod:`spidrkit.cli.options`.
"""

from __future__ import annotations
