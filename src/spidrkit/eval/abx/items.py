"""ABX item files, frame selection and feature sources (SPEC section 4).

An item file is space-separated text with the header
``#file onset offset #phone prev-phone next-phone speaker`` (times in seconds). Frame ``i`` of a
feature file with step ``s`` is centred at ``s/2 + i*s``; an item takes the frames with
``onset <= s/2 + i*s <= offset`` (both ends inclusive), minus the last one in the Libri-Light
variant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spidrkit.errors import DataError

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
    """Parse an ABX item file; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: item file not found")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if lineno == 1:
                if fields != ITEM_HEADER:
                    raise DataError(
                        f"{path}:1: expected the item header {' '.join(ITEM_HEADER)!r}, "
                        f"found {line.strip()!r}"
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
                    f"found {fields[1]!r} {fields[2]!r}"
                ) from None
            if not (math.isfinite(onset) and math.isfinite(offset)) or offset < onset or onset < 0:
                raise DataError(
                    f"{path}:{lineno}: need 0 <= onset <= offset, "
                    f"found onset={onset} offset={offset}"
                )
            rows.append((fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    if not rows:
        raise DataError(f"{path}: no items after the header")
    return Items.from_rows(rows)


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


def load_feature_file(path: Path) -> torch.Tensor:
    """One ``[T, D]`` tensor from a ``.pt`` or ``.npy`` file (a leading batch dim 1 is dropped)."""
    try:
        if path.suffix == ".npy":
            x = torch.from_numpy(np.load(path))
        else:
            x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a data problem
        raise DataError(f"{path}: cannot read features ({exc})") from exc
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{path}: expected a tensor [frames, dim], found {type(x).__name__}")
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise DataError(f"{path}: expected a tensor [frames, dim], found shape {tuple(x.shape)}")
    return x


class FeatureFolder(Mapping[str, torch.Tensor]):
    """Lazy ``fileid -> [T, D]`` view of ``<root>/<fileid>.pt`` (or ``.npy``) files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: features folder not found")

    def _path(self, fileid: str) -> Path | None:
        for ext in (".pt", ".npy"):
            p = self.root / f"{fileid}{ext}"
            if p.is_file():
                return p
        return None

    def __getitem__(self, fileid: str) -> torch.Tensor:
        p = self._path(fileid)
        if p is None:
            raise KeyError(fileid)
        return load_feature_file(p)

    def __contains__(self, fileid: object) -> bool:
        return isinstance(fileid, str) and self._path(fileid) is not None

    def __iter__(self):
        for p in sorted(self.root.rglob("*")):
            if p.suffix in (".pt", ".npy"):
                yield str(p.relative_to(self.root).with_suffix(""))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def read_units_jsonl(path: str | Path) -> dict[str, torch.Tensor]:
    """Units JSONL -> ``{key: LongTensor [T]}`` with durations expanded (one entry per frame).

    The key is the ``audio`` field without its extension (``fileid``/``name`` when present).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: units file not found")
    out: dict[str, torch.Tensor] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = row.get("fileid") or row.get("name") or row["audio"]
                units = [int(u) for u in row["units"]]
                durations = row.get("durations")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(
                    f"{path}:{lineno}: expected {{'audio': ..., 'units': [int...], "
                    f"'durations': [int...]}} ({exc})"
                ) from None
            units_t = torch.tensor(units, dtype=torch.long)
            if durations is not None:
                if len(durations) != len(units) or any(int(d) < 1 for d in durations):
                    raise DataError(
                        f"{path}:{lineno}: 'durations' must have one integer >= 1 per unit "
                        f"({len(units)} units, {len(durations)} durations)"
                    )
                units_t = units_t.repeat_interleave(torch.tensor([int(d) for d in durations]))
            key = str(key)
            suffix = Path(key).suffix
            if suffix in (".wav", ".flac", ".ogg", ".mp3", ".opus", ".pt", ".npy"):
                key = key[: -len(suffix)]
            out[key] = units_t
    if not out:
        raise DataError(f"{path}: no utterances")
    return out


def match_keys(keys: Iterable[str], fileids: Iterable[str]) -> dict[str, str]:
    """Map each wanted fileid to a key: the same string, or a key that ends with ``/<fileid>``."""
    keys = list(keys)
    exact = set(keys)
    out: dict[str, str] = {}
    by_tail: dict[str, list[str]] = {}
    for k in keys:
        by_tail.setdefault(k.rsplit("/", 1)[-1], []).append(k)
    for fid in fileids:
        if fid in exact:
            out[fid] = fid
            continue
        cands = [k for k in by_tail.get(fid.rsplit("/", 1)[-1], []) if k.endswith("/" + fid)]
        if len(cands) == 1:
            out[fid] = cands[0]
    return out
