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

# Frames per tile: one [tile, tile] frame-distance matrix per pair of tiles holding needed pairs.
DEFAULT_TILE_FRAMES = 256
# Budget (in elements) of one DTW batch: P * (N + M) * max(N, M) for the skewed cost and states.
DEFAULT_BATCH_ELEMENTS = 1 << 23
MAX_PAIRS_PER_BATCH = 65536
# A tile pair whose needed cost cells are fewer than 1/SPARSE_RATIO of the tile matrix is done
# pair by pair (gathered frames + bmm) instead.
SPARSE_RATIO = 8


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
    order: np.ndarray | None = None,
    tile_frames: int = DEFAULT_TILE_FRAMES,
    batch_elements: int = DEFAULT_BATCH_ELEMENTS,
    show_progress: bool = True,
) -> np.ndarray:
    """Path-normalised DTW distance of every pair in ``keys`` -> float64 ``[len(keys)]``.

    Items are laid out in ``order`` (ideally sorted by BY group, see :func:`item_order`) and cut
    into tiles of about ``tile_frames`` frames. For each pair of tiles holding at least one needed
    pair, one ``[tile, tile]`` frame-distance matrix is computed (a matmul), the pairs' cost
    matrices are gathered from it (no per-pair copy of the features) and their DTWs run batched.
    """
    n_items = len(bank.length)
    device = torch.device(device) if device is not None else bank.frames.device
    order = np.arange(n_items) if order is None else np.asarray(order)
    # frames re-laid out in `order`, so that every tile is one contiguous slice
    length = bank.length
    start_sorted = np.concatenate([[0], np.cumsum(length[order])[:-1]]).astype(np.int64)
    start = np.empty(n_items, dtype=np.int64)
    start[order] = start_sorted
    frame_idx = np.concatenate([np.arange(bank.start[k], bank.start[k] + length[k]) for k in order])
    frames = bank.frames[torch.as_tensor(frame_idx)].to(device)
    frames = prepare_frames(frames, distance)
    tile_sorted = start_sorted // tile_frames  # items never split: a tile may exceed tile_frames
    tile = np.empty(n_items, dtype=np.int64)
    tile[order] = tile_sorted
    n_tiles = int(tile_sorted[-1]) + 1
    tile_lo = np.full(n_tiles, np.iinfo(np.int64).max)
    tile_hi = np.zeros(n_tiles, dtype=np.int64)
    np.minimum.at(tile_lo, tile, start)
    np.maximum.at(tile_hi, tile, start + length)

    i, j = keys // n_items, keys % n_items
    swap = tile[i] > tile[j]  # DTW is symmetric: orient each pair so that tile(i) <= tile(j)
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    tile_pair = tile[i] * n_tiles + tile[j]
    by_tile = np.lexsort((length[j], length[i], tile_pair))
    bounds = np.flatnonzero(np.diff(tile_pair[by_tile])) + 1
    out = np.empty(len(keys), dtype=np.float64)
    len_t = torch.as_tensor(length, device=device)
    bar = progress(total=len(keys), desc="DTW pairs", enabled=show_progress, leave=False)
    sparse: list[np.ndarray] = []
    for sel in np.split(by_tile, bounds):
        if len(sel) == 0:
            continue
        ti, tj = int(tile[i[sel[0]]]), int(tile[j[sel[0]]])
        tile_cells = (tile_hi[ti] - tile_lo[ti]) * (tile_hi[tj] - tile_lo[tj])
        if int((length[i[sel]] * length[j[sel]]).sum()) * SPARSE_RATIO < tile_cells:
            sparse.append(sel)  # few pairs: a per-pair matmul is cheaper than the tile's
            continue
        rows = frames[tile_lo[ti] : tile_hi[ti]]
        cols = frames[tile_lo[tj] : tile_hi[tj]]
        dmat = pair_distances(rows[None], cols[None], distance)[0].reshape(-1)  # [fi * fj]
        width = cols.shape[0]
        for sub in _batches(sel, length[i], length[j], batch_elements):
            ii = torch.as_tensor(i[sub], device=device)
            jj = torch.as_tensor(j[sub], device=device)
            N, M = int(length[i[sub]].max()), int(length[j[sub]].max())
            r0 = torch.as_tensor(start[i[sub]] - tile_lo[ti], device=device)
            c0 = torch.as_tensor(start[j[sub]] - tile_lo[tj], device=device)
            a = torch.arange(N, device=device)
            b = torch.arange(M, device=device)
            r = r0[:, None] + torch.minimum(a[None, :], len_t[ii, None] - 1)  # [P, N]
            c = c0[:, None] + torch.minimum(b[None, :], len_t[jj, None] - 1)  # [P, M]
            cost = dmat[r[:, :, None] * width + c[:, None, :]]  # [P, N, M]
            out[sub] = dtw_normalised(cost, len_t[ii], len_t[jj]).double().cpu().numpy()
            bar.update(len(sub))
    if sparse:
        sel = np.concatenate(sparse)
        sel = sel[np.lexsort((length[j[sel]], length[i[sel]]))]
        start_t = torch.as_tensor(start, device=device)
        for sub in _batches(sel, length[i], length[j], batch_elements, dim=frames.shape[1]):
            ii = torch.as_tensor(i[sub], device=device)
            jj = torch.as_tensor(j[sub], device=device)
            N, M = int(length[i[sub]].max()), int(length[j[sub]].max())
            x = frames[_frame_index(start_t, len_t, ii, N)]  # [P, N, D]
            y = frames[_frame_index(start_t, len_t, jj, M)]  # [P, M, D]
            cost = pair_distances(x, y, distance)
            out[sub] = dtw_normalised(cost, len_t[ii], len_t[jj]).double().cpu().numpy()
            bar.update(len(sub))
    bar.close()
    return out


def _frame_index(start: torch.Tensor, length: torch.Tensor, idx: torch.Tensor, L: int):
    """``[P, L]`` frame indices of items ``idx``, padded by repeating each item's last frame."""
    offs = torch.arange(L, device=start.device)[None, :]
    return start[idx, None] + torch.minimum(offs, length[idx, None] - 1)


def _batches(sel: np.ndarray, li: np.ndarray, lj: np.ndarray, budget: int, dim: int = 0):
    """Split ``sel`` (sorted by lengths) into runs whose DTW tensors stay under ``budget``."""
    pos = 0
    while pos < len(sel):
        take = min(MAX_PAIRS_PER_BATCH, len(sel) - pos)
        while True:
            chunk = sel[pos : pos + take]
            N, M = int(li[chunk].max()), int(lj[chunk].max())
            cap = max(1, budget // ((N + M) * max(N, M, dim)))
            if take <= cap:
                break
            take = cap
        yield chunk
        pos += take


def item_order(items, speaker: str, context: str) -> np.ndarray:
    """Item permutation that keeps each BY group contiguous (context, then speaker, then phone)."""
    ctx = [
        f"{p}|{n}" if context == "within" else ""
        for p, n in zip(items.prev_phone, items.next_phone, strict=True)
    ]
    codes = [
        np.unique(np.asarray(v, dtype=object), return_inverse=True)[1]
        for v in (items.phone, items.speaker, ctx)
    ]
    return np.lexsort(codes)


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
