"""The training engine that pretraining (:mod:`spidrkit.train.trainer`) and the unit LM
(:mod:`spidrkit.lm.train`) share: what runs a model's optimizer steps, whatever the model.

An :class:`Engine` holds the model, its optimizer, LR scheduler and gradient scaler, and where the
process sits (:class:`~spidrkit.train.distributed.DistInfo`). It owns:

- precision: ``run.precision`` in the one vocabulary of :mod:`spidrkit.utils.precision` (``auto``
  resolved once for the device), autocast, and a GradScaler that is enabled only for fp16;
- the DDP / ``torch.compile`` wrap (:meth:`Engine.wrap`) and ``no_sync`` for gradient accumulation;
- backward, unscale + clip, and the optimizer/scheduler step;
- checkpoints: :meth:`Engine.state_dict` (collective: every rank's RNG state is gathered, and the
  world size recorded), :meth:`Engine.save` (rank 0 writes through
  :func:`~spidrkit.train.checkpoint.save_checkpoint`: atomic, SHA-256 beside it, pruning; then a
  barrier), :meth:`Engine.latest` (newest intact checkpoint, corrupt ones set aside) and
  :meth:`Engine.load_state_dict` (refuses another world size; returns THIS rank's RNG state, to be
  restored with :func:`~spidrkit.train.checkpoint.restore_rng_state` once the data iterator exists).

The run folder itself (lock, ``--overwrite``, ``metrics.jsonl`` truncation) is
:mod:`spidrkit.train.rundir`, entered by both loops around the engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spidrkit.errors import CheckpointError
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed as dist_utils
from spidrkit.train.distributed import DistInfo
from spidrkit.train.optim import clip_gradients
from spidrkit.utils.precision import autocast, resolve_precision

log = logging.getLogger(__name__)


def make_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (``precision`` already resolved)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def gather_rng_states(dist: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG state, rank order (collective: every rank must call it)."""
    rng = ckpt.capture_rng_state()
    if not dist_utils.is_initialized():
        return [rng]
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, rng)
    return states


def rank_rng_state(saved: Any, dist: DistInfo, source: Any = "checkpoint") -> dict[str, Any]:
    """This rank's entry of a checkpoint's ``rng`` (a list, one per rank; older unit-LM
    checkpoints hold rank 0's state alone: every rank then gets it, as they did, with a warning)."""
    if isinstance(saved, list):
        if len(saved) != dist.world_size:
            raise CheckpointError(
                f"{source}: holds {len(saved)} RNG states for {dist.world_size} processes; "
                "exact resume needs the same world size"
            )
        return saved[dist.rank]
    if dist.world_size > 1:
        log.warning(
            "%s: one RNG state for %d processes (older checkpoint)", source, dist.world_size
        )
    return saved


def check_world_size(state: dict[str, Any], dist: DistInfo, source: Any = "checkpoint") -> None:
    """Refuse to resume a checkpoint written by another number of processes."""
    saved = state.get("trainer", {}).get("world_size")
    if saved is None and isinstance(state.get("rng"), list):
        saved = len(state["rng"])
    if saved is not None and saved != dist.world_size:
        raise CheckpointError(
            f"{source}: saved with {saved} processes, resumed with {dist.world_size}; "
            "exact resume needs the same world size"
        )


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: Any) -> None:
    """``model.load_state_dict(weights)``, a mismatch being one CheckpointError naming ``source``."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the configured model: {exc}") from None


class Engine:
    """Model, optimizer, scheduler and grad scaler, on this process's device.

    Args:
        precision: ``run.precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``).
        compile: wrap the model in ``torch.compile`` in :meth:`wrap`.
        broadcast_buffers, find_unused_parameters: passed to DDP.
        where: the config key named in precision errors.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        dist: DistInfo,
        precision: str,
        *,
        compile: bool = False,
        broadcast_buffers: bool = True,
        find_unused_parameters: bool = False,
        where: str = "run.precision",
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.dist = dist
        self.precision = resolve_precision(precision, dist.device, where)
        """The concrete precision (``auto`` resolved)."""
        self.scaler = make_grad_scaler(self.precision, dist.device)
        self.compile = compile
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self._ddp: nn.parallel.DistributedDataParallel | None = None

    @property
    def device(self) -> torch.device:
        return self.dist.device

    # -- running ----------------------------------------------------------------------------------

    def autocast(self) -> Any:
        """The autocast context of :attr:`precision` on this device."""
        return autocast(self.precision, self.device)

    def wrap(self) -> nn.Module:
        """The module to call in training: DDP when distributed, then ``torch.compile`` if asked.
        Call it again when the trainable set changes (DDP registers parameters once)."""
        wrapped: nn.Module = self.model
        self._ddp = None
        if self.dist.is_distributed:
            wrapped = self._ddp = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                broadcast_buffers=self.broadcast_buffers,
                find_unused_parameters=self.find_unused_parameters,
            )
        if self.compile:
            wrapped = torch.compile(wrapped)  # type: ignore[assignment]
        return wrapped

    def no_sync(self, sync: bool) -> Any:
        """For gradient accumulation: skip DDP's all-reduce unless ``sync`` (the last micro-batch)."""
        if self._ddp is None or sync:
            return contextlib.nullcontext()
        return self._ddp.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled for fp16."""
        self.scaler.scale(loss).backward()

    def clip(self, params: list[nn.Parameter], max_norm: float) -> float:
        """Unscale (fp16) and clip the global gradient norm (0: no clipping); the norm before."""
        self.scaler.unscale_(self.optimizer)
        return float(clip_gradients(params, max_norm))

    def step(self) -> None:
        """Optimizer step (skipped by the scaler on inf/NaN in fp16), zero grads, scheduler step."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(
        self,
        *,
        step: int,
        epoch: int,
        sampler: dict[str, Any],
        trainer: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The checkpoint (layout in :mod:`spidrkit.train.checkpoint`): ``extra`` keys first, then
        the official ones, every rank's RNG, the sampler position and ``trainer`` counters (with
        ``world_size``). Collective: every rank calls it."""
        return {
            **(extra or {}),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": epoch,
            "step": step,
            "rng": gather_rng_states(self.dist),
            "sampler": sampler,
            "trainer": {"world_size": self.dist.world_size, **(trainer or {})},
        }

    def save(
        self,
        directory: str | Path,
        state: dict[str, Any],
        *,
        keep_last: int | None,
        config: dict[str, Any] | None = None,
        before_replace: Callable[[], None] | None = None,
    ) -> Path | None:
        """Rank 0 writes ``state`` as ``<directory>/checkpoint_<step>.pt`` (with its SHA-256 and
        ``config.json``; older ones pruned to ``keep_last``); every rank waits for it. Returns the
        path on rank 0, None elsewhere."""
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                directory,
                int(state["step"]),
                state,
                keep_last=keep_last,
                config=config,
                before_replace=before_replace,
            )
            log.info("saved %s", path)
        dist_utils.barrier()
        return path

    @staticmethod
    def latest(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
        """The newest intact checkpoint in ``directory`` and its content (on the CPU), or None."""
        path = ckpt.latest_valid_checkpoint(directory)
        if path is None:
            return None
        return path, ckpt.load_checkpoint(path, map_location="cpu")

    def load_state_dict(self, state: dict[str, Any], source: Any = "checkpoint") -> dict[str, Any]:
        """Restore model, optimizer, scheduler and scaler from a checkpoint of the same world size;
        returns this rank's RNG state (restored by the caller when its data iterator exists)."""
        check_world_size(state, self.dist, source)
        load_weights(self.model, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        return rank_rng_state(state["rng"], self.dist, source)
