"""Item-pair distances (batched DTW), per-cell scores and the ABX aggregation (SPEC section 4).

Per cell: error = 1 - mean over (x, a, b) of [1(d(x,a) < d(x,b)) + 0.5 * 1(d(x,a) = d(x,b))],
with x != a when X and A are the same set. Aggregate: mean over contexts (and X speakers, across),
then over speakers (of A/B), then over the (A, B) phone pairs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from spidrkit.eval.abx.distances import pair_distances, prepare_frames
from spidrkit.eval.abx.dtw import dtw_normalised
from spidrkit.eval.abx.task import Cells, ItemBank
from spidrkit.utils.progress import progress

# Budget (in elements) of the gathered frames of one DTW batch: P * (N + M) * D.
DEFAULT_BATCH_ELEMENTS = 1 << 24
MAX_PAIRS_PER_BATCH = 16384


def needed_pairs(cells: Cells, n_items: int) -> np.ndarray:
    """Sorted unique keys ``i * n_items + j`` (``i < j``) of every item pair a triplet uses."""
    keys = []
    for x, a, b in zip(cells.x, cells.a, cells.b, strict=True):
        for y in (a, b):
            lo = np.minimum.outer(x, y)
            hi = np.maximum.outer(x, y)
            k = lo * n_items + hi
            keys.append(k[lo != hi])
    if not keys:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(keys))


def pair_dtw(
    bank: ItemBank,
    keys: np.ndarray,
    distance: str,
    device: torch.device | str | None = None,
    batch_elements: int = DEFAULT_BATCH_ELEMENTS,
    show_progress: bool = True,
) -> np.ndarray:
    """Path-normalised DTW distance of every pair in ``keys`` -> float64 ``[len(keys)]``."""
    n_items = len(bank.length)
    device = torch.device(device) if device is not None else bank.frames.device
    frames = prepare_frames(bank.frames.to(device), distance)
    dim = frames.shape[1]
    i, j = keys // n_items, keys % n_items
    li, lj = bank.length[i], bank.length[j]
    swap = li > lj  # DTW is symmetric: put the shorter item first (less padding)
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    li, lj = np.minimum(li, lj), np.maximum(li, lj)
    order = np.lexsort((li, lj))
    out = np.empty(len(keys), dtype=np.float64)
    start_t = torch.as_tensor(bank.start, device=device)
    len_t = torch.as_tensor(bank.length, device=device)
    bar = progress(total=len(keys), desc="DTW pairs", enabled=show_progress, leave=False)
    pos = 0
    while pos < len(order):
        end = min(pos + MAX_PAIRS_PER_BATCH, len(order))
        sel = order[pos:end]
        N, M = int(li[sel].max()), int(lj[sel].max())
        cap = max(1, batch_elements // ((N + M) * max(dim, N)))
        if end - pos > cap:
            end = pos + cap
            sel = order[pos:end]
            N, M = int(li[sel].max()), int(lj[sel].max())
        ii = torch.as_tensor(i[sel], device=device)
        jj = torch.as_tensor(j[sel], device=device)
        x = frames[_frame_index(start_t, len_t, ii, N)]  # [P, N, D]
        y = frames[_frame_index(start_t, len_t, jj, M)]  # [P, M, D]
        cost = pair_distances(x, y, distance)  # [P, N, M]
        d = dtw_normalised(cost, len_t[ii], len_t[jj])
        out[sel] = d.double().cpu().numpy()
        bar.update(len(sel))
        pos = end
    bar.close()
    return out


def _frame_index(start: torch.Tensor, length: torch.Tensor, idx: torch.Tensor, L: int):
    """``[P, L]`` frame indices of items ``idx``, padded by repeating each item's last frame."""
    offs = torch.arange(L, device=start.device)[None, :]
    return start[idx, None] + torch.minimum(offs, length[idx, None] - 1)


class PairTable:
    """Distances of item pairs, looked up by item indices (symmetric)."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, n_items: int) -> None:
        self.keys, self.values, self.n = keys, values, n_items

    def get(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        lo = np.minimum.outer(x, y)
        hi = np.maximum.outer(x, y)
        k = lo * self.n + hi
        pos = np.searchsorted(self.keys, k).clip(0, len(self.keys) - 1)
        return np.where(lo == hi, 0.0, self.values[pos])


def cell_score(dxa: np.ndarray, dxb: np.ndarray, x_is_a: bool) -> tuple[float, int]:
    """Sum over triplets of [1(d(x,a) < d(x,b)) + 0.5 1(=)], and the number of triplets.

    ``dxa``: ``[nX, nA]``, ``dxb``: ``[nX, nB]``; with ``x_is_a`` the diagonal (x == a) is skipped.
    """
    nx, na = dxa.shape
    nb = dxb.shape[1]
    if nx * na * nb <= 1 << 20:
        lt = (dxa[:, :, None] < dxb[:, None, :]).sum(2)
        eq = (dxa[:, :, None] == dxb[:, None, :]).sum(2)
    else:  # large cells: sort each row of dxb and count with binary search
        sb = np.sort(dxb, axis=1)
        left = np.stack([np.searchsorted(sb[r], dxa[r], side="left") for r in range(nx)])
        right = np.stack([np.searchsorted(sb[r], dxa[r], side="right") for r in range(nx)])
        lt, eq = nb - right, right - left
    s = lt + 0.5 * eq  # [nX, nA]
    if x_is_a:
        np.fill_diagonal(s, 0.0)
        return float(s.sum()), nx * (na - 1) * nb
    return float(s.sum()), nx * na * nb


def score_cells(cells: Cells, table: PairTable) -> tuple[np.ndarray, np.ndarray]:
    """Error and number of triplets of every cell: two arrays ``[n_cells]``."""
    err = np.empty(len(cells))
    ntrip = np.empty(len(cells), dtype=np.int64)
    for c in range(len(cells)):
        x = cells.x[c]
        dxa = table.get(x, cells.a[c])
        dxb = table.get(x, cells.b[c])
        s, n = cell_score(dxa, dxb, cells.x_is_a)
        err[c] = 1.0 - s / n
        ntrip[c] = n
    return err, ntrip


def aggregate(cells: Cells, err: np.ndarray) -> tuple[float, dict[str, float], dict[str, float]]:
    """Mean over contexts (and X speakers), then speakers, then phone pairs.

    Returns the error, the error per ``A|B`` phone pair and a per-speaker diagnostic.
    """
    level1: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for c in range(len(cells)):
        level1[(cells.phone_a[c], cells.phone_b[c], cells.speaker[c])].append(float(err[c]))
    level2: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_speaker: dict[str, list[float]] = defaultdict(list)
    for (pa, pb, s), v in sorted(level1.items()):
        m = float(np.mean(v))
        level2[(pa, pb)].append(m)
        per_speaker[s].append(m)
    by_pair = {f"{pa}|{pb}": float(np.mean(v)) for (pa, pb), v in sorted(level2.items())}
    by_speaker = {s: float(np.mean(v)) for s, v in sorted(per_speaker.items())}
    error = float(np.mean(list(by_pair.values()))) if by_pair else float("nan")
    return error, by_pair, by_speaker
