"""Online k-means codebook with exponential-moving-average updates (``codebooks.{i}``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Codebook(nn.Module):
    """V codewords of dimension D, stored as running sums (``codebook``) and counts (``counts``).

    Centroids are ``codebook / counts``. Codes are nearest centroids by squared Euclidean distance
    (``distance="euclidean"``, the official rule), always computed in float32.

    ``distance="cosine"`` (spherical k-means, a small-scale training control, not in the official
    recipe): frames and centroids are L2-normalised before the nearest-centroid search and the running
    sums accumulate normalised frames. A centroid that averages many frames then no longer wins every
    frame by having a small norm, which is how Euclidean codebooks collapse on unclustered features.

    ``balance > 0`` (another small-scale control): each codeword carries a bias added to its score
    (cosine similarity, or minus the squared distance) before the arg-max. After every update the bias
    of a codeword that received fewer frames than the uniform share rises by ``balance``, that of one
    that received more falls by ``balance`` (bias-based load balancing, as for mixture-of-experts
    routers). Codes then stay spread over the codebook even while the teacher's features are still
    unclustered. The bias is a buffer (``codebooks.{i}.bias``) that exists only when ``balance > 0``.

    """

    codebook: Tensor
    counts: Tensor
    bias: Tensor  # registered only when balance > 0

    def __init__(
        self,
        dim: int,
        size: int,
        decay: float,
        distance: str = "euclidean",
        balance: float = 0.0,
    ) -> None:
        super().__init__()
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"codebook distance {distance!r}: expected 'euclidean' or 'cosine'")
        if not balance >= 0.0:
            raise ValueError(f"codebook balance {balance}: expected >= 0")
        self.decay = decay
        self.distance = distance
        self.balance = balance
        init = torch.randn(dim, size)
        init = F.instance_norm(init.unsqueeze(0), eps=1e-5).squeeze(
            0
        )  # standardise each row over V
        self.register_buffer("codebook", init.t().contiguous())  # [V, D]
        self.register_buffer("counts", torch.ones(size))  # [V]
        if balance > 0:
            self.register_buffer("bias", torch.zeros(size))  # [V]

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
        if self.distance == "cosine":
            score = F.normalize(x, dim=-1) @ F.normalize(c, dim=-1).t()
        elif self.balance > 0:
            score = 2 * x @ c.t() - (c * c).sum(-1)[None, :]  # = |x|^2 - distance
        else:
            dist = (x * x).sum(-1, keepdim=True) - 2 * x @ c.t() + (c * c).sum(-1)[None, :]
            return dist.argmin(dim=-1)
        if self.balance > 0:
            score = score + self.bias
        return score.argmax(dim=-1)

    def statistics(self, x: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Per-codeword frame counts [V] and sums [V, D] of ``x`` [N, D] assigned to ``codes`` [N]."""
        x = x.float()
        if self.distance == "cosine":
            x = F.normalize(x, dim=-1)
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
        if self.balance > 0:
            share = n.sum() / self.size
            step = self.balance * torch.sign(share - n)
            self.bias.add_(step - step.mean())
