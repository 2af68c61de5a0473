"""The options every command spells the same way (documented once in docs/cli.md).

``--model`` (preset or checkpoint), ``--layers`` (``4,5,6`` or ``4 5 6``; 1-based), ``-o/--out``,
``--json PATH`` (``-`` for stdout), ``--device`` (default ``auto``) and ``--no-progress``; and
what the training commands share (:func:`add_training_options`).
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Sequence
from typing import Any, NoReturn

from spidrkit.errors import ConfigError
from spidrkit.utils.files import atomic_write


class Number:
    """An argparse ``type=`` for a number in ``[lo, hi]`` (finite; ``int`` or ``float``).

    Every numeric option of every command uses one (``tests/test_cli_domains.py`` walks the parser
    and generates values outside each domain): ``--patience -1`` or ``--hours inf`` is refused
    when the command line is parsed, before anything runs.
    """

    def __init__(
        self, kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
    ) -> None:
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def describe(self) -> str:
        def fmt(x: float) -> str:
            return str(int(x)) if self.kind is int else f"{x:g}"

        lo = "-inf" if self.lo is None else fmt(self.lo)
        hi = "inf" if self.hi is None else fmt(self.hi)
        return f"{'(' if self.lo_open else '['}{lo}, {hi}]"

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except ValueError:
            what = "an integer" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        import math

        bad = not math.isfinite(value)
        if self.lo is not None:
            bad = bad or value < self.lo or (self.lo_open and value == self.lo)
        if self.hi is not None:
            bad = bad or value > self.hi
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is not in {self.describe()}")
        return value


def count(lo: int = 0, hi: int = 1 << 40) -> Number:
    """An integer option in ``[lo, hi]``."""
    return Number(int, lo, hi)


SEED = Number(int, 0, (1 << 63) - 1)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``spidrkit CMD: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Layers(argparse.Action):
    """``--layers 4,5,6`` / ``--layers 4 5 6`` / ``--layers 4, 5`` -> ``[4, 5, 6]``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        tokens = [values] if isinstance(values, str) else list(values)
        layers: list[int] = []
        for part in ",".join(tokens).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                parser.error(
                    f"{option_string}: expected layer numbers like 4,5,6 or 4 5 6, got {part!r}"
                )
            layers.append(int(part))
        if not layers:
            parser.error(f"{option_string}: no layer given")
        if self.const == "one" and len(layers) != 1:
            parser.error(f"{option_string}: this command takes one layer, got {layers}")
        setattr(namespace, self.dest, layers[0] if self.const == "one" else layers)


def add_model(
    parser: argparse.ArgumentParser | Any,
    *,
    help: str = "preset name (spidr_base, ...) or checkpoint path",
    required: bool = False,
) -> None:
    """``--model CKPT_OR_PRESET`` into ``args.model``; ``parser`` may be a mutually exclusive group."""
    parser.add_argument(
        "--model",
        dest="model",
        metavar="CKPT_OR_PRESET",
        required=required,
        help=help,
    )


def add_layers(
    parser: argparse.ArgumentParser | Any,
    *,
    one: bool = False,
    help: str | None = None,
    also: Sequence[str] = (),
) -> None:
    """``--layers`` into ``args.layers`` (a list of ints), ``4,5,6`` or ``4 5 6``.

    ``one=True``: commands that take a single layer; ``--layer N`` and ``--layers N`` both work and
    ``args.layer`` is an int. ``also``: more spellings of the same option.
    """
    if one:
        parser.add_argument(
            "--layer",
            "--layers",
            dest="layer",
            action=_Layers,
            const="one",
            metavar="L",
            help=help or "1-based layer (e.g. 6)",
        )
        return
    parser.add_argument(
        "--layers",
        *also,
        dest="layers",
        action=_Layers,
        nargs="+",
        metavar="L",
        help=help or "1-based layers: 4,5,6 or 4 5 6",
    )


def add_out(
    parser: argparse.ArgumentParser,
    *,
    help: str,
    required: bool = False,
    default: Any = None,
    type: Any = None,
) -> None:
    """``-o/--out`` into ``args.out``."""
    parser.add_argument(
        "-o",
        "--out",
        dest="out",
        required=required,
        default=default,
        type=type,
        help=help,
    )


STDOUT = "-"
_NO_PATH = object()


class _JsonPath(argparse.Action):
    """``--json PATH``; a bare ``--json`` (its meaning in spidrkit <= 0.1 for some commands) is a
    usage error that says what to write instead."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values is _NO_PATH:
            parser.error(
                f"{option_string} needs a file to write, e.g. {option_string} out.json; "
                f"use '{option_string} -' to print the JSON on stdout"
            )
        setattr(namespace, self.dest, values)


def add_json(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--json PATH`` into ``args.json_out``: write the command's results as JSON to PATH (the
    text output stays as it is), or with ``--json -`` print the JSON on stdout instead of the text.
    One meaning for every command (docs/cli.md)."""
    parser.add_argument(
        "--json",
        dest="json_out",
        action=_JsonPath,
        nargs="?",
        const=_NO_PATH,
        metavar="PATH",
        help=f"{help}; '-' prints the JSON on stdout instead of the text",
    )


def json_to_stdout(args: argparse.Namespace) -> bool:
    """True when ``--json -`` asked for JSON on stdout (the command then prints no text there)."""
    return getattr(args, "json_out", None) == STDOUT


