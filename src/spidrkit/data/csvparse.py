"""Vectorised parsing of delimited text blocks into columns (the fast path of manifest reading).

A block of complete lines is viewed as a uint8 array; separators and newlines are located with numpy,
every line must have exactly ``ncols - 1`` separators, and each column becomes ``(starts, ends)`` byte
spans. String columns are gathered into a :class:`StringColumn` and integer columns parsed digit by
digit, without one Python object per row. Blocks containing a double quote go through the csv module.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from spidrkit.data.columns import StringColumn
from spidrkit.errors import DataError

_NL, _CR, _DOT, _SLASH = 10, 13, 46, 47


def _listing(items: list[str], limit: int = 10) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


class Block:
    """One parsed block: ``arr`` (uint8 bytes), per column ``(starts, ends)``, source line numbers."""

    def __init__(
        self, arr: np.ndarray, spans: list[tuple[np.ndarray, np.ndarray]], lines: np.ndarray
    ):
        self.arr, self.spans, self.lines = arr, spans, lines

    def __len__(self) -> int:
        return len(self.lines)

    def strings(self, k: int, strip_extension: bool = False):
        """Column ``k`` as a StringColumn (optionally without the file extension)."""
        starts, ends = self.spans[k]
        if strip_extension:
            ends = _without_extension(self.arr, starts, ends)
        offsets = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        # spans are disjoint and ordered: mark them with +1/-1 edges, select the bytes inside
        edges = np.zeros(len(self.arr) + 1, dtype=np.int8)
        edges[starts] += 1
        edges[ends] -= 1
        inside = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
        return StringColumn(self.arr[inside], offsets)

    def integers(self, k: int, name: str, path: Path) -> np.ndarray:
        """Column ``k`` as int64; DataError naming every bad line (non-digits, empty, too long)."""
        starts, ends = self.spans[k]
        lengths = ends - starts
        if len(starts) == 0:
            return np.zeros(0, dtype=np.int64)
        width = max(1, int(lengths.max()))
        pos = np.arange(width)
        inside = pos[None, :] < lengths[:, None]
        idx = np.where(inside, starts[:, None] + pos[None, :], 0)
        digits = self.arr[idx].astype(np.int64) - ord("0")
        bad = (
            ((inside & ((digits < 0) | (digits > 9))).any(axis=1)) | (lengths == 0) | (lengths > 18)
        )
        if bad.any():
            rows = np.flatnonzero(bad).tolist()
            shown = [
                f"line {int(self.lines[r])}: "
                f"{self.arr[starts[r] : ends[r]].tobytes().decode('utf-8', 'replace')!r}"
                for r in rows
            ]
            raise DataError(
                f"{path}: column {name} must hold integers; bad values at {_listing(shown)}"
            )
        power = np.where(inside, lengths[:, None] - 1 - pos[None, :], 0)
        return (np.where(inside, digits, 0) * (10**power)).sum(axis=1)


def _without_extension(arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """End of each span with its ``.ext`` removed (a dot after the last slash, not leading)."""
    dots = np.flatnonzero(arr == _DOT)
    slashes = np.flatnonzero(arr == _SLASH)
    last_dot = np.searchsorted(dots, ends) - 1
    dot = np.where(last_dot >= 0, dots[np.maximum(last_dot, 0)] if len(dots) else -1, -1)
    last_slash = np.searchsorted(slashes, ends) - 1
    slash = np.where(
        last_slash >= 0, slashes[np.maximum(last_slash, 0)] if len(slashes) else -1, -1
    )
    name_start = np.maximum(starts, slash + 1)
    has_ext = dot > name_start
    return np.where(has_ext, dot, ends)


def parse_block(data: bytes, sep: bytes, ncols: int, path: Path, first_line: int) -> Block:
    """Split complete lines (``data``, the first being line ``first_line``) into ``ncols`` columns.

    Empty lines are skipped; ``\\r\\n`` endings are accepted. DataError names every line whose
    column count is wrong.
    """
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise DataError(f"{path}:{line}: not UTF-8 text; is this a manifest?") from None
    if b"\x00" in data:
        line = first_line + data.count(b"\n", 0, data.index(b"\x00"))
        raise DataError(f"{path}:{line}: contains a NUL byte; is this a manifest?")
    if sep == b"," and b'"' in data:
        return _parse_quoted(data, ncols, path, first_line)
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == _NL)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == _CR)
    ends = ends - has_cr
    keep = ends > starts
    lines = first_line + np.flatnonzero(keep)
    starts, ends = starts[keep], ends[keep]
    seps = np.flatnonzero(arr == ord(sep))
    first_sep = np.searchsorted(seps, starts)
    count = np.searchsorted(seps, ends) - first_sep
    bad = np.flatnonzero(count != ncols - 1)
    if len(bad):
        raise DataError(
            f"{path}: expected {ncols} columns on every line; wrong count on line(s) "
            + _listing([str(int(lines[b])) for b in bad])
        )
    spans = []
    for k in range(ncols):
        s = starts if k == 0 else seps[first_sep + k - 1] + 1
        e = ends if k == ncols - 1 else seps[first_sep + k]
        spans.append((s.astype(np.int64), e.astype(np.int64)))
    return Block(arr, spans, lines)


def _parse_quoted(data: bytes, ncols: int, path: Path, first_line: int) -> Block:
    """Slow path for quoted CSV: re-encode each field into a fresh buffer."""
    text = data.decode("utf-8")
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text))
    rows_iter = iter(reader)
    while True:
        try:
            row = next(rows_iter)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(
                f"{path}:{first_line + reader.line_num - 1}: not a valid CSV line ({exc})"
            ) from None
        if not row:
            continue
        if len(row) != ncols:
            raise DataError(
                f"{path}: expected {ncols} columns on every line; wrong count on line(s) "
                f"{first_line + reader.line_num - 1}"
            )
        rows.append(row)
        lines.append(first_line + reader.line_num - 1)
    buf = bytearray()
    spans: list[tuple[list[int], list[int]]] = [([], []) for _ in range(ncols)]
    for row in rows:
        for k, field in enumerate(row):
            raw = field.encode("utf-8")
            spans[k][0].append(len(buf))
            buf += raw
            spans[k][1].append(len(buf))
    arr = np.frombuffer(bytes(buf), dtype=np.uint8)
    return Block(
        arr,
        [(np.asarray(s, dtype=np.int64), np.asarray(e, dtype=np.int64)) for s, e in spans],
        np.asarray(lines, dtype=np.int64),
    )
