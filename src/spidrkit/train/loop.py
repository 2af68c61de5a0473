"""The outer training loop: epochs, logging, validation, checkpoints, resume (``spidrkit train``).

:func:`fit` drives a :class:`~spidrkit.train.trainer.Trainer` over the training manifests until
``run.max_steps``. Order within a step: train step -> metrics (every ``log_interval``) ->
validation (every ``validation.interval``) -> checkpoint (every ``save_interval`` and at the end).
On start, the newest complete checkpoint in ``<output_dir>/checkpoints`` is resumed (``run.resume``):
model, optimizer, scheduler, scaler, sampler position and, once the data iterator is built, every
RNG, so a killed run continues exactly where its last checkpoint left it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.data import conv_num_frames, make_dataloader
from spidrkit.errors import ConfigError
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed as dist_utils
from spidrkit.train.config import TrainConfig
from spidrkit.train.distributed import DistInfo
from spidrkit.train.monitor import CodebookMonitor, MetricsLogger, format_postfix
from spidrkit.train.rundir import METRICS_NAME, run_folder, truncate_metrics
from spidrkit.train.trainer import KILL_ENV, Trainer, _kill_point
from spidrkit.utils.progress import progress

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """What :func:`fit` did."""

    step: int
    checkpoint: Path | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    valid_metrics: dict[str, float] = field(default_factory=dict)
    nonfinite_steps: int = 0
    collapse_warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- data


def _frames_fn(cfg: TrainConfig) -> Any:
    """Samples -> encoder frames for the configured extractor (ints or numpy arrays)."""
    layers = tuple((k, s) for _, k, s in cfg.model.extractor_conv_layer_config)
    return functools.partial(conv_num_frames, conv_layers=layers)


def make_train_loader(cfg: TrainConfig, dist: DistInfo) -> Any:
    """This rank's training DataLoader; ``loader.sampler`` (a BucketBatchSampler) has ``set_epoch``."""
    return make_dataloader(
        list(cfg.data.train_manifests),
        cfg.data,
        cfg.masking,
        seed=cfg.run.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        frames_fn=_frames_fn(cfg),
        targets=list(cfg.data.target_manifests) or None,
    )


def make_valid_loader(cfg: TrainConfig, dist: DistInfo, manifest: str) -> Any:
    """A deterministic held-out loader: the same batches, crops and masks at every validation."""
    return make_dataloader(
        [manifest],
        dataclasses.replace(cfg.data, shuffle=False),
        cfg.masking,
        seed=cfg.validation.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        frames_fn=_frames_fn(cfg),
    )


@contextlib.contextmanager
def preserve_rng() -> Iterator[None]:
    """Run a block (validation) without disturbing any RNG the training run depends on."""
    state = ckpt.capture_rng_state()
    try:
        yield
    finally:
        ckpt.restore_rng_state(state)


# ------------------------------------------------------------------------------------- validation


@torch.no_grad()
def evaluate(trainer: Trainer, loader: Any, max_batches: int | None = None) -> dict[str, float]:
    """Held-out masked-prediction loss and perplexities (eval mode: no dropout, no codebook update).

    Returns ``{"loss", "target_ppl", "pred_ppl", "masked_frames"}``; loss is the sum of per-frame
    losses over all ranks divided by the masked frames over all ranks; perplexities are averaged
    over batches weighted by masked frames.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=trainer.device)
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            am = batch.attention_mask
            with trainer.engine.autocast():
                per_frame, monitors = model(
                    batch.waveforms.to(trainer.device),
                    mask_indices=batch.mask_indices.to(trainer.device),
                    attention_mask=None if am is None else am.to(trainer.device),
                )
            n = float(per_frame.numel())
            totals += torch.tensor(
                [
                    float(per_frame.float().sum()),
                    n,
                    float(monitors["target_ppl"]) * n,
                    float(monitors["pred_ppl"]) * n,
                ],
                dtype=torch.float64,
                device=trainer.device,
            )
    finally:
        model.train(was_training)
    dist_utils.all_reduce_sum(totals)
    loss, n, tppl, pppl = totals.tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "target_ppl": tppl / n, "pred_ppl": pppl / n, "masked_frames": n}


def validate_all(trainer: Trainer) -> dict[str, float]:
    """Evaluate every ``data.valid_manifests`` entry; keys are ``<manifest stem>/<metric>``."""
    out: dict[str, float] = {}
    with preserve_rng():
        for manifest in trainer.cfg.data.valid_manifests:
            loader = make_valid_loader(trainer.cfg, trainer.dist, manifest)
            metrics = evaluate(trainer, loader, trainer.cfg.validation.max_batches)
            name = Path(manifest).stem
            out.update({f"{name}/{k}": v for k, v in metrics.items()})
    return out


# ------------------------------------------------------------------------------------------- fit


class _Window:
    """Running sums between two log lines (this rank), reduced over ranks when logged."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.tppl = self.pppl = self.gnorm = 0.0
        self.codebook_ppl: list[float] = []
        self.steps = 0
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, r: Any) -> None:
        if r.skipped:
            return
        self.loss += r.loss
        self.tppl += r.target_ppl
        self.pppl += r.pred_ppl
        self.gnorm += r.grad_norm
        if len(self.codebook_ppl) != len(r.codebook_ppl):
            self.codebook_ppl = [0.0] * len(r.codebook_ppl)
        for i, p in enumerate(r.codebook_ppl):
            self.codebook_ppl[i] += p
        self.steps += 1

    def metrics(self, device: torch.device) -> dict[str, float]:
        n = max(self.steps, 1)
        sums = dist_utils.reduce_scalars({"loss": self.loss / n}, device, op="sum")
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {
            "loss": sums["loss"],  # each rank's share of the global loss: the sum is the loss
            "target_ppl": self.tppl / n,
            "pred_ppl": self.pppl / n,
            "grad_norm": self.gnorm / n,
            "audio_s_per_s": self.samples / SAMPLE_RATE / elapsed,
            **{f"target_ppl_{i}": p / n for i, p in enumerate(self.codebook_ppl)},
        }


