"""Length-bucketed, distributed, resumable batch sampler.

``BucketBatchSampler(num_samples, max_batch_samples=..., rank=r, world_size=w, seed=s)`` yields
:class:`BatchKey` objects (epoch, global batch id, rank-local index, item indices) for one rank.

Per epoch, deterministically from (seed, epoch):
1. items shorter than ``min_sample_size`` are dropped (counted in ``num_dropped`` and logged once);
   longer than ``max_sample_size`` count as ``max_sample_size`` (they are cropped at load time);
2. items are put in ``num_buckets`` length buckets (quantiles of the lengths) and ordered by bucket,
   in random order inside a bucket (fairseq's ``num_batch_buckets`` idea);
3. batches are filled greedily in that order while ``len(batch) * longest item <= max_batch_samples``
   (exact for padded batches, an upper bound for batches cropped to their shortest);
4. the batch list is shuffled; batch ``j`` of rank ``r`` is global batch ``j * world_size + r``. Every
   rank gets ``len(batches) // world_size`` batches (DDP needs equal counts; the < world_size left
   over batches are skipped this epoch and are different ones next epoch).

Resuming: ``state_dict(batches_consumed)`` / ``load_state_dict(state)`` or ``set_epoch(epoch,
start_batch)`` restart mid-epoch at the same batch with the same contents, and the global batch id
(which seeds masks and crops) is the same as in an uninterrupted run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from spidrkit.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchKey:
    """One batch to load: ``indices`` are manifest rows; ``batch_id`` is global, ``index`` per rank."""

    epoch: int
    batch_id: int
    index: int
    indices: tuple[int, ...]


class BucketBatchSampler:
    """Yields this rank's :class:`BatchKey` objects for one epoch (see the module docstring).

    Args:
        num_samples: ``[items]`` length of each manifest row in samples (at 16 kHz).
        max_batch_samples: cap on ``batch_size * longest cropped item`` of a batch.
        min_sample_size / max_sample_size: drop shorter items / crop longer ones (None: no crop).
        num_buckets: number of length buckets (1 = sort by length only).
        seed, epoch, rank, world_size: determinism and sharding; start_batch: batches of this epoch
            already consumed by this rank (resume).
        shuffle: if False, batches come in order of increasing length and are not shuffled.
    """

    def __init__(
        self,
        num_samples: np.ndarray,
        *,
        max_batch_samples: int,
        min_sample_size: int = 1,
        max_sample_size: int | None = None,
        num_buckets: int = 1000,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start_batch: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
        if seed < 0:
            raise DataError(f"seed must be >= 0, got {seed}")
        lengths = np.asarray(num_samples, dtype=np.int64)
        self.num_items = int(len(lengths))
        self.max_batch_samples = int(max_batch_samples)
        self.min_sample_size = int(min_sample_size)
        self.max_sample_size = int(max_sample_size) if max_sample_size else None
        self.num_buckets = max(1, int(num_buckets))
        self.seed, self.rank, self.world_size, self.shuffle = int(seed), rank, world_size, shuffle

        keep = lengths >= self.min_sample_size
        self.kept = np.flatnonzero(keep)
        self.num_dropped = int(self.num_items - len(self.kept))
        if self.num_dropped:
            log.info(
                "dropped %d of %d items shorter than min_sample_size=%d samples",
                self.num_dropped,
                self.num_items,
                self.min_sample_size,
            )
        eff = lengths[self.kept]
        if self.max_sample_size is not None:
            eff = np.minimum(eff, self.max_sample_size)
        too_long = eff > self.max_batch_samples
        if too_long.any():
            raise DataError(
                f"{int(too_long.sum())} items are longer than max_batch_samples="
                f"{self.max_batch_samples} (longest {int(eff.max())}); set max_sample_size"
            )
        self.lengths = eff  # [kept] effective (cropped) lengths
        if len(eff):
            qs = np.quantile(eff, np.linspace(0.0, 1.0, self.num_buckets + 1)[1:])
            self.bucket_of = np.searchsorted(np.unique(qs), eff, side="left")
        else:
            self.bucket_of = np.zeros(0, dtype=np.int64)
        self._cache: tuple[int, list[np.ndarray]] | None = None
        self.epoch, self.start_batch, self._yielded = int(epoch), int(start_batch), 0
        if self.num_batches_per_rank == 0:
            raise DataError(
                f"no batch for rank {rank}: {len(self.kept)} usable items make "
                f"{len(self._epoch_batches(self.epoch))} batches for {world_size} ranks; use more data "
                "or a smaller max_batch_samples"
            )

    # -- batch construction ---------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """All batches (manifest rows) of an epoch, in global order; cached for the last epoch."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, int(epoch)])
        n = len(self.lengths)
        if self.shuffle:
            order = np.lexsort((rng.permutation(n), self.bucket_of))
        else:
            order = np.lexsort((np.arange(n), self.lengths))
        batches: list[np.ndarray] = []
        cap, start, count, longest = self.max_batch_samples, 0, 0, 0
        for pos, length in enumerate(self.lengths[order].tolist()):
            new_longest = length if length > longest else longest
            if count and (count + 1) * new_longest > cap:
                batches.append(order[start:pos])
                start, count, new_longest = pos, 0, length
            count += 1
            longest = new_longest
        if count:
            batches.append(order[start:])
        batches = [self.kept[b] for b in batches]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (int(epoch), batches)
        return batches

    @property
    def num_batches_per_rank(self) -> int:
        """Batches each rank gets per epoch (the same for every rank)."""
        return len(self._epoch_batches(self.epoch)) // self.world_size

    def __len__(self) -> int:
        return max(0, self.num_batches_per_rank - self.start_batch)

    def __iter__(self) -> Iterator[BatchKey]:
        batches = self._epoch_batches(self.epoch)
        self._yielded = 0
        for j in range(self.start_batch, self.num_batches_per_rank):
            batch_id = j * self.world_size + self.rank
            self._yielded += 1
            yield BatchKey(self.epoch, batch_id, j, tuple(batches[batch_id].tolist()))

    def iter_indices(self) -> Iterator[list[int]]:
        """This rank's batches as plain lists of manifest rows (for ``DataLoader(batch_sampler=)``)."""
        for key in self:
            yield list(key.indices)

    # -- epochs and resume ----------------------------------------------------------------------
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Switch to ``epoch``, skipping its first ``start_batch`` batches (0 = from the start)."""
        self.epoch, self.start_batch, self._yielded = int(epoch), int(start_batch), 0

    def state_dict(self, batches_consumed: int | None = None) -> dict[str, Any]:
        """Where this rank is in the epoch.

        ``batches_consumed``: batches of this epoch the training loop has used (``batch.index + 1``
        of the last one). Default: those this sampler has handed out, which is only right without
        DataLoader prefetching (num_workers=0).
        """
        consumed = (
            self.start_batch + self._yielded if batches_consumed is None else batches_consumed
        )
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_consumed": int(consumed),
            "rank": self.rank,
            "world_size": self.world_size,
            "num_items": self.num_items,
            "num_batches_per_rank": self.num_batches_per_rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the data and world size must be the same as when saved."""
        problems = [
            f"{key}: saved {state.get(key)!r}, now {getattr(self, key)!r}"
            for key in ("seed", "world_size", "num_items")
            if state.get(key) != getattr(self, key)
        ]
        if problems:
            raise DataError(
                "cannot resume the batch sampler, the data setup changed: " + "; ".join(problems)
            )
        self.set_epoch(int(state["epoch"]), int(state["batches_consumed"]))
