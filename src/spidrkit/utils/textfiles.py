"""Bounded, checked reading of the text inputs every command takes (JSONL, item files, CSV).

Each reader here opens a file once, reads it line by line with a cap on the line length (so
``/dev/zero`` or a binary file is refused after ``max_line_bytes`` instead of filling memory), and
raises one-line :class:`~spidrkit.errors.DataError` messages of the form ``path:line: problem``.
The messages never quote a whole line: a file given by mistake (a key file, say) is not echoed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from spidrkit.errors import DataError

MAX_LINE_BYTES = 64 << 20
"""Longest accepted line: a units line of a 10-hour utterance at 50 Hz is about 10 MB."""
MAX_UNIT_ID = (1 << 20) - 1
"""Largest accepted unit id (codebooks and k-means have at most about a million entries)."""
MAX_DURATION = 1 << 24
"""Largest accepted duration of one deduplicated unit, and of one utterance (their sum), in
frames (93 hours at 20 ms)."""


def open_input(path: str | Path, what: str) -> IO[bytes]:
    """Open ``path`` for binary reading; DataError naming it when missing, a folder or unreadable."""
    path = Path(path)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_line(f: IO[bytes], path: Path, lineno: int, max_line_bytes: int = MAX_LINE_BYTES) -> bytes:
    """One line (with its newline; b"" at the end of the file), at most ``max_line_bytes`` long."""
    raw = f.readline(max_line_bytes + 1)
    if len(raw) > max_line_bytes:
        raise DataError(
            f"{path}:{lineno}: line longer than {max_line_bytes} bytes: not a text file of this kind"
        )
    return raw


def decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}:{lineno}: not UTF-8 text (byte {exc.start}); is this the right file?"
        ) from None


def iter_lines(
    path: str | Path, what: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """``(line number, text without the newline)`` of each line of a UTF-8 text file."""
    path = Path(path)
    with open_input(path, what) as f:
        lineno = 0
        while True:
            lineno += 1
            raw = read_line(f, path, lineno, max_line_bytes)
            if not raw:
                return
            text = decode_line(raw, path, lineno)
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            yield lineno, text.rstrip("\r\n")


def iter_jsonl(
    path: str | Path, what: str, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of a JSONL file; each must be an object."""
    path = Path(path)
    for lineno, text in iter_lines(path, what, max_line_bytes=max_line_bytes):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{path}:{lineno}: not valid JSON ({msg}); expected a {what}") from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}:{lineno}: expected a JSON object per line, found a {type(row).__name__}"
            )
        yield lineno, row


def int_list(value: Any, where: str, field: str, lo: int, hi: int) -> list[int]:
    """``value`` as a list of integers in ``[lo, hi]``; JSON floats and booleans are refused."""
    if not isinstance(value, list):
        raise DataError(
            f"{where}: '{field}' must be a list of integers, found {type(value).__name__}"
        )
    for k, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(
                f"{where}: '{field}' must be a list of integers; '{field}'[{k}] is "
                f"{json.dumps(v)[:20]}"
            )
        if not lo <= v <= hi:
            raise DataError(f"{where}: '{field}'[{k}] = {v} is outside [{lo}, {hi}]")
    return value


def unit_ids(value: Any, where: str, field: str = "units") -> list[int]:
    """A list of unit ids, each an integer in ``[0, MAX_UNIT_ID]``."""
    return int_list(value, where, field, 0, MAX_UNIT_ID)


def durations(value: Any, where: str, n_units: int) -> list[int]:
    """A list of ``n_units`` durations, each an integer in ``[1, MAX_DURATION]``."""
    rule = "'durations' must hold one integer >= 1 per unit"
    try:
        out = int_list(value, where, "durations", 1, MAX_DURATION)
    except DataError as exc:
        raise DataError(f"{where}: {rule}; {str(exc).removeprefix(f'{where}: ')}") from None
    if len(out) != n_units:
        raise DataError(f"{where}: {rule} ({n_units} units, {len(out)} durations)")
    total = sum(out)
    if total > MAX_DURATION:  # expanded to frames by readers: bound the allocation
        raise DataError(
            f"{where}: 'durations' add up to {total} frames, over {MAX_DURATION} (93 h at 20 ms) "
            "for one utterance"
        )
    return out


def duplicate_error(path: str | Path, what: str, key: str, first: int, again: int) -> DataError:
    return DataError(
        f"{path}:{again}: {what} {key!r} already appears on line {first}; each must appear once"
    )


def check_finite_features(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x`` unchanged when every value is finite, else DataError counting the NaN/inf values."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            raise DataError(
                f"{where}: {n} of {x.numel()} feature values are NaN or infinite; "
                "re-extract the features (a diverged model or a corrupt file?)"
            )
    return x


def finite_float(value: Any, where: str, field: str) -> float:
    """A JSON/CSV number as a finite float, or DataError."""
    if isinstance(value, bool):
        raise DataError(f"{where}: '{field}' must be a number, found {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{field}' must be a number, found {str(value)[:20]!r}") from None
    if not math.isfinite(out):
        raise DataError(f"{where}: '{field}' must be finite, found {out}")
    return out


MAX_JSON_BYTES = 64 << 20


def read_json_file(path: str | Path, what: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A whole JSON file (a result or report written by spidrkit), read with a size cap; a
    missing, oversized, non-UTF-8 or malformed file is a DataError naming it and ``what``."""
    path = Path(path)
    with open_input(path, what) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise DataError(f"{path}: over {max_bytes >> 20} MiB: not a {what}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}): not a {what}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: not a {what} (invalid JSON: {str(exc)[:120]})") from None
