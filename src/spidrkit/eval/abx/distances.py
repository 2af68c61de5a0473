"""Frame-to-frame distances, batched over pairs of items (docs/evaluation.md, "ABX").

- ``angular`` (default): ``acos(clamp(<a, b>, -1, 1)) / pi`` on L2-normalised frames, in [0, 1].
- ``euclidean``: ``||a - b||_2``.
- ``kl_symmetric``: ``(KL(a||b) + KL(b||a)) / 2`` for probability vectors (clamped at 1e-12 before
  the logarithm), i.e. ``sum_k (a_k - b_k)(log a_k - log b_k) / 2``.
- ``identical``: 0 when the two frames are equal (all dims), 1 otherwise; the default for units.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Distance = Literal["angular", "euclidean", "kl_symmetric", "identical"]
DISTANCES: tuple[str, ...] = ("angular", "euclidean", "kl_symmetric", "identical")
_KL_EPS = 1e-12


def prepare_frames(frames: torch.Tensor, distance: str, inplace: bool = False) -> torch.Tensor:
    """Per-frame preprocessing done once: L2-normalise (angular). ``[N, D] -> [N, D]``.

    ``inplace``: overwrite ``frames`` (same values as ``torch.nn.functional.normalize``).
    """
    if distance == "angular":
        if not inplace:
            return torch.nn.functional.normalize(frames, dim=-1)
        norm = torch.linalg.vector_norm(frames, dim=-1, keepdim=True).clamp_min_(1e-12)
        return frames.div_(norm)
    return frames


def pair_distances(x: torch.Tensor, y: torch.Tensor, distance: str) -> torch.Tensor:
    """Distances between every frame of ``x`` and of ``y``: ``[P, n, D], [P, m, D] -> [P, n, m]``.

    Frames must have gone through :func:`prepare_frames` with the same ``distance``.
    """
    if distance == "angular":
        dot = torch.bmm(x, y.transpose(1, 2)).clamp_(-1.0, 1.0)
        return torch.acos(dot).div_(math.pi)
    if distance == "euclidean":
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    if distance == "kl_symmetric":
        lx = torch.log(x.clamp_min(_KL_EPS))
        ly = torch.log(y.clamp_min(_KL_EPS))
        self_x = (x * lx).sum(-1)  # [P, n]
        self_y = (y * ly).sum(-1)  # [P, m]
        cross = torch.bmm(x, ly.transpose(1, 2)) + torch.bmm(lx, y.transpose(1, 2))
        return (self_x[:, :, None] + self_y[:, None, :] - cross).mul_(0.5)
    if distance == "identical":
        return (x[:, :, None, :] != y[:, None, :, :]).any(-1).to(x.dtype)
    raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def frame_distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> float:
    """One distance between two single frames ``[D]`` (raw, not prepared); used by tests/docs."""
    a2 = prepare_frames(a[None], distance)[None]
    b2 = prepare_frames(b[None], distance)[None]
    return float(pair_distances(a2, b2, distance)[0, 0, 0])
