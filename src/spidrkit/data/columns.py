"""``StringColumn``: many strings in one UTF-8 buffer plus offsets (manifests of millions of rows)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class StringColumn:
    """An immutable sequence of strings stored as one UTF-8 buffer and ``[n + 1]`` int64 offsets."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = np.asarray(data, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_bytes(cls, items: Sequence[bytes]) -> StringColumn:
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        if items:
            np.cumsum(
                np.fromiter(map(len, items), dtype=np.int64, count=len(items)), out=offsets[1:]
            )
        return cls(np.frombuffer(b"".join(items), dtype=np.uint8), offsets)

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> StringColumn:
        return cls.from_bytes([s.encode("utf-8") for s in items])

    @classmethod
    def concat(cls, columns: Sequence[StringColumn]) -> StringColumn:
        if not columns:
            return cls.from_bytes([])
        data = np.concatenate([c.data for c in columns])
        parts, base = [np.zeros(1, dtype=np.int64)], 0
        for c in columns:
            parts.append(c.offsets[1:] - c.offsets[0] + base)
            base = int(parts[-1][-1]) if len(parts[-1]) else base
        return cls(data, np.concatenate(parts))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        buf, offs = self.data.tobytes(), self.offsets.tolist()
        for a, b in zip(offs[:-1], offs[1:], strict=True):
            yield buf[a:b].decode("utf-8")

    def tolist(self) -> list[str]:
        return list(self)

    def take(self, indices: np.ndarray | Sequence[int]) -> StringColumn:
        """The strings at ``indices`` (vectorised gather, no per-row Python objects)."""
        idx = np.asarray(indices, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lengths = ends - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return StringColumn(self.data[gather], offsets)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)
