"""Training the unit LM (``spidrkit lm-train``): the :class:`LMTask` that pretraining's loop
(:func:`spidrkit.train.fit.fit`) drives, and saving/loading the trained model.

Everything around the step is pretraining's: the run folder, resume, logging, the cadence and
checkpoints with every rank's RNG state (:mod:`spidrkit.train.fit`); precision, the DDP/compile
wrap, AdamW and its schedule (:class:`spidrkit.train.engine.Engine`); the ``[run]``,
``[optimizer]`` and ``[validation]`` keys. Loss: summed cross-entropy of every target token of a
step (all micro-batches, all ranks) divided by their global count, so the gradient does not depend
on how tokens are split over ranks and micro-batches.

Files in ``run.output_dir``: ``checkpoint_<step>.pt`` (full state, the newest ``keep_last``),
``best.pt`` (weights + model config of the lowest validation loss), ``config.json``,
``metrics.jsonl``, ``tb/``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spidrkit.config import from_dict, to_dict
from spidrkit.errors import CheckpointError, ConfigError, DataError
from spidrkit.lm.config import LMTrainConfig, UnitLMConfig
from spidrkit.lm.data import (
    LMBatches,
    UnitRecord,
    iterate_batches,
    max_unit,
    read_units_jsonl,
    split_train_valid,
)
from spidrkit.lm.model import UnitLM
from spidrkit.lm.vocab import PAD
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed as D
from spidrkit.train.engine import Engine
from spidrkit.train.fit import fit
from spidrkit.train.optim import build_optimizer, build_scheduler
from spidrkit.train.trainer import NonFiniteLossError
from spidrkit.units.kmeans import KMeans
from spidrkit.utils.files import atomic_write
from spidrkit.utils.precision import autocast

log = logging.getLogger(__name__)
BEST_NAME = "best.pt"


@dataclass(frozen=True)
class LMTrainResult:
    """What a finished run reached: ``valid_loss`` in nats per token (None without validation)."""

    step: int
    train_loss: float
    valid_loss: float | None
    valid_ppl: float | None
    best_valid_loss: float | None
    output_dir: Path


# ------------------------------------------------------------------------------ saving and loading


def save_lm(path: str | Path, model: UnitLM, extra: dict | None = None) -> Path:
    """Write ``{"model": state_dict, "lm_config": {...}}`` atomically (what :func:`load_lm`
    reads)."""
    state = {
        "model": model.state_dict(),
        "lm_config": dataclasses.asdict(model.cfg),
        **(extra or {}),
    }
    with atomic_write(path, "wb", digest=True) as f:
        torch.save(state, f)
    return Path(path)


def resolve_lm_path(path: str | Path) -> Path:
    """A checkpoint file as is; a run folder -> its ``best.pt``, else its newest checkpoint."""
    path = Path(path)
    if path.is_dir():
        if (path / BEST_NAME).is_file():
            return path / BEST_NAME
        latest = ckpt.find_latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path}: no best.pt and no checkpoint_*.pt in this run folder")
        return latest
    return path


def load_lm(path: str | Path, device: str | torch.device = "cpu") -> UnitLM:
    """Load a unit LM from a ``best.pt``, a training checkpoint or a run folder, in eval mode."""
    path = resolve_lm_path(path)
    state = ckpt.load_checkpoint(path)
    if "lm_config" not in state:
        raise CheckpointError(
            f"{path}: not a unit-LM checkpoint (no 'lm_config'; made by lm-train?)"
        )
    lm_config = state["lm_config"]
    if not isinstance(lm_config, dict):
        raise CheckpointError(f"{path}: 'lm_config' is not a table")
    try:
        names = {f.name for f in dataclasses.fields(UnitLMConfig)}
        cfg_lm = from_dict(UnitLMConfig, {k: v for k, v in lm_config.items() if k in names})
    except ConfigError as exc:
        problems = "; ".join(x.strip() for x in str(exc).splitlines()[1:])
        raise CheckpointError(f"{path}: bad 'lm_config': {problems}") from None
    model = UnitLM(cfg_lm)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0][:300]
        raise CheckpointError(
            f"{path}: weights do not match the saved LM config: {first}"
        ) from None
    bad = [
        n
        for n, p in model.state_dict().items()
        if p.is_floating_point() and not bool(torch.isfinite(p).all())
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN/inf (e.g. {bad[0]}); the run diverged: "
            "use an earlier checkpoint"
        )
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------- pieces


def num_units_for(cfg: LMTrainConfig, top: int) -> int:
    """The LM's number of units when the largest unit in the data is ``top``: ``[model] num_units``
    when given (refused if ``top`` does not fit), else the k of ``data.kmeans``, else ``top + 1``."""
    where = cfg.data.train
    given = cfg.model.get("num_units")
    if given is not None:
        if top >= given:
            raise DataError(
                f"{where}: unit {top} found but model.num_units = {given} is too small; leave "
                f"model.num_units out to take it from the data, or set it to at least {top + 1}"
            )
        return int(given)
    if cfg.data.kmeans is not None:
        k = KMeans.load(cfg.data.kmeans).k
        if top >= k:
            raise DataError(
                f"{where}: unit {top} found but the k-means {cfg.data.kmeans} has k = {k}: "
                "these units come from another k-means"
            )
        return k
    return max(top + 1, 1)


def build_datasets(cfg: LMTrainConfig) -> tuple[UnitLMConfig, LMBatches, LMBatches]:
    """The model config, with its number of units from :func:`num_units_for`, and the planned train
    and validation batches (validation: ``data.valid`` or a held-out share)."""
    d = cfg.data
    train = read_units_jsonl(d.train, dedup=d.deduplicate)
    if d.valid is not None:
        valid = read_units_jsonl(d.valid, dedup=d.deduplicate)
    else:
        train, valid = split_train_valid(train, d.valid_fraction, seed=cfg.run.seed)
    top = max(max_unit(train), max_unit(valid))
    model_cfg = dataclasses.replace(cfg.model_config(), num_units=num_units_for(cfg, top))

    def batches(units: Sequence[UnitRecord], where: str) -> LMBatches:
        return LMBatches(
            units,
            model_cfg.num_units,
            mode=d.batching,
            block_size=d.block_size,
            max_tokens=d.max_tokens,
            where=where,
        )

    return model_cfg, batches(train, str(d.train)), batches(valid, str(d.valid or d.train))


@torch.no_grad()
def evaluate(
    model: UnitLM, batches: LMBatches, dist: D.DistInfo, precision: str = "fp32"
) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) and token count over every batch, summed over ranks."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    count = torch.zeros((), dtype=torch.float64, device=dist.device)
    for i in range(dist.rank, len(batches), dist.world_size):
        inputs, targets = (t.to(dist.device) for t in batches.batch(i))
        with autocast(precision, dist.device):
            loss, n = model.loss(inputs, targets)
        loss_sum += loss.double()
        count += n
    D.all_reduce_sum(loss_sum)
    D.all_reduce_sum(count)
    model.train(was_training)
    total = int(count.item())
    return (loss_sum.item() / total if total else float("nan")), total


def _stream(
    batches: LMBatches, seed: int, dist: D.DistInfo, epoch: int, index: int, num_workers: int
) -> Iterator[tuple[int, int, tuple[torch.Tensor, torch.Tensor]]]:
    """Endless ``(epoch, next_index, batch)`` from position (epoch, index) on."""
    while True:
        order = batches.epoch_order(epoch, seed, dist.rank, dist.world_size)
        for k, batch in enumerate(iterate_batches(batches, order, index, num_workers), index + 1):
            yield epoch, k, batch
        epoch, index = epoch + 1, 0


# ------------------------------------------------------------------------------------------- task


def build_engine(cfg: LMTrainConfig, model: UnitLM, dist: D.DistInfo) -> Engine:
    """``model`` moved to this process's device, with AdamW and its schedule, in an :class:`Engine`."""
    model = model.to(dist.device)
    optimizer = build_optimizer(model, cfg.optimizer, dist.device)
    return Engine(
        model,
        optimizer,
        build_scheduler(optimizer, cfg.optimizer, cfg.run.max_steps),
        dist,
        cfg.run.precision,
        compile=cfg.run.compile and dist.device.type == "cuda",
    )


