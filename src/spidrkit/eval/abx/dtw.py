"""Path-normalised DTW, vectorised across many pairs of items (SPEC section 4).

Steps ``(i-1, j)``, ``(i-1, j-1)``, ``(i, j-1)``; the accumulated cost of the best path to the last
cell is divided by the length (number of cells) of that path. When several predecessors tie on
accumulated cost, the one with the shortest path wins, so the path is "the shortest of the cheapest
paths" and the result is exactly symmetric, ``dtw(x, y) == dtw(y, x)``. Ties only happen with
discrete distances (``identical``); on continuous features this matches the usual back-tracking.

The loop runs over anti-diagonals ``k = i + j``: every cell of a diagonal depends only on the two
previous diagonals, so a diagonal of every pair of the batch is one vector operation.
"""

from __future__ import annotations

import torch


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

    big = torch.full((P, 1), float("inf"), device=dev, dtype=dt)
    last_k = (n + m - 2).to(dev)  # diagonal of the end cell of each pair
    last_i = (n - 1).to(dev)
    out = torch.zeros(P, device=dev, dtype=dt)
    out_len = torch.ones(P, device=dev, dtype=dt)

    # diagonal k = 0: only cell (0, 0)
    acc1 = torch.full((P, N), float("inf"), device=dev, dtype=dt)
    acc1[:, 0] = skewed[:, 0, 0]
    len1 = torch.zeros(P, N, device=dev, dtype=dt)
    len1[:, 0] = 1.0
    acc2 = torch.full_like(acc1, float("inf"))
    len2 = torch.zeros_like(len1)
    done = last_k == 0
    out = torch.where(done, acc1[:, 0], out)
    for k in range(1, num_diag):
        up = torch.cat([big, acc1[:, :-1]], dim=1)  # (i-1, j)   on diagonal k-1, row i-1
        left = acc1  # (i, j-1)                       on diagonal k-1, row i
        diag = torch.cat([big, acc2[:, :-1]], dim=1)  # (i-1, j-1) on diagonal k-2, row i-1
        up_len = torch.cat([len1[:, :1], len1[:, :-1]], dim=1)
        diag_len = torch.cat([len2[:, :1], len2[:, :-1]], dim=1)
        best = torch.minimum(torch.minimum(up, left), diag)
        cand = torch.stack([up_len, len1, diag_len])  # [3, P, N]
        tie = torch.stack([up == best, left == best, diag == best])
        new_len = torch.where(tie, cand, inf).amin(0) + 1.0
        new_acc = skewed[:, k] + best
        acc2, len2 = acc1, len1
        acc1, len1 = new_acc, torch.where(torch.isfinite(new_len), new_len, 0.0)
        hit = last_k == k
        if bool(hit.any()):
            idx = last_i[:, None]
            out = torch.where(hit, acc1.gather(1, idx)[:, 0], out)
            out_len = torch.where(hit, len1.gather(1, idx)[:, 0], out_len)
    return out / out_len
