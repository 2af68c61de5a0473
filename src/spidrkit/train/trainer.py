"""The SpidR/DinoSR pretraining engine: one :class:`Trainer`, small testable pieces.

``Trainer(cfg).fit()`` runs the whole recipe; the pieces are public so tests and benchmarks can drive
them: :meth:`Trainer.train_step` (one optimizer step on one batch), :meth:`Trainer.evaluate`
(held-out loss), :meth:`Trainer.save` / :meth:`Trainer.resume` (exact checkpoints).

A step, as in the official recipe (docs/training.md, "What a step does"):
1. ``per_frame_loss, monitors = model(waveforms, mask_indices=..., attention_mask=...)`` under
   autocast; the forward updates the codebooks (one all-reduce inside the model);
2. loss = ``per_frame_loss.sum() / masked frames over all ranks``; DDP averages gradients over
   ranks, so each rank back-propagates ``world_size`` times that, and the gradient is exactly the
   gradient of the global batch;
3. a non-finite loss (on any rank) skips the step: codebook buffers are restored, nothing is
   updated, the step is counted, and ``run.max_nonfinite_steps`` of them in a row stop the run;
4. gradient clipping, AdamW, LR schedule, then ``model.update_ema(step)`` (the teacher).
"""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spidrkit.errors import SpidrkitError
from spidrkit.models import build_model
from spidrkit.train import adapt
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed as dist_utils
from spidrkit.train.config import TrainConfig
from spidrkit.train.distributed import DistInfo
from spidrkit.train.engine import Engine
from spidrkit.train.optim import build_optimizer, build_scheduler, sync_trainable

log = logging.getLogger(__name__)

KILL_ENV = "SPIDRKIT_TEST_KILL"
"""Test hook: ``save:N`` SIGKILLs this process while writing the checkpoint of step N (file written,
not yet renamed); ``step:N`` SIGKILLs it right after optimizer step N."""


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


def _kill_point() -> tuple[str, int] | None:
    raw = os.environ.get(KILL_ENV)
    if not raw:
        return None
    kind, _, step = raw.partition(":")
    return kind, int(step)


class Trainer:
    """Pretrain a SpidR or DinoSR model as configured by a :class:`TrainConfig`.

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
        if init_src is not None and cfg.run.init_codebooks == "kmeans":
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
        return StepResult(
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
        return StepResult(nan, nan, nan, nan, lr, masked, samples, skipped=True)

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The training checkpoint: official keys plus RNG (every rank), sampler and counters.
        Collective (:meth:`Engine.state_dict`): every rank calls it."""
        meta: dict[str, Any] = {}
        model_cfg = getattr(self.model, "config", None)
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

    def save(self) -> None:
        """Write ``checkpoints/checkpoint_<step>.pt`` and ``config.json`` (rank 0; all ranks call)."""
        state = self.state_dict()  # collective (RNG gather): every rank takes part
        hook = None
        if _kill_point() == ("save", self.step):

            def hook() -> None:
                os.kill(os.getpid(), signal.SIGKILL)

        self.engine.save(
            self.cfg.checkpoint_dir,
            state,
            keep_last=self.cfg.run.keep_last,
            config=self.cfg.to_dict(),
            before_replace=hook,
        )

    def load_state_dict(self, state: dict[str, Any], source: Any = "checkpoint") -> dict[str, Any]:
        """Restore everything but the RNG; returns this rank's RNG state (see :meth:`resume`)."""
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
        return rng

    def resume(self) -> dict[str, Any] | None:
        """Load the newest complete checkpoint of the run, if any; returns this rank's RNG state,
        to be restored (:func:`restore_rng_state`) once the data iterator exists."""
        found = self.engine.latest(self.cfg.checkpoint_dir)
        if found is None:
            return None
        path, state = found
        rng = self.load_state_dict(state, path)
        log.info(
            "resumed from %s (step %d, epoch %d, batch %d)",
            path,
            self.step,
            self.epoch,
            self.batches_in_epoch,
        )
        return rng