class LMTask:
    """The unit LM as a task of :func:`spidrkit.train.fit.fit`: the data, the model and its
    :class:`~spidrkit.train.engine.Engine`, the step, validation (writing ``best.pt``) and what a
    checkpoint holds (the position in the data and the best validation loss)."""

    name = "lm-train"
    progress_keys = ("loss", "ppl", "lr")

    def __init__(self, cfg: LMTrainConfig, dist: D.DistInfo) -> None:
        run = cfg.run
        model_cfg = cfg.model_config()
        if cfg.data.block_size > model_cfg.max_positions:
            raise ConfigError(
                f"data.block_size = {cfg.data.block_size} exceeds model.max_positions = "
                f"{model_cfg.max_positions}"
            )
        self.cfg, self.dist = cfg, dist
        self.checkpoint_dir = Path(run.output_dir)
        torch.manual_seed(run.seed)
        self.model_cfg, self.train_batches, self.valid_batches = build_datasets(cfg)
        # config.json and the checkpoints record the number of units the data gave
        model = {**cfg.model, "num_units": self.model_cfg.num_units}
        self._config = to_dict(dataclasses.replace(cfg, model=model))
        self.model = UnitLM(self.model_cfg)
        self.engine = build_engine(cfg, self.model, dist)
        self._wrapped: torch.nn.Module | None = None
        self.step, self.epoch, self.index, self.best = 0, 0, 0, math.inf
        """Optimizer steps, the position in the data (``index`` batches of ``epoch`` consumed)
        and the lowest validation loss so far."""
        self.grad_norm = math.nan
        self._reset_window()
        if dist.is_main:
            log.info(
                "unit LM: %d units, %.2fM parameters, %d train batches (%d tokens), "
                "%d valid batches",
                self.model_cfg.num_units,
                self.model.num_parameters() / 1e6,
                len(self.train_batches),
                self.train_batches.num_tokens,
                len(self.valid_batches),
            )

    def config(self) -> dict:
        return self._config

    def _reset_window(self) -> None:
        self.window_loss, self.window_tokens = 0.0, 0
        self.window_start = time.perf_counter()

    def batches(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Endless steps of ``run.grad_accum`` micro-batches each, from (epoch, index) on."""
        d = self.cfg.data
        stream = _stream(
            self.train_batches, self.cfg.run.seed, self.dist, self.epoch, self.index, d.num_workers
        )
        self._reset_window()

        def steps() -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
            while True:
                micro = [next(stream) for _ in range(self.cfg.run.grad_accum)]
                self.epoch, self.index = micro[-1][0], micro[-1][1]
                yield [batch for _, _, batch in micro]

        return steps()

    def train_step(self, micro: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One optimizer step on the micro-batches of a step: summed cross-entropy of every target
        token (all micro-batches, all ranks) divided by their global count."""
        engine, dist = self.engine, self.dist
        if self._wrapped is None:
            self._wrapped = engine.wrap()
        self.model.train()
        local = sum(int((targets != PAD).sum()) for _, targets in micro)
        total = D.all_reduce_sum(torch.tensor(float(local), device=dist.device)).item()
        scale = dist.world_size / max(total, 1.0)  # DDP averages gradients over ranks
        step_loss = 0.0
        for k, (inputs, targets) in enumerate(micro):
            inputs, targets = inputs.to(dist.device), targets.to(dist.device)
            with engine.no_sync(sync=k == len(micro) - 1), engine.autocast():
                logits = self._wrapped(inputs)
                loss = torch.nn.functional.cross_entropy(
                    logits.float().flatten(0, 1),
                    targets.flatten(),
                    ignore_index=PAD,
                    reduction="sum",
                )
            engine.backward(loss * scale)
            step_loss += loss.item()
        if not math.isfinite(step_loss):  # before the update: no NaN reaches the weights
            run = self.cfg.run
            raise NonFiniteLossError(
                f"step {self.step + 1}: the unit LM's training loss is {step_loss} (non-finite); "
                f"nothing of this step was saved (last checkpoint: step "
                f"{self.step - self.step % run.save_interval}); lower optimizer.lr or use "
                "run.precision = 'fp32'"
            )
        self.grad_norm = engine.clip(list(self.model.parameters()), self.cfg.optimizer.clip_norm)
        engine.step()
        self.step += 1
        self.window_loss += step_loss
        self.window_tokens += local

    def metrics(self) -> dict[str, float]:
        """Loss (nats per token) and perplexity over the steps since the last call, all ranks."""
        sums = D.reduce_scalars(
            {"loss": self.window_loss, "tokens": self.window_tokens}, self.dist.device
        )
        train_loss = sums["loss"] / max(sums["tokens"], 1.0)
        elapsed = time.perf_counter() - self.window_start
        self._reset_window()
        return {
            "loss": train_loss,
            "ppl": math.exp(min(train_loss, 50.0)),
            "lr": float(self.engine.scheduler.get_last_lr()[0]),
            "grad_norm": self.grad_norm,
            "tokens_per_s": sums["tokens"] / max(elapsed, 1e-9),
        }

    def validate(self) -> dict[str, float]:
        """Validation loss and perplexity; a new lowest loss writes ``best.pt``."""
        loss, n = evaluate(self.model, self.valid_batches, self.dist, self.engine.precision)
        if n and not math.isfinite(loss):
            raise NonFiniteLossError(
                f"step {self.step}: the unit LM's validation loss is {loss} "
                "(non-finite); lower optimizer.lr or use run.precision = 'fp32'"
            )
        if loss < self.best:
            self.best = loss
            if self.dist.is_main:
                extra = {"step": self.step, "valid_loss": loss}
                save_lm(self.checkpoint_dir / BEST_NAME, self.model, extra)
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}

    def state_dict(self) -> dict:
        return self.engine.state_dict(  # collective: every rank's RNG state
            step=self.step,
            epoch=self.epoch,
            sampler={"epoch": self.epoch, "index": self.index},
            trainer={"best_valid_loss": self.best},
            extra={"lm_config": dataclasses.asdict(self.model_cfg)},
        )

    def load_state_dict(self, state: dict, source: Any = "checkpoint") -> dict:
        rng = self.engine.load_state_dict(state, source)
        self.step = int(state["step"])
        self.epoch, self.index = int(state["sampler"]["epoch"]), int(state["sampler"]["index"])
        self.best = float(state["trainer"].get("best_valid_loss", math.inf))
        return rng