def write_json_output(data: Any, path: str) -> None:
    """The ``--json`` output: ``data`` on stdout for ``-``, else to ``path`` atomically."""
    if path == STDOUT:
        print(json.dumps(data, indent=2))
        return
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` into ``args.device``, default ``auto`` (CUDA when available, else CPU)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (cuda:<local rank> if available, else cpu), cpu, cuda, cuda:1 ... (default auto)",
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` into ``args.no_progress``."""
    parser.add_argument(
        "--no-progress", dest="no_progress", action="store_true", help="no progress bars"
    )


def add_source_arguments(parser: argparse.ArgumentParser, *, one_layer: bool = False) -> None:
    """--model / --baseline / --layers / --device / batching options of extract, kmeans, units
    (turned into an encoder by :func:`build_encoder`).

    ``one_layer``: ``--layer`` (= ``--layers``) takes a single layer, into ``args.layer``.
    """
    src = parser.add_mutually_exclusive_group()
    add_model(src, help="spidrkit or official checkpoint, or a preset name (spidr_base, ...)")
    src.add_argument(
        "--baseline",
        metavar="NAME",
        help="mfcc, logmel, or hf:<folder-or-hub-name> (needs spidrkit[hf])",
    )
    if one_layer:
        add_layers(parser, one=True)
    else:
        add_layers(parser, help="1-based layers: 4,5,6 or 4 5 6 (0 = HF Transformer input)")
    parser.add_argument(
        "--after-residual",
        action="store_true",
        help="layer outputs x instead of the layer results f (before residual)",
    )
    parser.add_argument(
        "--hop-ms",
        type=count(10, 20),
        default=20,
        choices=[10, 20],
        help="frame step of the mfcc/logmel baselines (default 20, as the encoders)",
    )
    parser.add_argument(
        "--cmvn",
        action="store_true",
        help="mfcc/logmel: normalise each dimension per utterance (the ZeroSpeech MFCC baseline)",
    )
    add_device(parser)
    parser.add_argument(
        "--batch-seconds",
        type=Number(float, 0.0, 86400.0, lo_open=True),
        default=200.0,
        help="max padded audio seconds per batch (default 200)",
    )
    parser.add_argument(
        "--batch-items", type=count(1, 1 << 20), default=64, help="max files per batch"
    )


def build_encoder(args: argparse.Namespace, layers: list[int] | None, device: Any) -> Any:
    """The :class:`spidrkit.api.Encoder` of --model / --baseline on ``device``, batched by
    --batch-seconds / --batch-items (``layers``: the layers the command will ask, for a baseline's
    friendlier checks)."""
    # torch-heavy: imported when a command runs, not when the parser is built
    from spidrkit.api import Encoder, load
    from spidrkit.audio.io import SAMPLE_RATE
    from spidrkit.units.baselines import parse_baseline

    batching = {
        "max_batch_samples": int(args.batch_seconds * SAMPLE_RATE),
        "max_batch_items": args.batch_items,
    }
    if args.baseline:
        cmvn = getattr(args, "cmvn", False)
        baseline = parse_baseline(args.baseline, layers, hop_ms=args.hop_ms, cmvn=cmvn)
        return Encoder(baseline, device, **batching)
    if not args.model:
        raise ConfigError("give the encoder with --model CKPT_OR_PRESET, or --baseline")
    if not layers:
        raise ConfigError("give the layers to extract with --layers (e.g. --layers 6)")
    return load(args.model, device=device, **batching)


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` of every TOML-driven command (into ``args.overrides``)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, TOML syntax, e.g. --set run.max_steps=100 (repeatable)",
    )


# Commands that run long torch work on the CPU: they take --threads.
THREADED_COMMANDS = frozenset({"train", "extract", "kmeans", "units", "abx", "lm-train"})


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` of the long commands (into ``args.threads``)."""
    parser.add_argument(
        "--threads",
        type=count(1, 4096),
        default=None,
        metavar="N",
        help="CPU threads of torch (default: torch's, one per core; OMP_NUM_THREADS also works). "
        "On a machine shared with other jobs, give each job its share, e.g. --threads 1",
    )


def startup_done() -> None:
    """Called by a ``ONE_SHOT`` command once its imports are done: the objects they created are
    moved out of the garbage collector's sight (``gc.freeze``: they live as long as the process)
    and collection resumes for the work itself. Does nothing where the collector already runs."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def apply_threads(threads: int | None) -> None:
    """Set torch's thread count from ``--threads`` (``None``: leave torch's default).

    Idle OpenMP threads also sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE`` unless set),
    which :func:`spidrkit.cli.main.main` sets before torch loads: with more busy threads than
    cores, spinning threads steal the cores the working ones need (docs/benchmarks.md, Threads).
    """
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """What ``train`` and ``lm-train`` both take: ``--set``, ``--no-resume``, ``--no-progress``,
    ``--overwrite`` (the last three are ``run.resume``, ``run.progress`` and the run folder's
    overwrite, see :func:`training_overrides`)."""
    add_overrides(parser)
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if checkpoints exist (= --set run.resume=false)",
    )
    add_no_progress(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --no-resume: move an earlier run in run.output_dir aside into replaced-<time>/ "
        "instead of refusing (nothing is deleted)",
    )


def training_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides of ``train`` / ``lm-train``, with ``--no-resume`` and
    ``--no-progress`` as ``run.resume=false`` / ``run.progress=false``."""
    overrides = list(args.overrides or [])
    if args.no_resume:
        overrides.append("run.resume=false")
    if args.no_progress:
        overrides.append("run.progress=false")
    return overrides
