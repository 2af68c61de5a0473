"""Training loop of the unit LM (``spidrkit lm-train``), on the pretraining engine.

The model's optimizer steps run on :class:`spidrkit.train.engine.Engine`, as pretraining's do:
precision and autocast, the DDP/compile wrap, AdamW and its schedule (:mod:`spidrkit.train.optim`,
the ``[optimizer]`` section has pretraining's fields), checkpoints with every rank's RNG state, the
world-size check on resume, and the run folder (:mod:`spidrkit.train.rundir`: lock, ``--overwrite``,
SHA-256 beside checkpoints, ``metrics.jsonl`` truncated on resume). Loss: summed cross-entropy of every target
token of a step (all micro-batches, all ranks) divided by their global count, so the gradient does
not depend on how tokens are split over ranks and micro-batches.

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
from spidrkit.train.monitor import MetricsLogger, format_postfix
from spidrkit.train.optim import build_optimizer, build_scheduler
from spidrkit.train.rundir import METRICS_NAME, run_folder, truncate_metrics
from spidrkit.train.trainer import NonFiniteLossError
from spidrkit.units.kmeans import KMeans
from spidrkit.utils.files import atomic_write
from spidrkit.utils.precision import autocast
from spidrkit.utils.progress import progress

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


# ------------------------------------------------------------------------------------------- loop


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


def train_lm(
    cfg: LMTrainConfig, *, resume: bool = True, show_progress: bool = True, overwrite: bool = False
) -> LMTrainResult:
    """Train (or resume) the unit LM described by ``cfg``; returns the final metrics.

    Rank 0 holds the run folder's lock; with ``resume=False`` an earlier run in the folder is
    refused, or moved aside when ``overwrite`` (:mod:`spidrkit.train.rundir`).
    """
    dist = D.init_distributed(cfg.run.device)
    with run_folder(cfg.run.output_dir, resume=resume, overwrite=overwrite, enabled=dist.is_main):
        return _train_lm(cfg, dist, resume=resume, show_progress=show_progress)


def _train_lm(
    cfg: LMTrainConfig, dist: D.DistInfo, *, resume: bool, show_progress: bool
) -> LMTrainResult:
    run = cfg.run
    model_cfg = cfg.model_config()
    if cfg.data.block_size > model_cfg.max_positions:
        raise ConfigError(
            f"data.block_size = {cfg.data.block_size} exceeds model.max_positions = "
            f"{model_cfg.max_positions}"
        )
    out = Path(run.output_dir)
    torch.manual_seed(run.seed)
    model_cfg, train_batches, valid_batches = build_datasets(cfg)
    # config.json and the checkpoints record the number of units the data gave
    resolved = to_dict(
        dataclasses.replace(cfg, model={**cfg.model, "num_units": model_cfg.num_units})
    )
    model = UnitLM(model_cfg)
    engine = build_engine(cfg, model, dist)
    step, epoch, index, best = 0, 0, 0, math.inf
    found = Engine.latest(out) if resume else None
    if found is not None:
        latest, state = found
        rng = engine.load_state_dict(state, latest)
        step = int(state["step"])
        epoch, index = int(state["sampler"]["epoch"]), int(state["sampler"]["index"])
        best = float(state["trainer"].get("best_valid_loss", math.inf))
        ckpt.restore_rng_state(rng)
        log.info("resumed from %s at step %d", latest, step)
    wrapped = engine.wrap()
    if dist.is_main:
        log.info(
            "unit LM: %d units, %.2fM parameters, %d train batches (%d tokens), %d valid batches",
            model_cfg.num_units,
            model.num_parameters() / 1e6,
            len(train_batches),
            train_batches.num_tokens,
            len(valid_batches),
        )
    if dist.is_main:
        truncate_metrics(out / METRICS_NAME, step)
    logger = MetricsLogger(out, enabled=dist.is_main, tensorboard=run.tensorboard, config=resolved)
    stream = _stream(train_batches, run.seed, dist, epoch, index, cfg.data.num_workers)
    bar = progress(
        total=run.max_steps, initial=step, enabled=show_progress and dist.is_main, desc="lm-train"
    )
    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
    train_loss = valid_loss = float("nan")
    model.train()
    try:
        while step < run.max_steps:
            micro = [next(stream) for _ in range(run.grad_accum)]
            epoch, index = micro[-1][0], micro[-1][1]
            local = sum(int((b[1] != PAD).sum()) for _, _, b in micro)
            total = D.all_reduce_sum(torch.tensor(float(local), device=dist.device)).item()
            scale = dist.world_size / max(total, 1.0)  # DDP averages gradients over ranks
            step_loss = 0.0
            for k, (_, _, (inputs, targets)) in enumerate(micro):
                inputs, targets = inputs.to(dist.device), targets.to(dist.device)
                with engine.no_sync(sync=k == len(micro) - 1), engine.autocast():
                    logits = wrapped(inputs)
                    loss = torch.nn.functional.cross_entropy(
                        logits.float().flatten(0, 1),
                        targets.flatten(),
                        ignore_index=PAD,
                        reduction="sum",
                    )
                engine.backward(loss * scale)
                step_loss += loss.item()
            if not math.isfinite(step_loss):  # before the update: no NaN reaches the weights
                raise NonFiniteLossError(
                    f"step {step + 1}: the unit LM's training loss is {step_loss} (non-finite); "
                    f"nothing of this step was saved (last checkpoint: step "
                    f"{step - step % run.save_interval}); lower optimizer.lr or use "
                    "run.precision = 'fp32'"
                )
            grad_norm = engine.clip(list(model.parameters()), cfg.optimizer.clip_norm)
            engine.step()
            step += 1
            bar.update(1)
            window_loss += step_loss
            window_tokens += local
            if step % run.log_interval == 0 or step == run.max_steps:
                sums = D.reduce_scalars({"loss": window_loss, "tokens": window_tokens}, dist.device)
                train_loss = sums["loss"] / max(sums["tokens"], 1.0)
                elapsed = time.perf_counter() - window_start
                metrics: dict[str, float] = {
                    "loss": train_loss,
                    "ppl": math.exp(min(train_loss, 50.0)),
                    "lr": float(engine.scheduler.get_last_lr()[0]),
                    "grad_norm": grad_norm,
                    "tokens_per_s": sums["tokens"] / max(elapsed, 1e-9),
                }
                logger.log(step, metrics, "train")
                bar.set_postfix(format_postfix({k: metrics[k] for k in ("loss", "ppl", "lr")}))
                window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
            interval = cfg.validation.interval
            if (interval and step % interval == 0) or step == run.max_steps:
                valid_loss, n_valid = evaluate(model, valid_batches, dist, engine.precision)
                if n_valid and not math.isfinite(valid_loss):
                    raise NonFiniteLossError(
                        f"step {step}: the unit LM's validation loss is {valid_loss} "
                        "(non-finite); lower optimizer.lr or use run.precision = 'fp32'"
                    )
                logger.log(
                    step, {"loss": valid_loss, "ppl": math.exp(min(valid_loss, 50.0))}, "valid"
                )
                if valid_loss < best:
                    best = valid_loss
                    if dist.is_main:
                        save_lm(out / BEST_NAME, model, {"step": step, "valid_loss": valid_loss})
            if step % run.save_interval == 0 or step == run.max_steps:
                state = engine.state_dict(  # collective: every rank's RNG state
                    step=step,
                    epoch=epoch,
                    sampler={"epoch": epoch, "index": index},
                    trainer={"best_valid_loss": best},
                    extra={"lm_config": dataclasses.asdict(model_cfg)},
                )
                engine.save(out, state, keep_last=run.keep_last, config=resolved)
    finally:
        bar.close()
        logger.close()
    return LMTrainResult(
        step=step,
        train_loss=train_loss,
        valid_loss=None if math.isnan(valid_loss) else valid_loss,
        valid_ppl=None if math.isnan(valid_loss) else math.exp(min(valid_loss, 50.0)),
        best_valid_loss=None if math.isinf(best) else best,
        output_dir=out,
    )