def train_lm(
    cfg: LMTrainConfig,
    *,
    overwrite: bool = False,
    resume: bool | None = None,
    show_progress: bool | None = None,
) -> LMTrainResult:
    """Train (or resume) the unit LM described by ``cfg`` (``spidrkit lm-train``):
    :func:`~spidrkit.train.fit.fit` on an :class:`LMTask`; returns the final metrics.

    ``resume`` and ``show_progress``, when given, replace ``run.resume`` and ``run.progress``.
    """
    run = cfg.run
    run = dataclasses.replace(
        run,
        resume=run.resume if resume is None else resume,
        progress=run.progress if show_progress is None else show_progress,
    )
    cfg = dataclasses.replace(cfg, run=run)
    task = LMTask(cfg, D.init_distributed(run.device))
    result = fit(task, overwrite=overwrite)
    train_loss = result.last_metrics.get("loss", math.nan)
    valid_loss = result.valid_metrics.get("loss", math.nan)
    return LMTrainResult(
        step=result.step,
        train_loss=train_loss,
        valid_loss=None if math.isnan(valid_loss) else valid_loss,
        valid_ppl=None if math.isnan(valid_loss) else math.exp(min(valid_loss, 50.0)),
        best_valid_loss=None if math.isinf(task.best) else task.best,
        output_dir=Path(run.output_dir),
    )
