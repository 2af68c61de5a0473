"""Path-normalised DTW, vectorised across many pairs of items (docs/evaluation.md, "ABX").

Steps ``(i-1, j)``, ``(i-1, j-1)``, ``(i, j-1)``; the accumulated cost of the best path to the last
cell is divided by the length (number of cells) of that path. When several predecessors tie on
accumulated cost, the one with the shortest path wins, so the path is "the shortest of the cheapest
paths" and the result is exactly symmetric, ``dtw(x, y) == dtw(y, x)``. Ties only happen with
discrete distances (``identical``) or repeated frames; on continuous features this matches the
usual back-tracking.

The loop runs over anti-diagonals ``k = i + j``: every cell of a diagonal depends only on the two
previous diagonals, so a diagonal of every pair of a batch is one vector operation. Pairs are the
innermost (contiguous) dimension, the shorter item of each pair is the row, and pairs of similar
lengths are batched together, so that little work is padding.

Each cell holds one int64 key: the bits of its float32 accumulated cost in the high word, its path
length in the low word. For non-negative floats the bit pattern orders like the value, so one
integer ``minimum`` picks the cheapest predecessor and, among exact ties, the shortest path; the new
cost is a float32 addition on the high words (a strided view, no conversion), the new length a +1 on
the key. Four vector operations per diagonal, bit-identical to the float version it replaced, which
stays as the fallback for costs it cannot key (negative values, ``-0.0``, NaN, non-float32).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

_NO_PATH = 1e9  # float fallback: path length of cells no path reaches (their cost is +inf)
_INF_KEY = 0x7F800000 << 32  # key of +inf cost, length 0
# Rows x pairs of one diagonal operation: about 1 MiB of int64 keys, so that the three rotating
# diagonals stay in a CPU core's L2 cache. GPUs want far bigger batches (kernel launch cost).
CPU_BATCH_CELLS = 1 << 17
CUDA_BATCH_CELLS = 1 << 23
# Batches hold pairs of similar (rows, cols), but at least this many pairs.
MIN_BATCH_PAIRS = 512


def dtw_normalised(cost: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Path-normalised DTW of a batch of padded cost matrices.

    Args:
        cost: ``[P, N, M]`` frame distances; pair ``p`` uses ``cost[p, :n[p], :m[p]]`` (padding
            beyond is ignored: a cell only depends on cells above-left of it).
        n, m: ``[P]`` int64 true lengths, each >= 1.
    Returns:
        ``[P]`` accumulated cost / path length, in the dtype of ``cost``.
    """
    P, N, M = cost.shape
    if P == 0:
        return cost.new_zeros(0)
    n_np, m_np = n.cpu().numpy().astype(np.int64), m.cpu().numpy().astype(np.int64)
    base = np.arange(P, dtype=np.int64) * (N * M)
    out = dtw_flat(cost.reshape(-1), base, np.full(P, M), np.ones(P, np.int64), n_np, m_np)
    return torch.as_tensor(out, device=cost.device).to(cost.dtype)


