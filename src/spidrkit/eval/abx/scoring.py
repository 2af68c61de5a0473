"""Item-pair distances (batched DTW), per-cell scores and the ABX aggregation (docs/evaluation.md, "ABX").

Per cell: error = 1 - mean over (x, a, b) of [1(d(x,a) < d(x,b)) + 0.5 * 1(d(x,a) = d(x,b))],
with x != a when X and A are the same set. Aggregate: mean over contexts (and X speakers, across),
then over speakers (of A/B), then over the (A, B) phone pairs.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from spidrkit.eval.abx.distances import pair_distances, prepare_frames
from spidrkit.eval.abx.dtw import dtw_flat
from spidrkit.eval.abx.task import Cells, ItemBank
from spidrkit.utils.progress import progress

# Frames per tile: one [tile, tile] frame-distance matrix per pair of tiles holding needed pairs.
DEFAULT_TILE_FRAMES = 256
# Budget (in elements) of the frames gathered at once for pairs computed one by one.
DEFAULT_BATCH_ELEMENTS = 1 << 23
MAX_PAIRS_PER_BATCH = 65536
# Cost values (tiles and per-pair matrices) held before their pairs' DTWs run: many pairs per
# DTW call, so that each (rows, cols) length class makes big batches.
CHUNK_ELEMENTS = 1 << 24
# Cells of at most this many triplets are scored together, CHUNK_TRIPLETS triplets at a time.
SMALL_CELL_TRIPLETS = 1 << 12
CHUNK_TRIPLETS = 1 << 20
# A tile pair whose needed cost cells are fewer than 1/SPARSE_RATIO of the tile matrix is done
# pair by pair (gathered frames + bmm) instead.
SPARSE_RATIO = 8


class Blocks:
    """Distances of every needed item pair, one dense matrix per unordered pair of item sets.

    A cell (X, A, B) needs the blocks {X, A} and {X, B}. Sets are disjoint, so each item pair
    belongs to exactly one block: every distance is computed once and found without a search.
    Within a block {U, U} only pairs ``u < u'`` are computed (DTW is symmetric) and mirrored; its
    diagonal (x == a) is never scored.
    """

    def __init__(self, cells: Cells) -> None:
        self.sets = cells.sets
        self.n_sets = n_sets = len(cells.sets)
        x = np.asarray(cells.x_set, dtype=np.int64)
        y = np.concatenate([np.asarray(cells.a_set, np.int64), np.asarray(cells.b_set, np.int64)])
        x = np.concatenate([x, x])
        code = np.unique(np.minimum(x, y) * n_sets + np.maximum(x, y))
        self.u, self.v = code // n_sets, code % n_sets
        size = np.asarray([len(t) for t in cells.sets], dtype=np.int64)
        self.rows, self.cols = size[self.u], size[self.v]
        self.offset = np.concatenate([[0], np.cumsum(self.rows * self.cols)]).astype(np.int64)
        self.code = code  # sorted
        self.values = np.zeros(int(self.offset[-1]), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.u)

    def item_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item pairs ``(i, j)`` to compute, and the position of each in :attr:`values`."""
        members = np.concatenate(self.sets)
        first = np.concatenate([[0], np.cumsum([len(t) for t in self.sets])[:-1]]).astype(np.int64)
        block = np.repeat(np.arange(len(self.u)), self.rows * self.cols)
        local = np.arange(int(self.offset[-1]), dtype=np.int64) - self.offset[block]
        row, col = np.divmod(local, self.cols[block])
        keep = (self.u[block] != self.v[block]) | (row < col)
        block, row, col = block[keep], row[keep], col[keep]
        i = members[first[self.u[block]] + row]
        j = members[first[self.v[block]] + col]
        return i, j, self.offset[block] + row * self.cols[block] + col

    def fill(self, pos: np.ndarray, values: np.ndarray) -> None:
        """Store the distances of :meth:`item_pairs` (mirrored within {U, U} blocks)."""
        self.values[pos] = values
        block = np.searchsorted(self.offset, pos, side="right") - 1
        same = self.u[block] == self.v[block]
        block, local = block[same], pos[same] - self.offset[block[same]]
        row, col = np.divmod(local, self.cols[block])
        self.values[self.offset[block] + col * self.cols[block] + row] = values[same]

    def matrix(self, x: int, y: int) -> np.ndarray:
        """Distances ``[|X|, |Y|]`` between the items of sets ``x`` and ``y`` (a view)."""
        b = int(np.searchsorted(self.code, min(x, y) * self.n_sets + max(x, y)))
        m = self.values[self.offset[b] : self.offset[b + 1]].reshape(self.rows[b], self.cols[b])
        return m if x <= y else m.T

    def strides(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """For each ``(x, y)``: element ``(r, c)`` of ``matrix(x, y)`` is ``values[o + r*s + c*t]``.

        Returns the arrays ``o``, ``s``, ``t``.
        """
        b = np.searchsorted(self.code, np.minimum(x, y) * self.n_sets + np.maximum(x, y))
        forward = x <= y
        return (
            self.offset[b],
            np.where(forward, self.cols[b], 1),
            np.where(forward, 1, self.cols[b]),
        )


class _Chunk:
    """Cost buffers and the pairs that read them, sent through :func:`dtw_flat` together."""

    def __init__(self, out: np.ndarray, budget: int, bar) -> None:
        self.out, self.budget, self.bar = out, budget, bar
        self.parts: list[torch.Tensor] = []
        self.meta: list[tuple[np.ndarray, ...]] = []
        self.size = 0

    def add(self, cost: torch.Tensor, sel, base, row_step, col_step, n, m) -> None:
        """Pairs ``sel`` read ``cost`` (flattened) at ``base + r * row_step + c * col_step``."""
        self.meta.append((sel, base + self.size, row_step, col_step, n, m))
        self.parts.append(cost.reshape(-1))
        self.size += cost.numel()
        if self.size >= self.budget:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        flat = torch.cat(self.parts) if len(self.parts) > 1 else self.parts[0]
        sel, base, rs, cs, n, m = (np.concatenate(c) for c in zip(*self.meta, strict=True))
        self.out[sel] = dtw_flat(flat, base, rs, cs, n, m)
        self.bar.update(len(sel))
        self.parts, self.meta, self.size = [], [], 0


def pair_dtw(
    bank: ItemBank,
    i: np.ndarray,
    j: np.ndarray,
    distance: str,
    device: torch.device | str | None = None,
    order: np.ndarray | None = None,
    tile_frames: int = DEFAULT_TILE_FRAMES,
    batch_elements: int = DEFAULT_BATCH_ELEMENTS,
    show_progress: bool = True,
    chunk_elements: int = CHUNK_ELEMENTS,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Path-normalised DTW distance of every item pair ``(i[p], j[p])`` -> float64 ``[P]``.

    Items are laid out in ``order`` (ideally sorted by BY group, see :func:`item_order`) and cut
    into tiles of about ``tile_frames`` frames, never across two ``groups`` (BY-group id of each
    item, contiguous in ``order``). For each pair of tiles holding many needed pairs,
    one ``[tile, tile]`` frame-distance matrix is computed (a matmul) and the pairs' DTWs read
    their cost matrices inside it (no per-pair copy); the other pairs get their own cost matrix
    from gathered frames. DTWs run each time ``chunk_elements`` cost values are held.
    """
    n_items = len(bank.length)
    device = torch.device(device) if device is not None else bank.frames.device
    order = np.arange(n_items) if order is None else np.asarray(order)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.empty(len(i), dtype=np.float64)
    if len(i) == 0:
        return out
    length = bank.length
    start_sorted = bank.start[order]
    if bank.prepared == distance and (np.diff(start_sorted) >= length[order][:-1]).all():
        frames, start = bank.frames.to(device), bank.start  # already laid out in `order`
    else:  # frames re-laid out in `order`, so that every tile is one contiguous slice
        start_sorted = np.concatenate([[0], np.cumsum(length[order])[:-1]]).astype(np.int64)
        start = np.empty(n_items, dtype=np.int64)
        start[order] = start_sorted
        shift = np.repeat(bank.start[order] - start_sorted, length[order])
        frame_idx = torch.as_tensor(shift + np.arange(int(length.sum()), dtype=np.int64))
        frames = bank.frames[frame_idx].to(device)
        if bank.prepared is None:
            frames = prepare_frames(frames, distance, inplace=True)
        elif bank.prepared != distance:
            raise ValueError(f"frames prepared for {bank.prepared!r}, not {distance!r}")
    # tiles: runs of ~tile_frames frames that never split an item nor span two BY groups (all
    # the pairs of a within-context task then lie inside one tile)
    group_sorted = np.zeros(n_items, np.int64) if groups is None else np.asarray(groups)[order]
    new_group = np.concatenate([[True], group_sorted[1:] != group_sorted[:-1]])
    group_start = np.maximum.accumulate(np.where(new_group, start_sorted, 0))
    piece = (start_sorted - group_start) // tile_frames
    new_tile = new_group | np.concatenate([[True], piece[1:] != piece[:-1]])
    tile_sorted = np.cumsum(new_tile) - 1
    tile = np.empty(n_items, dtype=np.int64)
    tile[order] = tile_sorted
    n_tiles = int(tile_sorted[-1]) + 1
    tile_lo = np.full(n_tiles, np.iinfo(np.int64).max)
    tile_hi = np.zeros(n_tiles, dtype=np.int64)
    np.minimum.at(tile_lo, tile, start)
    np.maximum.at(tile_hi, tile, start + length)

    swap = tile[i] > tile[j]  # DTW is symmetric: orient each pair so that tile(i) <= tile(j)
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    tile_pair = tile[i] * n_tiles + tile[j]
    by_tile = np.argsort(tile_pair, kind="stable")
    first = np.concatenate([[0], np.flatnonzero(np.diff(tile_pair[by_tile])) + 1])
    # a tile pair holding few needed cost cells: per-pair matmuls are cheaper than the tile's
    needed = np.add.reduceat(length[i[by_tile]] * length[j[by_tile]], first)
    ti_all, tj_all = tile[i[by_tile[first]]], tile[j[by_tile[first]]]
    tile_cells = (tile_hi - tile_lo)[ti_all] * (tile_hi - tile_lo)[tj_all]
    dense = needed * SPARSE_RATIO >= tile_cells
    group = np.repeat(np.arange(len(first)), np.diff(np.append(first, len(by_tile))))
    bar = progress(total=len(i), desc="DTW pairs", enabled=show_progress, leave=False)
    chunk = _Chunk(out, chunk_elements, bar)
    dense_sel = np.split(by_tile, first[1:])
    # a tile with itself: tiles of similar sizes together, one batched matmul
    same = np.flatnonzero(dense & (ti_all == tj_all))
    size = (tile_hi - tile_lo)[ti_all[same]]
    same, size = same[np.argsort(size, kind="stable")], np.sort(size)
    pos = 0
    while pos < len(same):
        f_max = int(size[pos]) + max(8, int(size[pos]) // 4)
        stop = int(np.searchsorted(size, f_max, side="right"))
        stop = min(stop, pos + max(1, chunk_elements // (f_max * f_max)))
        g_batch, f_pad = same[pos:stop], int(size[stop - 1])
        t = ti_all[g_batch]
        offs = np.minimum(np.arange(f_pad)[None, :], (tile_hi - tile_lo)[t][:, None] - 1)
        x = frames[torch.as_tensor(tile_lo[t][:, None] + offs, device=device)]  # [B, F, D]
        dmats = pair_distances(x, x, distance)  # [B, F, F]
        sel = np.concatenate([dense_sel[g] for g in g_batch])
        which = np.repeat(np.arange(len(g_batch)), [len(dense_sel[g]) for g in g_batch])
        lo = tile_lo[t][which]
        base = which * f_pad * f_pad + (start[i[sel]] - lo) * f_pad + (start[j[sel]] - lo)
        ones = np.ones(len(sel), dtype=np.int64)
        chunk.add(dmats, sel, base, ones * f_pad, ones, length[i[sel]], length[j[sel]])
        pos = stop
    for g in np.flatnonzero(dense & (ti_all != tj_all)):
        sel, ti, tj = dense_sel[g], int(ti_all[g]), int(tj_all[g])
        rows = frames[tile_lo[ti] : tile_hi[ti]]
        cols = frames[tile_lo[tj] : tile_hi[tj]]
        dmat = pair_distances(rows[None], cols[None], distance)[0]  # [fi, fj]
        width = cols.shape[0]
        base = (start[i[sel]] - tile_lo[ti]) * width + (start[j[sel]] - tile_lo[tj])
        ones = np.ones(len(sel), dtype=np.int64)
        chunk.add(dmat, sel, base, ones * width, ones, length[i[sel]], length[j[sel]])
    sel = by_tile[~dense[group]]
    if len(sel):
        sel = sel[np.lexsort((length[j[sel]], length[i[sel]]))]
        start_t = torch.as_tensor(start, device=device)
        len_t = torch.as_tensor(length, device=device)
        for sub in _batches(sel, length[i], length[j], batch_elements, dim=frames.shape[1]):
            ii = torch.as_tensor(i[sub], device=device)
            jj = torch.as_tensor(j[sub], device=device)
            N, M = int(length[i[sub]].max()), int(length[j[sub]].max())
            x = frames[_frame_index(start_t, len_t, ii, N)]  # [P, N, D]
            y = frames[_frame_index(start_t, len_t, jj, M)]  # [P, M, D]
            cost = pair_distances(x, y, distance)
            ones = np.ones(len(sub), dtype=np.int64)
            base = np.arange(len(sub), dtype=np.int64) * (N * M)
            chunk.add(cost, sub, base, ones * M, ones, length[i[sub]], length[j[sub]])
    chunk.flush()
    bar.close()
    return out


def _frame_index(start: torch.Tensor, length: torch.Tensor, idx: torch.Tensor, L: int):
    """``[P, L]`` frame indices of items ``idx``, padded by repeating each item's last frame."""
    offs = torch.arange(L, device=start.device)[None, :]
    return start[idx, None] + torch.minimum(offs, length[idx, None] - 1)


def _batches(sel: np.ndarray, li: np.ndarray, lj: np.ndarray, budget: int, dim: int = 0):
    """Split ``sel`` (sorted by lengths) into runs whose gathered tensors stay under ``budget``."""
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
    return item_groups(items, speaker, context)[0]


def item_groups(items, speaker: str, context: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`item_order` and the BY group of each item: no item pair of a cell leaves it.

    Within speaker the group is (context, speaker), across speaker the context alone.
    """
    contexts = [
        f"{p}|{n}" if context == "within" else ""
        for p, n in zip(items.prev_phone, items.next_phone, strict=True)
    ]
    phone, spk, ctx = (
        np.unique(np.asarray(v, dtype=object), return_inverse=True)[1].reshape(-1)
        for v in (items.phone, items.speaker, contexts)
    )
    order = np.lexsort((phone, spk, ctx))
    group = ctx * (spk.max() + 1) + spk if speaker == "within" else ctx
    return order, group


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


def score_cells(cells: Cells, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
    """Error and number of triplets of every cell: two arrays ``[n_cells]``.

    Small cells are scored together, a vector operation over all their triplets at once (per-cell
    calls would cost more than the comparisons); big cells one by one with :func:`cell_score`.
    """
    x, a, b = (np.asarray(v, dtype=np.int64) for v in (cells.x_set, cells.a_set, cells.b_set))
    size = np.asarray([len(t) for t in cells.sets], dtype=np.int64)
    nx, na, nb = size[x], size[a], size[b]
    total = nx * na * nb
    ntrip = nx * (na - 1) * nb if cells.x_is_a else total
    s = np.zeros(len(cells))
    small = np.flatnonzero(total <= SMALL_CELL_TRIPLETS)
    ends = np.cumsum(total[small])
    lo = 0
    while lo < len(small):
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - total[small[lo]] + CHUNK_TRIPLETS)))
        c = small[lo:hi]
        s[c] = _score_small(blocks, x[c], a[c], b[c], nx[c], na[c], nb[c], cells.x_is_a)
        lo = hi
    for big in np.flatnonzero(total > SMALL_CELL_TRIPLETS).tolist():
        dxa = blocks.matrix(int(x[big]), int(a[big]))
        dxb = blocks.matrix(int(x[big]), int(b[big]))
        s[big] = cell_score(dxa, dxb, cells.x_is_a)[0]
    return 1.0 - s / ntrip, ntrip


def _score_small(blocks: Blocks, x, a, b, nx, na, nb, x_is_a: bool) -> np.ndarray:
    """Sum over each cell's triplets of [1(d(x,a) < d(x,b)) + 0.5 1(=)], all cells at once."""
    per_cell = nx * na * nb
    cell = np.repeat(np.arange(len(x)), per_cell)
    first = np.concatenate([[0], np.cumsum(per_cell)[:-1]])
    local = np.arange(int(per_cell.sum()), dtype=np.int64) - first[cell]
    ix, rest = np.divmod(local, (na * nb)[cell])
    ia, ib = np.divmod(rest, nb[cell])
    oa, ra, ca = (v[cell] for v in blocks.strides(x, a))
    ob, rb, cb = (v[cell] for v in blocks.strides(x, b))
    dxa = blocks.values[oa + ix * ra + ia * ca]
    dxb = blocks.values[ob + ix * rb + ib * cb]
    score = (dxa < dxb) + 0.5 * (dxa == dxb)
    if x_is_a:
        score[ix == ia] = 0.0
    return np.bincount(cell, weights=score, minlength=len(x))


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
