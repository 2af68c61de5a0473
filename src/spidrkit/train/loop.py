"""``spidrkit.train.loop.fit(cfg)``: the name ``spidrkit train`` had before the one loop
(:mod:`spidrkit.train.fit`); the same as :func:`spidrkit.train.trainer.pretrain`."""

from __future__ import annotations

from spidrkit.train.fit import FitResult
from spidrkit.train.trainer import evaluate, make_train_loader, pretrain, validate_all

fit = pretrain

__all__ = ["FitResult", "evaluate", "fit", "make_train_loader", "validate_all"]