def dtw_flat(
    flat: torch.Tensor,
    base: np.ndarray,
    row_step: np.ndarray,
    col_step: np.ndarray,
    n: np.ndarray,
    m: np.ndarray,
    batch_cells: int | None = None,
) -> np.ndarray:
    """DTW of pairs whose cost matrices live in one flat buffer -> float64 ``[P]``.

    The cost of cell ``(r, c)`` of pair ``p`` (``r < n[p]``, ``c < m[p]``) is
    ``flat[base[p] + r * row_step[p] + c * col_step[p]]``: a pair can be a block of a bigger
    frame-distance matrix (``row_step`` = its width), or be read transposed. Nothing is copied per
    pair; cells outside a pair's matrix may read any finite value (they never reach its end cell).
    """
    P = len(base)
    out = np.empty(P, dtype=np.float64)
    if P == 0:
        return out
    dev = flat.device
    if batch_cells is None:
        batch_cells = CUDA_BATCH_CELLS if dev.type == "cuda" else CPU_BATCH_CELLS
    # shorter item as rows: a diagonal has min(n, m) cells
    swap = n > m
    rows, cols = np.where(swap, m, n), np.where(swap, n, m)
    rstep, cstep = np.where(swap, col_step, row_step), np.where(swap, row_step, col_step)
    keyed = _can_key(flat)
    # pad when the cells outside some pair's matrix would index beyond the buffer
    r_max, c_max = int(rows.max()), int(cols.max())
    front = max(0, -int((base - (r_max - 1) * cstep).min()))
    back = int((base + (r_max - 1) * rstep + (r_max + c_max - 2) * cstep).max()) + 1 - len(flat)
    if front > 0 or back > 0:
        flat = torch.cat([flat.new_zeros(front), flat, flat.new_zeros(max(0, back))])
        base = base + front
    # similar (rows, cols) together; int16-sized keys sort with a stable radix sort
    code = rows.astype(np.int64) * (c_max + 1) + cols
    order = np.argsort(
        code.astype(np.uint32 if code.max() >= 1 << 16 else np.uint16), kind="stable"
    )
    rows_o, cols_o = rows[order], cols[order]
    pos = 0
    while pos < P:
        r0, c0 = int(rows_o[pos]), int(cols_o[pos])
        r_lim, c_lim = r0 + max(1, r0 // 8), c0 + max(2, c0 // 4)
        cap = max(1, batch_cells // r_lim)
        stop = min(P, pos + cap)
        bad = (rows_o[pos:stop] > r_lim) | (cols_o[pos:stop] > c_lim)
        if bad.any():
            stop = pos + int(np.argmax(bad))
        if stop - pos < MIN_BATCH_PAIRS:  # a few pairs: padding costs less than another batch
            stop = min(P, pos + MIN_BATCH_PAIRS)
        sel = order[pos:stop]
        args = (flat, base[sel], rstep[sel], cstep[sel], rows[sel], cols[sel])
        out[sel] = (_dtw_keyed(*args) if keyed else _dtw_gathered(*args)).cpu().numpy()
        pos = stop
    return out


def _can_key(flat: torch.Tensor) -> bool:
    """Keys need float32 costs >= +0.0 (no sign bit, no NaN) and a little-endian int64 layout."""
    if flat.dtype != torch.float32 or sys.byteorder != "little" or flat.numel() == 0:
        return False
    # as int32, +0.0 .. +inf are exactly the bit patterns 0 .. 0x7F800000
    lo, hi = torch.aminmax(flat.view(torch.int32))
    return int(lo) >= 0 and int(hi) <= 0x7F800000


def _to(dev: torch.device, *arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.as_tensor(a, dtype=torch.int64, device=dev) for a in arrays]


def _dtw_keyed(flat, base, rstep, cstep, rows, cols) -> torch.Tensor:
    """One batch with int64 keys; pairs ``[P]`` innermost, ``R`` rows of ``K`` diagonals."""
    dev = flat.device
    P, R, C = len(base), int(rows.max()), int(cols.max())
    K = R + C - 1
    base_t, rstep_t, cstep_t, rows_t = _to(dev, base, rstep, cstep, rows)
    r = torch.arange(R, device=dev)
    # cell (r, k - r) of pair p is flat[rowbase[r, p] + k * cstep[p]]
    rowbase = base_t[None, :] + r[:, None] * (rstep_t - cstep_t)[None, :]
    key = torch.full((3, R + 1, P), _INF_KEY, dtype=torch.int64, device=dev)
    kf = key.view(torch.float32)  # [3, R + 1, 2P]: odd columns are the high words (costs)
    key[0, 1] = 1
    kf[0, 1, 1::2] = flat[base_t]
    best = torch.empty(R, P, dtype=torch.int64, device=dev)
    best_cost = best.view(torch.float32)[:, 1::2]
    idx = torch.empty(R, P, dtype=torch.int64, device=dev)
    cost_k = torch.empty(R * P, dtype=flat.dtype, device=dev)
    # the end cell of pair p is row rows[p] (row 0 is the +inf border) of diagonal rows + cols - 2
    last_k = rows + cols - 2
    by_end = np.argsort(last_k, kind="stable")
    ends, first = np.unique(last_k[by_end], return_index=True)
    groups = dict(zip(ends.tolist(), np.split(by_end, first[1:]), strict=True))
    out = torch.empty(P, dtype=torch.int64, device=dev)
    if 0 in groups:
        g = torch.as_tensor(groups[0], device=dev)
        out[g] = key[0, 1, g]
    for k in range(1, K):
        prev, prev2, cur = key[(k - 1) % 3], key[(k - 2) % 3], key[k % 3]
        torch.add(rowbase, cstep_t, alpha=k, out=idx)
        torch.index_select(flat, 0, idx.view(-1), out=cost_k)
        torch.minimum(prev[:-1], prev[1:], out=best)  # up, left
        torch.minimum(best, prev2[:-1], out=best)  # diagonal
        torch.add(best, 1, out=cur[1:])  # path length + 1 (low word)
        torch.add(best_cost, cost_k.view(R, P), out=kf[k % 3, 1:, 1::2])  # cost (high word)
        if k in groups:
            g = torch.as_tensor(groups[k], device=dev)
            out[g] = cur[rows_t[g], g]
    cost = out.view(torch.float32)[1::2]
    length = (out & 0xFFFFFFFF).to(torch.float32)
    return cost / length


def _dtw_gathered(flat, base, rstep, cstep, rows, cols) -> torch.Tensor:
    """Fallback batch: gather ``[P, R, C]`` cost matrices and run the float DTW."""
    dev = flat.device
    R, C = int(rows.max()), int(cols.max())
    base_t, rstep_t, cstep_t, rows_t, cols_t = _to(dev, base, rstep, cstep, rows, cols)
    r = torch.minimum(torch.arange(R, device=dev)[None, :], rows_t[:, None] - 1)  # [P, R]
    c = torch.minimum(torch.arange(C, device=dev)[None, :], cols_t[:, None] - 1)  # [P, C]
    idx = base_t[:, None, None] + r[:, :, None] * rstep_t[:, None, None]
    idx = idx + c[:, None, :] * cstep_t[:, None, None]
    return _dtw_float(flat[idx], rows_t, cols_t)


def _dtw_float(cost: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Float DTW of padded ``[P, N, M]`` costs (any values, any float dtype), pairs outermost."""
    P, N, M = cost.shape
    dev, dt = cost.device, cost.dtype
    inf = torch.tensor(float("inf"), device=dev, dtype=dt)
    num_diag = N + M - 1
    rows = torch.arange(N, device=dev)
    # skewed[p, k, i] = cost[p, i, k - i] where 0 <= k - i < M, +inf elsewhere
    ks = torch.arange(num_diag, device=dev)
    cols = ks[:, None] - rows[None, :]  # [K, N]
    valid = (cols >= 0) & (cols < M)
    flat = (rows[None, :] * M + cols.clamp(0, M - 1)).reshape(-1)  # [K*N]
    skewed = cost.reshape(P, N * M).index_select(1, flat).reshape(P, num_diag, N)
    skewed = torch.where(valid[None], skewed, inf)

    # Three rotating diagonals, indexed by row with one extra column 0 that stays +inf, so that
    # "row i-1" is a shifted view: up = prev[:, :-1], left = prev[:, 1:], diag = prev2[:, :-1].
    acc = torch.full((3, P, N + 1), float("inf"), device=dev, dtype=dt)
    lens = torch.full((3, P, N + 1), _NO_PATH, device=dev, dtype=dt)
    acc[0, :, 1] = skewed[:, 0, 0]
    lens[0, :, 1] = 1.0
    last_k = (n + m - 2).to(dev)  # diagonal of the end cell of each pair
    last_i = (n - 1).to(dev)[:, None] + 1
    out = acc[0, :, 1].clone()
    out_len = torch.ones(P, device=dev, dtype=dt)
    end_diagonals = set(torch.unique(last_k).tolist())
    no_path = torch.tensor(_NO_PATH, device=dev, dtype=dt)
    for k in range(1, num_diag):
        prev, prev2, cur = acc[(k - 1) % 3], acc[(k - 2) % 3], acc[k % 3]
        lprev, lprev2, lcur = lens[(k - 1) % 3], lens[(k - 2) % 3], lens[k % 3]
        up, left, diag = prev[:, :-1], prev[:, 1:], prev2[:, :-1]
        best = torch.minimum(up, left)
        torch.minimum(best, diag, out=best)
        length = torch.where(up == best, lprev[:, :-1], no_path)
        torch.minimum(length, torch.where(left == best, lprev[:, 1:], no_path), out=length)
        torch.minimum(length, torch.where(diag == best, lprev2[:, :-1], no_path), out=length)
        torch.add(skewed[:, k], best, out=cur[:, 1:])
        torch.add(length, 1.0, out=lcur[:, 1:])
        if k in end_diagonals:
            hit = last_k == k
            out = torch.where(hit, cur.gather(1, last_i)[:, 0], out)
            out_len = torch.where(hit, lcur.gather(1, last_i)[:, 0], out_len)
    return out / out_len
