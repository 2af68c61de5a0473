"""ABX item files, frame selection and feature sources (docs/evaluation.md, "ABX").

An item file is space-separated text with the header
``#file onset offset #phone prev-phone next-phone speaker`` (times in seconds). Frame ``i`` of a
feature file with step ``s`` is centred at ``s/2 + i*s``; an item takes the frames with
``onset <= s/2 + i*s <= offset`` (both ends inclusive), minus the last one in the Libri-Light
variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidrkit.errors import DataError
from spidrkit.units.files import (  # the shared readers of feature and units files
    FeatureFolder,
    match_keys,
)
from spidrkit.units.files import frame_units_by_key as read_units_jsonl
from spidrkit.units.files import load_features as load_feature_file

__all__ = [
    "FeatureFolder",
    "Items",
    "item_frame_range",
    "item_frame_ranges",
    "load_feature_file",
    "match_keys",
    "read_item_file",
    "read_units_jsonl",
]
from spidrkit.utils.textfiles import MAX_LINE_BYTES, duplicate_error, iter_lines

MAX_OFFSET_S = 24 * 3600
"""Latest accepted item end (as the longest audio file spidrkit reads)."""
MAX_ITEM_S = 60
"""Longest accepted item: the frames of every item are gathered in memory."""

ITEM_HEADER = ["#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker"]
# Tolerance (in frames) on the inclusive frame boundaries, so that 0.09 s is "on" frame 4 at 20 ms
# even though (0.09 - 0.01) / 0.02 is not exactly 4.0 in floating point.
_BOUNDARY_EPS = 1e-6


@dataclass(frozen=True)
class Items:
    """The rows of an item file, as parallel lists (one entry per item)."""

    fileid: list[str]
    onset: np.ndarray  # [n] float64 seconds
    offset: np.ndarray  # [n] float64 seconds
    phone: list[str]
    prev_phone: list[str]
    next_phone: list[str]
    speaker: list[str]

    def __len__(self) -> int:
        return len(self.fileid)

    def subset(self, keep: np.ndarray) -> Items:
        """The items at the integer indices ``keep``, in that order."""
        pick = [int(i) for i in keep]
        return Items(
            fileid=[self.fileid[i] for i in pick],
            onset=self.onset[pick],
            offset=self.offset[pick],
            phone=[self.phone[i] for i in pick],
            prev_phone=[self.prev_phone[i] for i in pick],
            next_phone=[self.next_phone[i] for i in pick],
            speaker=[self.speaker[i] for i in pick],
        )

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, float, float, str, str, str, str]]) -> Items:
        """Build from ``(fileid, onset, offset, phone, prev, next, speaker)`` tuples."""
        rows = list(rows)
        cols = list(zip(*rows, strict=True)) if rows else [()] * 7
        return cls(
            fileid=list(cols[0]),
            onset=np.asarray(cols[1], dtype=np.float64),
            offset=np.asarray(cols[2], dtype=np.float64),
            phone=list(cols[3]),
            prev_phone=list(cols[4]),
            next_phone=list(cols[5]),
            speaker=list(cols[6]),
        )


def read_item_file(path: str | Path) -> Items:
    """Parse an ABX item file; errors name the file and the line.

    Refused: a wrong header, a line without 7 fields, onset/offset that are not finite numbers with
    ``0 <= onset <= offset``, and the same (file, onset, offset) twice (it would count twice).
    """
    path = Path(path)
    items = _read_valid_item_file(path)
    if items is not None:
        return items
    rows = []
    seen: dict[tuple[str, float, float], int] = {}
    for lineno, line in iter_lines(path, "ABX item file"):
        fields = line.split()
        if lineno == 1:
            if fields != ITEM_HEADER:
                raise DataError(
                    f"{path}:1: expected the item header {' '.join(ITEM_HEADER)!r}; "
                    "is this an item file?"
                )
            continue
        if not fields:
            continue
        if len(fields) != 7:
            raise DataError(
                f"{path}:{lineno}: expected 7 space-separated fields "
                f"(file onset offset phone prev next speaker), found {len(fields)}"
            )
        try:
            onset, offset = float(fields[1]), float(fields[2])
        except ValueError:
            raise DataError(
                f"{path}:{lineno}: onset/offset must be numbers in seconds, "
                f"found {fields[1][:20]!r} {fields[2][:20]!r}"
            ) from None
        if not (math.isfinite(onset) and math.isfinite(offset)) or offset < onset or onset < 0:
            raise DataError(
                f"{path}:{lineno}: need 0 <= onset <= offset, found onset={onset} offset={offset}"
            )
        if offset > MAX_OFFSET_S or offset - onset > MAX_ITEM_S:  # sizes the frame bank
            raise DataError(
                f"{path}:{lineno}: an item ends after {MAX_OFFSET_S // 3600} h or lasts over "
                f"{MAX_ITEM_S} s (onset={onset} offset={offset}): ABX items are phones or words"
            )
        key = (fields[0], onset, offset)
        if key in seen:
            raise duplicate_error(path, "item", " ".join(fields[:3]), seen[key], lineno)
        seen[key] = lineno
        rows.append((fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    if not rows:
        raise DataError(f"{path}: no items after the header")
    return Items.from_rows(rows)


_FAST_READ_MAX_BYTES = 1 << 30


def _read_valid_item_file(path: Path) -> Items | None:
    """:func:`read_item_file` of a valid file in one pass over whole columns; ``None`` when the
    file breaks any rule there (or cannot be read), so that the line-by-line reader names the line
    and the problem. Both give the same :class:`Items`."""
    try:
        if not path.is_file():  # a device or a pipe (/dev/zero, endless): the line reader's limits
            return None
        with path.open("rb") as f:
            data = f.read(_FAST_READ_MAX_BYTES + 1)
        if len(data) > _FAST_READ_MAX_BYTES:
            return None
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[0].split() != ITEM_HEADER or max(map(len, lines)) > MAX_LINE_BYTES // 4:
        return None  # (a line of MAX_LINE_BYTES // 4 characters is at most MAX_LINE_BYTES bytes)
    rows = [fields for fields in map(str.split, lines[1:]) if fields]
    if not rows or any(len(fields) != 7 for fields in rows):
        return None
    fileid, onset_s, offset_s, phone, prev_phone, next_phone, speaker = zip(*rows, strict=True)
    try:
        onset = np.fromiter(map(float, onset_s), np.float64, len(rows))
        offset = np.fromiter(map(float, offset_s), np.float64, len(rows))
    except ValueError:
        return None
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(onset) & np.isfinite(offset) & (onset >= 0) & (offset >= onset)
        ok &= (offset <= MAX_OFFSET_S) & (offset - onset <= MAX_ITEM_S)
    if not ok.all():
        return None
    if len(set(zip(fileid, onset.tolist(), offset.tolist(), strict=True))) != len(rows):
        return None
    return Items(
        fileid=list(fileid),
        onset=onset,
        offset=offset,
        phone=list(phone),
        prev_phone=list(prev_phone),
        next_phone=list(next_phone),
        speaker=list(speaker),
    )


def item_frame_range(
    onset: float, offset: float, step: float = 0.02, drop_last: bool = False
) -> tuple[int, int]:
    """Frames ``[start, stop)`` of an item: centres ``s/2 + i*s`` inside ``[onset, offset]``."""
    start = math.ceil((onset - step / 2) / step - _BOUNDARY_EPS)
    stop = math.floor((offset - step / 2) / step + _BOUNDARY_EPS) + 1
    start = max(start, 0)
    if drop_last:
        stop -= 1
    return start, max(stop, start)


def item_frame_ranges(
    onset: np.ndarray, offset: np.ndarray, step: float = 0.02, drop_last: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`item_frame_range` of many items at once: int64 arrays ``start``, ``stop``."""
    start = np.ceil((onset - step / 2) / step - _BOUNDARY_EPS).astype(np.int64)
    stop = np.floor((offset - step / 2) / step + _BOUNDARY_EPS).astype(np.int64) + 1
    start = np.maximum(start, 0)
    if drop_last:
        stop -= 1
    return start, np.maximum(stop, start)
