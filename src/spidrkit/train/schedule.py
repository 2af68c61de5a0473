"""Learning-rate schedules as picklable multipliers for :class:`torch.optim.lr_scheduler.LambdaLR`.

Each schedule is a small object ``f(step) -> multiplier of the peak lr``; ``step`` is the number of
optimizer steps already taken (0 before the first). Objects rather than lambdas, so that
``LambdaLR.state_dict()`` records their fields and a checkpoint loads with ``weights_only=True``.

- :class:`TriStage` (the official recipe): linear warm-up from ``init_lr_scale`` to 1 over
  ``warmup_steps``, hold at 1 for ``hold_steps``, exponential decay to ``final_lr_scale`` over
  ``decay_steps``, then stay at ``final_lr_scale``.
- :class:`Cosine`: linear warm-up from ``init_lr_scale``, then half a cosine down to
  ``final_lr_scale`` at ``total_steps``.
- :class:`Constant`: optional linear warm-up, then 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from spidrkit.errors import ConfigError


def _warmup(step: int, warmup_steps: int, init_lr_scale: float) -> float:
    return init_lr_scale + (1.0 - init_lr_scale) * step / warmup_steps


@dataclass
class TriStage:
    """Warm-up, hold, exponential decay (fairseq's ``tri_stage``; the official SpidR schedule)."""

    warmup_steps: int = 12_000
    hold_steps: int = 188_000
    decay_steps: int = 200_000
    init_lr_scale: float = 0.01
    final_lr_scale: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps, self.init_lr_scale)
        step -= self.warmup_steps
        if step < self.hold_steps:
            return 1.0
        step -= self.hold_steps
        if step < self.decay_steps:
            return math.exp(math.log(self.final_lr_scale) * step / self.decay_steps)
        return self.final_lr_scale


@dataclass
class Cosine:
    """Linear warm-up then cosine decay to ``final_lr_scale`` at ``total_steps``."""

    warmup_steps: int = 0
    total_steps: int = 400_000
    init_lr_scale: float = 0.01
    final_lr_scale: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps, self.init_lr_scale)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        cos = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr_scale + (1.0 - self.final_lr_scale) * cos


@dataclass
class Constant:
    """Optional linear warm-up, then the peak learning rate forever."""

    warmup_steps: int = 0
    init_lr_scale: float = 0.01

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps, self.init_lr_scale)
        return 1.0


SCHEDULES = {"tristage": TriStage, "cosine": Cosine, "constant": Constant}


def make_schedule(
    name: str,
    *,
    warmup_steps: int = 0,
    hold_steps: int = 0,
    decay_steps: int = 0,
    total_steps: int = 0,
    init_lr_scale: float = 0.01,
    final_lr_scale: float = 0.01,
) -> TriStage | Cosine | Constant:
    """Build a schedule by name ("tristage", "cosine", "constant") from the union of fields."""
    if name == "tristage":
        return TriStage(warmup_steps, hold_steps, decay_steps, init_lr_scale, final_lr_scale)
    if name == "cosine":
        return Cosine(warmup_steps, total_steps, init_lr_scale, final_lr_scale)
    if name == "constant":
        return Constant(warmup_steps, init_lr_scale)
    raise ConfigError(f"scheduler {name!r}: expected one of {sorted(SCHEDULES)}")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]) -> LambdaLR:
    """A LambdaLR applying ``schedule`` to every group; ``state_dict()`` is weights-only safe."""
    return LambdaLR(optimizer, lr_lambda=schedule)
