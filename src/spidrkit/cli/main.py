"""The ``spidrkit`` command: dispatches to subcommand modules and turns errors into one line."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
from typing import NoReturn

from spidrkit import __version__
from spidrkit.cli.options import THREADED_COMMANDS, OneLineParser, add_threads, apply_threads
from spidrkit.errors import ConfigError, SpidrkitError, worker_message

# (command name, module under spidrkit.cli). Keep in pipeline order: it is the order of `--help`.
COMMANDS: list[tuple[str, str]] = [
    ("env", "env"),
    ("info", "info"),
    ("convert", "convert"),
    ("download", "download"),
    ("synth", "synth"),
    ("manifest", "manifest"),
    ("config", "config"),
    ("check-config", "check_config"),
    ("train", "train"),
    ("extract", "extract"),
    ("kmeans", "kmeans"),
    ("units", "units"),
    ("abx", "abx"),
    ("unit-quality", "unit_quality"),
    ("plot", "plot"),
    ("report", "report"),
    ("lm-train", "lm_train"),
    ("slm-eval", "slm_eval"),
    ("demo", "demo"),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``spidrkit`` parser; ``only``: with that one command (its module alone is imported)."""
    parser = OneLineParser(
        prog="spidrkit",
        description="SpidR/DinoSR speech encoders: pretrain, extract units, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"spidrkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(f"spidrkit.cli.{module_name}")
        except ImportError as exc:  # a broken install or a bug: never hide a command
            raise ImportError(
                f"spidrkit {name}: cannot import spidrkit.cli.{module_name}: {exc}"
            ) from exc
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        if name in THREADED_COMMANDS:
            add_threads(p)
        p.set_defaults(_run=module.run, _one_shot=getattr(module, "ONE_SHOT", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``spidrkit ARGV``; the exit code.

    As the program (``argv`` None), a command whose module sets ``ONE_SHOT`` (a short command that
    leaves nothing to clean up: files closed, no worker processes) starts with Python's cyclic
    garbage collector paused until it calls :func:`spidrkit.cli.options.startup_done` after its
    imports (torch's import creates about a million long-lived objects, and each full collection
    over them costs about 0.1 s), and ends the process as soon as its output is flushed, without
    the interpreter's teardown (about 0.25 s once torch is loaded).
    """
    # before torch loads OpenMP: idle threads sleep rather than spin (see apply_threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    as_program = argv is None
    if as_program:
        gc.disable()
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(named_command(argv))
    args = parser.parse_args(argv)
    one_shot = as_program and getattr(args, "_one_shot", False)
    if not one_shot:
        gc.enable()
    code = run_command(parser, args)
    if one_shot:
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after flushing the standard streams and the logs, skipping
    the interpreter's teardown (garbage-collecting every module torch loaded)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed (BrokenPipe handling) or gone: nothing to flush
            pass
    os._exit(code)


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The parsed command's exit code; errors become one line on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        apply_threads(getattr(args, "threads", None))
        return int(args._run(args) or 0)
    except SpidrkitError as exc:
        print(f"spidrkit {args.command}: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"spidrkit {args.command}: error: out of memory; the input asks for more than this "
            "machine has (a smaller batch or file, or more memory)",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:  # disk full, permissions, a vanished file: the OS said why, in one line
        if isinstance(exc, BrokenPipeError):
            sys.stderr.close()
            return 0
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"spidrkit {args.command}: error: {where}{one_line(str(exc.strerror or exc))}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"spidrkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug: still one line, the traceback with -v
        if args.verbose:
            raise
        print(
            f"spidrkit {args.command}: internal error: {type(exc).__name__}: "
            f"{one_line(str(exc))} (a bug in spidrkit; rerun with -v for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def named_command(argv: list[str]) -> str | None:
    """The command that ``argv`` runs, when its first word is one (``spidrkit -v abx ...``): the
    parser then imports that command's module alone. ``None`` (every command) otherwise."""
    for arg in argv:
        if arg in ("-h", "--help"):  # `spidrkit --help CMD`: the full list
            return None
        if not arg.startswith("-"):
            return arg if arg in {name for name, _ in COMMANDS} else None
    return None


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line (lines joined with "; "), at most ``limit`` characters."""
    joined = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def error_text(exc: SpidrkitError) -> str:
    """The message of a spidrkit error as printed: one line, except the list of a config's
    problems (``invalid config:`` then one problem per line, all reported at once)."""
    text = worker_message(str(exc))
    if isinstance(exc, ConfigError) and "invalid config:" in text:
        head, _, rest = text.partition("invalid config:")
        problems = [p.strip() for p in rest.splitlines() if p.strip()]
        if len(problems) == 1:  # the common case: one line
            return f"{head}invalid config: {problems[0]}"
        return text
    return one_line(text)


if __name__ == "__main__":
    sys.exit(main())
