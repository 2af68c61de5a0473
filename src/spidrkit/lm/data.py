"""Unit sequences for the LM: read units JSONL, deduplicate, pack or bucket into batches.

Units JSONL files are read by :mod:`spidrkit.units.files` (durations are honoured: without
deduplication, merged units are expanded back to one per frame).

Batches are planned once (:class:`LMBatches`), then each epoch visits them in a seeded random order
and rank r of w takes batches r, r + w, ... so that an epoch is a pure function of (seed, epoch):
resuming at (epoch, step) needs no data-loader state.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from spidrkit.errors import DataError
from spidrkit.lm.vocab import PAD, encode
from spidrkit.units.files import dedup_list, read_units


@dataclass(frozen=True)
class UnitRecord:
    """One utterance of a units JSONL: ``audio`` as written there, ``units`` as a list of ints."""

    audio: str
    units: list[int]


def read_units_jsonl(path: str | Path, *, dedup: bool = True) -> list[UnitRecord]:
    """Read a units JSONL (:func:`spidrkit.units.files.read_units`); ``dedup`` merges consecutive
    repeats, otherwise merged units are expanded back to one per frame by their durations."""
    return [
        UnitRecord(r.audio, dedup_list(r.units) if dedup else r.frames()) for r in read_units(path)
    ]


def max_unit(records: Sequence[UnitRecord]) -> int:
    """Largest unit id over all records (-1 if all are empty)."""
    return max((max(r.units) for r in records if r.units), default=-1)


def split_train_valid(
    records: list[UnitRecord], fraction: float, seed: int = 0
) -> tuple[list[UnitRecord], list[UnitRecord]]:
    """Hold out ``fraction`` of the utterances (at least one, seeded) for validation."""
    if len(records) < 2:
        raise DataError("need at least two utterances to hold one out for validation")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(fraction * len(records)))
    held = set(order[:n_valid])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


class LMBatches:
    """A fixed plan of batches; ``batch(i)`` returns ``(inputs, targets)``, both ``[rows, time]``.

    ``mode="pack"``: every utterance becomes ``bos u... eos``; all of them are concatenated and cut
    into rows of ``block_size + 1`` tokens (inputs = row[:-1], targets = row[1:]); ``max_tokens //
    block_size`` rows per batch. No padding except in the last row.
    ``mode="bucket"``: one utterance per row (cut into pieces of at most ``block_size + 1`` tokens),
    rows sorted by length and grouped so that rows x longest <= ``max_tokens``; targets are ``PAD``
    where padded (ignored by the loss).
    """

    def __init__(
        self,
        records: Sequence[UnitRecord],
        num_units: int,
        *,
        mode: str = "pack",
        block_size: int = 1024,
        max_tokens: int = 16384,
        where: str = "units",
    ) -> None:
        seqs = [encode(r.units, num_units, where=f"{where} ({r.audio})") for r in records]
        self.mode = mode
        self.rows: list[torch.Tensor] = []
        if mode == "pack":
            stream = torch.cat(seqs)
            step = block_size + 1
            # consecutive rows overlap by one token so that every token is a target exactly once
            for start in range(0, max(1, stream.numel() - 1), block_size):
                row = stream[start : start + step]
                if row.numel() >= 2:
                    self.rows.append(row)
            per_batch = max(1, max_tokens // block_size)
            self.plan = [
                list(range(i, min(i + per_batch, len(self.rows))))
                for i in range(0, len(self.rows), per_batch)
            ]
        elif mode == "bucket":
            for s in seqs:
                for start in range(0, s.numel() - 1, block_size):
                    self.rows.append(s[start : start + block_size + 1])
            order = sorted(range(len(self.rows)), key=lambda i: self.rows[i].numel())
            self.plan = []
            current: list[int] = []
            for i in order:
                longest = self.rows[i].numel() - 1  # sorted: this row is the longest so far
                if current and (len(current) + 1) * longest > max_tokens:
                    self.plan.append(current)
                    current = []
                current.append(i)
            if current:
                self.plan.append(current)
        else:
            raise ValueError(f"unknown batching mode {mode!r} (pack or bucket)")
        self.num_tokens = sum(r.numel() - 1 for r in self.rows)

    def __len__(self) -> int:
        return len(self.plan)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.rows[i] for i in self.plan[index]]
        length = max(r.numel() for r in rows) - 1
        inputs = torch.full((len(rows), length), PAD, dtype=torch.long)
        targets = torch.full((len(rows), length), PAD, dtype=torch.long)
        for j, r in enumerate(rows):
            n = r.numel() - 1
            inputs[j, :n] = r[:-1]
            targets[j, :n] = r[1:]
        return inputs, targets

    def epoch_order(self, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """This rank's batch indices for ``epoch``: a seeded shuffle, dealt round-robin, every rank
        getting the same count (the remainder is dropped)."""
        order = list(range(len(self.plan)))
        random.Random(seed * 100003 + epoch).shuffle(order)
        per_rank = len(order) // world_size
        if per_rank == 0:
            raise DataError(
                f"only {len(order)} batches for {world_size} processes: lower data.max_tokens "
                "or data.block_size, or add data"
            )
        return order[rank : per_rank * world_size : world_size]


class _BatchDataset(torch.utils.data.Dataset):
    def __init__(self, batches: LMBatches, order: list[int]) -> None:
        self.batches, self.order = batches, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.batch(self.order[i])


def iterate_batches(
    batches: LMBatches, order: list[int], start: int = 0, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``batches.batch(order[i])`` for i >= ``start``, optionally in worker processes."""
    if num_workers == 0:
        for i in order[start:]:
            yield batches.batch(i)
        return
    loader = torch.utils.data.DataLoader(
        _BatchDataset(batches, order[start:]), batch_size=None, num_workers=num_workers
    )
    yield from loader
