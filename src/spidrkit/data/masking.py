"""Span masking of encoder frames, with fairseq's semantics (docs/data.md, "Masking").

``compute_mask_indices((batch, frames), valid_frames, cfg, rng=rng)`` returns int64 ``[batch, M]``:
the sorted masked frame indices of each row, the same M for every row (the model indexes
``x[row, mask_indices[row]]``). For a row with T valid frames:

1. number of spans ``n = max(min_masks, int(mask_prob * T / mask_length + u))``, ``u ~ U[0, 1)``
   (one draw for the whole batch when ``valid_frames`` is None, one per row otherwise);
2. span lengths from ``mask_selection`` (static / uniform / normal / poisson, see MaskingConfig);
3. span starts drawn without replacement from ``[0, T - shortest span)`` (at least ``n + 1``
   positions, as fairseq, but never past T, so even a 1-frame row gets a masked frame), spans
   clipped to T; with ``no_mask_overlap`` the spans
   are placed one by one, longest first, in the free gaps, ``mask_min_space`` frames apart;
4. indices made unique, then every row subsampled at random to the smallest row count M.

Randomness comes only from the ``numpy.random.Generator`` passed in. The data loader derives it with
:func:`mask_rng` from (seed, epoch, batch id), so a resumed run draws the same masks. With the default
config about 56-59% of a row's frames are masked (``1 - exp(-0.8)`` plus edge effects); the
subsampling to the batch's smallest count brings a batch of 8 rows of 10 s down to about 52%.
"""

from __future__ import annotations

import numpy as np

from spidrkit.data.config import MaskingConfig


def mask_rng(seed: int, epoch: int, batch_id: int, stream: int = 0) -> np.random.Generator:
    """The generator of one batch: a pure function of (seed, epoch, batch_id, stream), all >= 0.

    ``batch_id`` is the batch's position in the epoch's global (all-rank) batch order, so it does not
    depend on which worker process builds the batch. ``stream`` separates independent uses.
    """
    return np.random.default_rng([int(seed), int(epoch), int(batch_id), int(stream)])


def _span_lengths(cfg: MaskingConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    length = cfg.mask_length
    if cfg.mask_selection == "static":
        lengths = np.full(n, length, dtype=np.int64)
    elif cfg.mask_selection == "uniform":
        lengths = rng.integers(int(cfg.mask_other), length * 2 + 1, size=n).astype(np.int64)
    elif cfg.mask_selection == "normal":
        draws = rng.normal(length, cfg.mask_other, size=n)
        lengths = np.maximum(1, np.round(draws)).astype(np.int64)
    elif cfg.mask_selection == "poisson":
        lengths = np.round(rng.poisson(length, size=n)).astype(np.int64)
    else:
        raise ValueError(f"unknown mask_selection {cfg.mask_selection!r}")
    return lengths


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """All frames covered by spans ``[start, start + length)``."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets


def _place_without_overlap(
    size: int, lengths: np.ndarray, min_space: int, rng: np.random.Generator
) -> np.ndarray:
    """Place spans longest first in the free gaps, at least ``min_space`` frames apart."""
    gaps = [(0, size)]  # free [start, end) intervals
    covered = []
    for length in sorted(lengths.tolist(), reverse=True):
        if length <= 0:
            continue
        room = np.array([e - s - length + 1 for s, e in gaps], dtype=np.float64)
        room = np.maximum(room, 0.0)
        if room.sum() <= 0:
            break
        k = int(rng.choice(len(gaps), p=room / room.sum()))
        s, e = gaps.pop(k)
        start = int(rng.integers(s, e - length + 1))
        covered.append(np.arange(start, start + length))
        if start - min_space > s:
            gaps.append((s, start - min_space))
        if start + length + min_space < e:
            gaps.append((start + length + min_space, e))
    return np.concatenate(covered) if covered else np.zeros(0, dtype=np.int64)


def compute_mask_indices(
    shape: tuple[int, int],
    valid_frames: np.ndarray | list[int] | None = None,
    cfg: MaskingConfig | None = None,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Masked frame indices for a batch: int64 ``[batch, M]``, sorted per row.

    Args:
        shape: (batch, frames) of the encoder features.
        valid_frames: ``[batch]`` frames that are not padding (None: every frame is valid).
        cfg: masking hyper-parameters (default :class:`MaskingConfig`).
        rng: the only source of randomness (see :func:`mask_rng`).
    """
    cfg = cfg or MaskingConfig()
    batch, frames = int(shape[0]), int(shape[1])
    if valid_frames is None:
        sizes = np.full(batch, frames, dtype=np.int64)
        shared_u = rng.random()
    else:
        sizes = np.minimum(np.asarray(valid_frames, dtype=np.int64).reshape(batch), frames)
        shared_u = None
    rows = []
    for size in sizes.tolist():
        if size <= 0:
            rows.append(np.zeros(0, dtype=np.int64))
            continue
        u = shared_u if shared_u is not None else rng.random()
        n = max(cfg.min_masks, int(cfg.mask_prob * size / float(cfg.mask_length) + u))
        lengths = _span_lengths(cfg, n, rng)
        if n > 0 and lengths.sum() == 0:
            lengths[0] = max(1, min(cfg.mask_length, size - 1))
        if cfg.no_mask_overlap:
            idx = _place_without_overlap(size, lengths, cfg.mask_min_space, rng)
        elif n == 0:
            idx = np.zeros(0, dtype=np.int64)
        else:
            # fairseq widens the start range to n + 1 positions for short rows; starts >= size
            # would mask nothing, so the range also stops at size (only matters for size < n + 1)
            population = min(max(size - int(lengths.min()), n + 1), size)
            n = min(n, population)
            starts = rng.choice(population, n, replace=False).astype(np.int64)
            idx = _expand(starts, lengths[:n])
        rows.append(np.unique(idx[idx < size]).astype(np.int64))
    m = min((len(r) for r in rows), default=0)
    out = np.empty((batch, m), dtype=np.int64)
    for i, r in enumerate(rows):
        if len(r) > m:
            r = np.sort(rng.choice(r, m, replace=False))
        out[i] = r
    return out


def indices_to_mask(mask_indices: np.ndarray, frames: int) -> np.ndarray:
    """bool ``[batch, frames]`` with True at the masked frames of ``mask_indices`` ``[batch, M]``."""
    mask = np.zeros((mask_indices.shape[0], frames), dtype=bool)
    np.put_along_axis(mask, mask_indices, True, axis=1)
    return mask
