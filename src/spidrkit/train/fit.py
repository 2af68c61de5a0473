"""The one training loop: resume, logging, progress, validation and checkpoints (``spidrkit train``
and ``spidrkit lm-train``).

:func:`fit` drives a :class:`Task` until ``run.max_steps``: pretraining
(:class:`spidrkit.train.trainer.Trainer`) or the unit LM (:class:`spidrkit.lm.train.LMTask`). A
task builds its batches, takes one optimizer step on a batch, validates, and says what its
checkpoint holds; everything around that is here, the same for both:

1. the run folder: rank 0 holds its lock; with ``run.resume = false`` an earlier run is refused, or
   moved aside when ``overwrite`` (:mod:`spidrkit.train.rundir`);
2. resume (``run.resume``): the newest intact checkpoint in ``task.checkpoint_dir`` is loaded, the
   lines of ``metrics.jsonl`` after its step are dropped, and every RNG is restored once the data
   iterator exists (creating it may draw from the RNG), so a killed run continues exactly;
3. per step, in this order: the step -> metrics (every ``run.log_interval``) -> validation (every
   ``validation.interval``, 0 = at the end only) -> checkpoint (every ``run.save_interval``); the
   last step does all three;
4. the fault-injection point of the resume tests (:mod:`spidrkit.train.faults`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from spidrkit.train import checkpoint as ckpt
from spidrkit.train import faults
from spidrkit.train.config import CommonRunConfig
from spidrkit.train.distributed import DistInfo
from spidrkit.train.engine import Engine
from spidrkit.train.monitor import MetricsLogger, format_postfix
from spidrkit.train.rundir import METRICS_NAME, run_folder, truncate_metrics
from spidrkit.utils.progress import progress

log = logging.getLogger(__name__)


class _Validation(Protocol):
    @property
    def interval(self) -> int: ...


class TaskConfig(Protocol):
    """What :func:`fit` reads of a task's config: the ``[run]`` and ``[validation]`` sections."""

    @property
    def run(self) -> CommonRunConfig: ...

    @property
    def validation(self) -> _Validation: ...


class Task(Protocol):
    """What :func:`fit` trains (read-only members may be plain attributes). ``step`` counts
    optimizer steps; a batch whose step was skipped (non-finite loss) leaves it unchanged."""

    @property
    def name(self) -> str:
        """Progress-bar label (``train``, ``lm-train``)."""
        ...

    @property
    def cfg(self) -> TaskConfig: ...

    @property
    def dist(self) -> DistInfo: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def step(self) -> int: ...

    @property
    def checkpoint_dir(self) -> Path: ...

    @property
    def progress_keys(self) -> tuple[str, ...]:
        """Metrics shown beside the progress bar."""
        ...

    def config(self) -> dict[str, Any]:
        """The resolved config: ``config.json`` beside the checkpoints, and W&B's run config."""
        ...

    def batches(self) -> Iterator[Any]:
        """Endless training batches from the current position (epoch after epoch)."""
        ...

    def train_step(self, batch: Any) -> Any:
        """One optimizer step on ``batch`` (or a skipped one)."""
        ...

    def metrics(self) -> dict[str, float]:
        """Training metrics since the last call, over all ranks (collective)."""
        ...

    def validate(self) -> dict[str, float] | None:
        """Held-out metrics over all ranks (collective); None when there is nothing to validate."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (collective: every rank's RNG state is gathered)."""
        ...

    def load_state_dict(self, state: dict[str, Any], source: Any) -> dict[str, Any]:
        """Restore everything but the RNG; returns this rank's RNG state."""
        ...


@dataclass
class FitResult:
    """What :func:`fit` did."""

    step: int
    checkpoint: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    valid_metrics: dict[str, float] = field(default_factory=dict)
    nonfinite_steps: int = 0
    """Pretraining: steps skipped for a non-finite loss."""
    collapse_warnings: list[str] = field(default_factory=list)
    """Pretraining: codebook collapse warnings."""


