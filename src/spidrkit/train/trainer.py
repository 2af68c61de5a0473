"""Pretraining SpidR or DinoSR: the :class:`Trainer` task that :func:`spidrkit.train.fit.fit`
drives (``spidrkit train``), and :func:`pretrain`, the two put together.

The trainer builds the batches (:func:`make_train_loader`), takes one optimizer step
(:meth:`Trainer.train_step`), validates (:func:`validate_all`) and says what a checkpoint holds
(:meth:`Trainer.state_dict`); resume, logging, the cadence and checkpoint files are
:mod:`spidrkit.train.fit`'s. A step, as in the official recipe (docs/training.md, "What a step does"),
reads top to bottom in :meth:`Trainer.train_step`:

1. ``per_frame_loss, monitors = model(waveforms, mask_indices=..., attention_mask=...)`` under
   autocast; the forward updates the codebooks (one all-reduce inside the model);
2. loss = ``per_frame_loss.sum() / masked frames over all ranks``; DDP averages gradients over
   ranks, so each rank back-propagates ``world_size`` times that, and the gradient is exactly the
   gradient of the global batch;
3. a non-finite loss (on any rank) skips the step: codebook buffers are restored, nothing is
   updated, and ``run.max_nonfinite_steps`` of them in a row stop the run;
4. gradient clipping, AdamW, LR schedule (:class:`~spidrkit.train.engine.Engine`: fp16 scaling,
   DDP), then ``model.update_ema(step)`` (the teacher).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.data import conv_num_frames, make_dataloader
from spidrkit.errors import ConfigError, SpidrkitError
from spidrkit.models import DinoSR, SpidR, build_model
from spidrkit.train import adapt
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed as dist_utils
from spidrkit.train.config import TrainConfig
from spidrkit.train.distributed import DistInfo
from spidrkit.train.engine import Engine
from spidrkit.train.fit import FitResult, fit
from spidrkit.train.monitor import CodebookMonitor
from spidrkit.train.optim import build_optimizer, build_scheduler, sync_trainable

log = logging.getLogger(__name__)


class NonFiniteLossError(SpidrkitError):
    """Too many consecutive steps had a NaN/inf loss."""


@dataclass
class StepResult:
    """What one :meth:`Trainer.train_step` did (losses are this rank's, already normalised)."""

    loss: float
    target_ppl: float
    pred_ppl: float
    grad_norm: float
    lr: float
    masked_frames: int
    """Masked frames over all ranks."""
    samples: int
    """Audio samples over all ranks."""
    skipped: bool = False
    codebook_ppl: tuple[float, ...] = ()
    """Target perplexity of each codebook (``target_ppl`` is their mean)."""


def _rank_seed(seed: int, rank: int) -> int:
    return seed + 1_000_003 * rank


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


# ---------------------------------------------------------------------------------------- metrics


class _Window:
    """Running sums of the steps between two log lines (this rank), reduced over ranks when
    logged."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.tppl = self.pppl = self.gnorm = 0.0
        self.codebook_ppl: list[float] = []
        self.steps = 0
        self.samples = 0
        self.lr = 0.0
        self.start = time.perf_counter()

    def add(self, r: StepResult) -> None:
        self.samples += r.samples
        self.lr = r.lr
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
            "lr": self.lr,
        }


# ------------------------------------------------------------------------------------------ task


class Trainer:
    """Pretraining of a SpidR or DinoSR model as configured by a :class:`TrainConfig`: the task
    that :func:`spidrkit.train.fit.fit` drives (:func:`pretrain`). Tests and benchmarks also call
    :meth:`train_step` directly.

    Args:
        cfg: the resolved config.
        dist: where this process sits (default: :func:`init_distributed` from the environment).
        model: use this module instead of building ``cfg.run.model_type`` (tests, benchmarks).
    """

    def __init__(
        self, cfg: TrainConfig, dist: DistInfo | None = None, model: nn.Module | None = None
    ):
        self.cfg = cfg
        self.dist = dist or dist_utils.init_distributed(cfg.run.device)
        self.device = self.dist.device
        torch.manual_seed(cfg.run.seed)  # identical model init on every rank
        model = model if model is not None else build_model(cfg.run.model_type, cfg.model)
        self.init_record: dict[str, Any] | None = None
        """Where the run started from (``run.init_checkpoint``: name, path, SHA-256, format)."""
        self.frozen = adapt.frozen_prefixes(cfg.run.freeze_extractor, cfg.run.freeze_layers)
        """Parameter-name prefixes never trained (``run.freeze_extractor`` / ``freeze_layers``)."""
        init_src = None
        if cfg.run.init_checkpoint:
            init_src = adapt.read_init_source(cfg.run.init_checkpoint)
            self.init_record = init_src.record()
            if cfg.run.resume and ckpt.find_latest_checkpoint(cfg.checkpoint_dir) is not None:
                init_src = None  # resuming: the run's own checkpoint holds the weights
            else:
                adapt.load_init_weights(model, init_src, teacher=cfg.run.init_teacher)
        model.to(self.device)
        if isinstance(model, SpidR | DinoSR):
            # MFCC targets for the whole run: the teacher's codes would feed nothing
            model.idle_teacher_in_warmup = (
                cfg.model.warmup_targets == "mfcc"
                and cfg.model.warmup_target_steps >= cfg.run.max_steps
            )
        if init_src is not None and cfg.run.init_codebooks == "kmeans":
            if not isinstance(model, SpidR | DinoSR):
                raise ConfigError(
                    f"run.init_codebooks = 'kmeans' needs a SpidR or DinoSR model, not {type(model)}"
                )
            adapt.init_codebooks_from_data(model, cfg)
            if dist_utils.is_initialized():  # every rank holds rank 0's codebooks
                for buf in model.codebooks.buffers():
                    torch.distributed.broadcast(buf, 0)
        self.step = 0
        """Optimizer steps taken."""
        self.epoch = 0
        self.batches_in_epoch = 0
        """Batches of ``epoch`` this rank has consumed."""
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        sync_trainable(model, 0, self.frozen)
        optimizer = build_optimizer(model, cfg.optimizer, self.device, self.frozen)
        layer_drop = float(getattr(getattr(model, "config", None), "encoder_layer_drop", 0.0))
        self.engine = Engine(
            model,
            optimizer,
            build_scheduler(optimizer, cfg.optimizer, cfg.run.max_steps),
            self.dist,
            cfg.run.precision,
            compile=cfg.run.compile,
            broadcast_buffers=False,  # codebooks are kept in sync by the model's all-reduce
            find_unused_parameters=layer_drop > 0,
        )
        """Precision, DDP/compile wrap, optimizer steps and checkpoints (shared with the unit LM)."""
        self._wrapped: nn.Module | None = None
        self._trainable_step = -1
        self._sync_trainable()
        # different dropout on each rank, reproducible per (seed, rank)
        torch.manual_seed(_rank_seed(cfg.run.seed, self.dist.rank))
        self.window = _Window()
        self.collapse = self._collapse_monitor()

    name = "train"
    progress_keys = ("loss", "target_ppl", "pred_ppl", "lr", "audio_s_per_s")

    @property
    def checkpoint_dir(self) -> Path:
        return self.cfg.checkpoint_dir

    def _collapse_monitor(self) -> CodebookMonitor:
        run = self.cfg.run
        return CodebookMonitor(self.model, run.collapse_min_active, run.collapse_min_target_ppl)

    @property
    def model(self) -> nn.Module:
        return self.engine.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.engine.optimizer

    @property
    def scheduler(self) -> Any:
        return self.engine.scheduler

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.engine.scaler

    # -- model wrapping ---------------------------------------------------------------------------

    def _sync_trainable(self) -> None:
        """Follow the model's trainable set for the current step; (re)wrap DDP when it changes."""
        changed = sync_trainable(self.model, self.step, self.frozen)
        if self._wrapped is None or changed:
            self._wrapped = self.engine.wrap()
        self._params = [p for p in self.model.parameters() if p.requires_grad]

    # -- one step ---------------------------------------------------------------------------------

    def _batch_counts(self, batch: Any) -> torch.Tensor:
        """[masked frames, audio samples] of this rank's batch, summed over ranks (float64)."""
        lengths = getattr(batch, "lengths", None)
        if lengths is not None and batch.attention_mask is not None:
            samples = float(torch.as_tensor(lengths).sum())
        else:
            samples = float(batch.waveforms.numel())
        counts = torch.tensor(
            [float(batch.mask_indices.numel()), samples], dtype=torch.float64, device=self.device
        )
        return dist_utils.all_reduce_sum(counts)

    def train_step(self, batch: Any) -> StepResult:
        """One optimizer step on ``batch`` (waveforms [B, S], mask_indices [B, M], attention_mask)."""
        self._sync_trainable()
        self.model.train()
        wrapped = self._wrapped
        assert wrapped is not None
        waveforms = batch.waveforms.to(self.device, non_blocking=True)
        mask_indices = batch.mask_indices.to(self.device, non_blocking=True)
        attention_mask = batch.attention_mask
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device, non_blocking=True)
        views = {}
        target_waveforms = getattr(batch, "target_waveforms", None)
        if target_waveforms is not None:
            views["target_waveforms"] = target_waveforms.to(self.device, non_blocking=True)
        masked, samples = self._batch_counts(batch).tolist()
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}

        with self.engine.autocast():
            per_frame, monitors = wrapped(
                waveforms, mask_indices=mask_indices, attention_mask=attention_mask, **views
            )
        loss_sum = per_frame.float().sum()
        local_loss = float(loss_sum.detach()) / max(masked, 1.0) * self.dist.world_size
        lr = self.scheduler.get_last_lr()[0]
        if dist_utils.any_rank(not math.isfinite(local_loss), self.device):
            return self._skip(buffers, lr, int(masked), int(samples), "loss")

        loss = loss_sum * (self.dist.world_size / masked)
        self.engine.backward(loss)
        grad_norm = self.engine.clip(self._params, self.cfg.optimizer.clip_norm)
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip(buffers, lr, int(masked), int(samples), "gradient norm")
        self.engine.step()
        self.step += 1
        self.nonfinite_in_a_row = 0
        update_ema = getattr(self.model, "update_ema", None)
        if callable(update_ema):
            update_ema(self.step)
        result = StepResult(
            loss=local_loss / self.dist.world_size,
            target_ppl=float(monitors["target_ppl"]),
            pred_ppl=float(monitors["pred_ppl"]),
            grad_norm=grad_norm,
            lr=lr,
            masked_frames=int(masked),
            samples=int(samples),
            codebook_ppl=tuple(
                float(monitors[f"target_ppl_{i}"])
                for i in range(sum(k.startswith("target_ppl_") for k in monitors))
            ),
        )
        self.window.add(result)
        return result

    def _skip(
        self, buffers: dict[str, torch.Tensor], lr: float, masked: int, samples: int, what: str
    ) -> StepResult:
        with torch.no_grad():
            for name, buf in self.model.named_buffers():
                buf.copy_(buffers[name])
        self.optimizer.zero_grad(set_to_none=True)
        if self.dist.is_distributed:  # a DDP forward without backward: start a fresh reducer
            self._wrapped = self.engine.wrap()
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        log.warning(
            "step %d: non-finite %s, step skipped (%d in a row, %d in total)",
            self.step + 1,
            what,
            self.nonfinite_in_a_row,
            self.nonfinite_total,
        )
        if self.nonfinite_in_a_row >= self.cfg.run.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} consecutive steps had a non-finite {what} (last good step "
                f"{self.step}); lower optimizer.lr, use run.precision = 'fp32' or 'bf16', or resume "
                "from an earlier checkpoint"
            )
        nan = float("nan")
        result = StepResult(nan, nan, nan, nan, lr, masked, samples, skipped=True)
        self.window.add(result)
        return result

    # -- what fit calls around the step ----------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def batches(self) -> Iterator[Any]:
        """Endless training batches from (``epoch``, ``batches_in_epoch``) on. This epoch's
        DataLoader iterator is created now (it draws its base seed from the RNG), later epochs'
        when reached."""
        loader = make_train_loader(self.cfg, self.dist)
        loader.sampler.set_epoch(self.epoch, self.batches_in_epoch)
        epoch = iter(loader)
        self.window.reset()

        def endless() -> Iterator[Any]:
            nonlocal epoch
            while True:
                for batch in epoch:
                    self.batches_in_epoch += 1
                    yield batch
                self.epoch += 1
                self.batches_in_epoch = 0
                loader.sampler.set_epoch(self.epoch, 0)
                epoch = iter(loader)

        return endless()

    def metrics(self) -> dict[str, float]:
        """Means over the steps since the last call (loss over all ranks), learning rate,
        non-finite steps so far and the active codewords (:class:`CodebookMonitor`)."""
        metrics = self.window.metrics(self.device)
        metrics["nonfinite_steps"] = float(self.nonfinite_total)
        metrics.update(self.collapse.update(self.step, metrics["target_ppl"]))
        self.window.reset()
        return metrics

    def validate(self) -> dict[str, float] | None:
        return validate_all(self) if self.cfg.data.valid_manifests else None

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The training checkpoint: official keys plus RNG (every rank), sampler and counters.
        Collective (:meth:`Engine.state_dict`): every rank calls it."""
        meta: dict[str, Any] = {}
        model_cfg: Any = getattr(self.model, "config", None)
        if hasattr(model_cfg, "to_dict"):  # self-describing, as spidrkit.models.save_model writes
            meta = {
                "spidrkit": {"model_type": self.cfg.run.model_type, "config": model_cfg.to_dict()}
            }
        if self.init_record is not None:
            meta["init"] = self.init_record
        return self.engine.state_dict(
            step=self.step,
            epoch=self.epoch,
            sampler={"epoch": self.epoch, "batches_consumed": self.batches_in_epoch},
            trainer={
                "nonfinite_total": self.nonfinite_total,
                "nonfinite_in_a_row": self.nonfinite_in_a_row,
                "model_type": self.cfg.run.model_type,
            },
            extra=meta,
        )

    def load_state_dict(self, state: dict[str, Any], source: Any = "checkpoint") -> dict[str, Any]:
        """Restore everything but the RNG; returns this rank's RNG state (restored by
        :func:`~spidrkit.train.fit.fit` once the data iterator exists)."""
        rng = self.engine.load_state_dict(state, source)
        self.step = int(state["step"])
        self._sync_trainable()
        sampler = state.get("sampler", {})
        self.epoch = int(sampler.get("epoch", state.get("epoch", 0)))
        self.batches_in_epoch = int(sampler.get("batches_consumed", 0))
        trainer = state.get("trainer", {})
        self.nonfinite_total = int(trainer.get("nonfinite_total", 0))
        self.nonfinite_in_a_row = int(trainer.get("nonfinite_in_a_row", 0))
        if isinstance(state.get("init"), dict):
            self.init_record = state["init"]
        self.collapse = self._collapse_monitor()  # codewords used from the restored counts on
        return rng


def pretrain(
    cfg: TrainConfig, dist: DistInfo | None = None, *, overwrite: bool = False
) -> FitResult:
    """Pretrain as ``cfg`` says (``spidrkit train``): :func:`~spidrkit.train.fit.fit` on a
    :class:`Trainer`; returns a :class:`~spidrkit.train.fit.FitResult`."""
    if not cfg.data.train_manifests:
        raise ConfigError("data.train_manifests is empty: --set data.train_manifests=PATH.csv")
    trainer = Trainer(cfg, dist)
    result = fit(trainer, overwrite=overwrite)
    result.nonfinite_steps = trainer.nonfinite_total
    result.collapse_warnings = trainer.collapse.warnings
    return result
