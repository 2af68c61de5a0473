"""The one fault-injection point of training, for the tests that kill a run and resume it.

Set ``SPIDRKIT_FAULT`` in the environment of a training process (``spidrkit train`` or
``spidrkit lm-train``) and :func:`spidrkit.train.fit.fit` SIGKILLs it at that point:

- ``save:N``: while writing the checkpoint of step N (the file is written and synced, not yet
  renamed into place: the crash a power cut mid-save leaves);
- ``step:N``: right after step N (and its metrics, validation and checkpoint, if due).

Nothing else in spidrkit reads it; unset, it costs one environment lookup per step.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

ENV = "SPIDRKIT_FAULT"


def planned(point: str, step: int) -> bool:
    """True when ``SPIDRKIT_FAULT`` asks to kill the process at ``point`` (save, step) of ``step``."""
    kind, _, at = os.environ.get(ENV, "").partition(":")
    return kind == point and at.strip() == str(step)


def kill() -> None:
    """SIGKILL this process (no clean-up, no ``finally``: what a crash or the OOM killer does)."""
    os.kill(os.getpid(), signal.SIGKILL)


def hook(point: str, step: int) -> Callable[[], None] | None:
    """:func:`kill` when the fault is planned at (``point``, ``step``), else None."""
    return kill if planned(point, step) else None