def fit(task: Task, *, overwrite: bool = False) -> FitResult:
    """Train ``task`` until ``run.max_steps`` (resuming if ``run.resume`` and a checkpoint exists).

    Rank 0 holds the run folder's lock throughout; with ``run.resume = false`` an existing run in
    ``run.output_dir`` is refused, or moved aside when ``overwrite``.
    """
    run = task.cfg.run
    with run_folder(
        run.output_dir,
        task.checkpoint_dir,
        resume=run.resume,
        overwrite=overwrite,
        enabled=task.dist.is_main,
    ):
        return _fit(task)


def _resume(task: Task) -> dict[str, Any] | None:
    """Load the newest intact checkpoint, if any; returns this rank's RNG state."""
    found = task.engine.latest(task.checkpoint_dir)
    if found is None:
        return None
    path, state = found
    rng = task.load_state_dict(state, path)
    log.info("resumed from %s (step %d)", path, task.step)
    return rng


def _fit(task: Task) -> FitResult:
    run, dist = task.cfg.run, task.dist
    rng = _resume(task) if run.resume else None
    if dist.is_main:
        truncate_metrics(Path(run.output_dir) / METRICS_NAME, task.step)
    logger = MetricsLogger(
        run.output_dir,
        enabled=dist.is_main,
        tensorboard=run.tensorboard,
        wandb_project=run.wandb_project,
        wandb_name=run.wandb_name,
        config=task.config(),
    )
    bar = progress(
        total=run.max_steps,
        initial=task.step,
        desc=task.name,
        enabled=run.progress and dist.is_main,
        unit="step",
    )
    result = FitResult(step=task.step, checkpoint=None)
    if dist.is_main and task.step < run.max_steps:
        log.info(
            "%s: steps %d-%d on %s, precision %s (run.precision = %r)",
            task.name,
            task.step + 1,
            run.max_steps,
            task.engine.device,
            task.engine.precision,
            run.precision,
        )
    try:
        if task.step < run.max_steps:
            batches = task.batches()
            if rng is not None:  # once the data iterator exists: creating it may draw from the RNG
                ckpt.restore_rng_state(rng)
        while task.step < run.max_steps:
            before = task.step
            task.train_step(next(batches))
            if task.step == before:  # skipped (non-finite loss): nothing to log or save
                continue
            step = task.step
            bar.update(1)
            last = step == run.max_steps
            if step % run.log_interval == 0 or last:
                result.last_metrics = metrics = task.metrics()
                logger.log(step, metrics)
                bar.set_postfix(format_postfix({k: metrics[k] for k in task.progress_keys}))
            interval = task.cfg.validation.interval
            if (interval and step % interval == 0) or last:
                valid = task.validate()
                if valid is not None:
                    logger.log(step, valid, split="valid")
                    result.valid_metrics = valid
                    if dist.is_main:
                        shown = ", ".join(f"{k}={v:.4g}" for k, v in valid.items())
                        log.info("step %d validation: %s", step, shown)
            if step % run.save_interval == 0 or last:
                _save(task)
            if faults.planned("step", step):
                logger.flush()
                faults.kill()
    finally:
        bar.close()
        logger.close()
    result.step = task.step
    result.checkpoint = ckpt.find_latest_checkpoint(task.checkpoint_dir)
    if not math.isfinite(result.last_metrics.get("loss", 0.0)):
        log.warning("last logged loss is not finite")
    return result


def _save(task: Task) -> None:
    """Write ``checkpoint_<step>.pt`` and ``config.json`` (rank 0; every rank calls it)."""
    state = task.state_dict()  # collective (RNG gather): every rank takes part
    task.engine.save(
        task.checkpoint_dir,
        state,
        keep_last=task.cfg.run.keep_last,
        config=task.config(),
        before_replace=faults.hook("save", task.step),
    )