def fit(cfg: TrainConfig, dist: DistInfo | None = None, *, overwrite: bool = False) -> FitResult:
    """Train until ``run.max_steps`` (resuming if a checkpoint exists); returns a :class:`FitResult`.

    Rank 0 holds the run folder's lock throughout; with ``run.resume = false`` an existing run in
    ``run.output_dir`` is refused, or moved aside when ``overwrite`` (:mod:`spidrkit.train.rundir`).
    """
    if not cfg.data.train_manifests:
        raise ConfigError("data.train_manifests is empty: --set data.train_manifests=PATH.csv")
    trainer = Trainer(cfg, dist)
    with run_folder(
        cfg.output_dir,
        cfg.checkpoint_dir,
        resume=cfg.run.resume,
        overwrite=overwrite,
        enabled=trainer.dist.is_main,
    ):
        return _fit(cfg, trainer)


def _fit(cfg: TrainConfig, trainer: Trainer) -> FitResult:
    dist = trainer.dist
    rng_state = trainer.resume() if cfg.run.resume else None
    if dist.is_main:
        truncate_metrics(cfg.output_dir / METRICS_NAME, trainer.step)
    logger = MetricsLogger(
        cfg.output_dir,
        enabled=dist.is_main,
        tensorboard=cfg.run.tensorboard,
        wandb_project=cfg.run.wandb_project,
        wandb_name=cfg.run.wandb_name,
        config=cfg.to_dict(),
    )
    collapse = CodebookMonitor(
        trainer.model, cfg.run.collapse_min_active, cfg.run.collapse_min_target_ppl
    )
    loader = make_train_loader(cfg, dist)
    sampler = loader.sampler
    kill = _kill_point()
    bar = progress(
        total=cfg.run.max_steps,
        initial=trainer.step,
        desc="train",
        enabled=cfg.run.progress and dist.is_main,
        unit="step",
    )
    window = _Window()
    result = FitResult(step=trainer.step, checkpoint=None)
    last_saved = trainer.step if rng_state is not None else -1
    try:
        while trainer.step < cfg.run.max_steps:
            sampler.set_epoch(trainer.epoch, trainer.batches_in_epoch)
            batches = iter(loader)
            if rng_state is not None:  # after the iterator exists: it may draw from the RNG
                ckpt.restore_rng_state(rng_state)
                rng_state = None
            for batch in batches:
                r = trainer.train_step(batch)
                trainer.batches_in_epoch += 1
                window.add(r)
                window.samples += r.samples
                if r.skipped:
                    continue
                bar.update(1)
                step = trainer.step
                if step % cfg.run.log_interval == 0 or step == cfg.run.max_steps:
                    metrics = window.metrics(trainer.device)
                    metrics["lr"] = r.lr
                    metrics["nonfinite_steps"] = float(trainer.nonfinite_total)
                    metrics.update(collapse.update(step, metrics["target_ppl"]))
                    logger.log(step, metrics)
                    bar.set_postfix(
                        format_postfix(
                            {
                                k: metrics[k]
                                for k in ("loss", "target_ppl", "pred_ppl", "lr", "audio_s_per_s")
                            }
                        )
                    )
                    result.last_metrics = metrics
                    window.reset()
                interval = cfg.validation.interval
                if cfg.data.valid_manifests and (
                    (interval and step % interval == 0) or step == cfg.run.max_steps
                ):
                    valid = validate_all(trainer)
                    logger.log(step, valid, split="valid")
                    result.valid_metrics = valid
                    if dist.is_main:
                        log.info(
                            "step %d validation: %s",
                            step,
                            ", ".join(f"{k}={v:.4g}" for k, v in valid.items()),
                        )
                if step % cfg.run.save_interval == 0 or step == cfg.run.max_steps:
                    trainer.save()
                    last_saved = step
                if kill == ("step", step):
                    import os
                    import signal

                    logger.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                if step >= cfg.run.max_steps:
                    break
            else:
                trainer.epoch += 1
                trainer.batches_in_epoch = 0
                continue
            break
        if last_saved != trainer.step:
            trainer.save()
    finally:
        bar.close()
        logger.close()
    result.step = trainer.step
    result.nonfinite_steps = trainer.nonfinite_total
    result.collapse_warnings = collapse.warnings
    result.checkpoint = ckpt.find_latest_checkpoint(cfg.checkpoint_dir)
    if not math.isfinite(result.last_metrics.get("loss", 0.0)):
        log.warning("last logged loss is not finite")
    return result


__all__ = ["FitResult", "KILL_ENV", "evaluate", "fit", "make_train_loader", "validate_all"]
