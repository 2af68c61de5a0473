"""Online k-means codebook with exponential-moving-average updates (``codebooks.{i}``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Codebook(nn.Module):
    """V codewords of dimension D, stored as running sums (``codebook``) and counts (``counts``).

    Centroids are ``codebook / counts``. Codes are nearest centroids by squared Euclidean distance,
    always computed in float32.
    """

    def __init__(self, dim: int, size: int, decay: float) -> None:
        super().__init__()
        self.decay = decay
        init = torch.randn(dim, size)
        init = F.instance_norm(init.unsqueeze(0), eps=1e-5).squeeze(
            0
        )  # standardise each row over V
        self.register_buffer("codebook", init.t().contiguous())  # [V, D]
        self.register_buffer("counts", torch.ones(size))  # [V]

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def centroids(self) -> Tensor:
        """[V, D] float32."""
        return self.codebook / self.counts[:, None]

    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def assign(self, x: Tensor) -> Tensor:
        """Nearest codeword of each row of ``x`` [N, D] -> LongTensor [N]."""
        x = x.float()
        c = self.centroids()
        dist = (x * x).sum(-1, keepdim=True) - 2 * x @ c.t() + (c * c).sum(-1)[None, :]
        return dist.argmin(dim=-1)

    def statistics(self, x: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Per-codeword frame counts [V] and sums [V, D] of ``x`` [N, D] assigned to ``codes`` [N]."""
        x = x.float()
        n = torch.bincount(codes, minlength=self.size).to(x.dtype)
        s = torch.zeros_like(self.codebook).index_add_(0, codes, x)
        return n, s

    @torch.no_grad()
    def update(self, n: Tensor, s: Tensor) -> None:
        """EMA update of the codewords that received frames (n > 0), from rank-summed statistics."""
        d = self.decay
        used = n > 0
        new_counts = d * self.counts + (1 - d) * n
        new_codebook = d * self.codebook + (1 - d) * s
        self.counts.copy_(torch.where(used, new_counts, self.counts))
        self.codebook.copy_(torch.where(used[:, None], new_codebook, self.codebook))
