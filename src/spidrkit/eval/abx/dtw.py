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

_NO_PATH = 1e9  # path length of cells no path reaches (never selected: their cost is +inf)


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
