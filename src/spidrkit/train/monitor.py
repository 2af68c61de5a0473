"""Metrics: JSONL log, TensorBoard events, optional W&B, progress-bar postfixes, collapse checks.

:class:`MetricsLogger` fans one ``log(step, metrics, split)`` call out to every sink. Only rank 0
should create a real logger; other ranks pass ``enabled=False``. TensorBoard is used when the
``tensorboard`` package is installed (the ``train`` extra) unless turned off; W&B only when a
project name is given (the ``wandb`` extra).

:class:`CodebookMonitor` counts active codewords without touching model internals: it watches every
buffer whose name ends in ``codebooks.<i>.counts`` (a codeword's count changes exactly when frames
were assigned to it) and warns when too few codewords are in use or the target perplexity collapses.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spidrkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class MetricsLogger:
    """Write scalar metrics to ``<out_dir>/metrics.jsonl``, TensorBoard (``<out_dir>/tb``) and W&B.

    Each JSONL line is ``{"step": int, "split": str, "time": unix_seconds, <name>: float, ...}``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.out_dir / "metrics.jsonl", "a", buffering=1)  # noqa: SIM115
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))
            except ImportError:
                log.warning(
                    "tensorboard is not installed: no event files "
                    "(pip install 'spidrkit[train]'); metrics.jsonl is still written"
                )
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    "run.wandb_project is set but wandb is not installed: "
                    "pip install 'spidrkit[wandb]'"
                ) from None
            self._wandb = wandb.init(
                project=wandb_project,
                name=wandb_name,
                config=config,
                dir=str(self.out_dir),
                resume="allow",
            )

    def log(self, step: int, metrics: dict[str, float], split: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        if self._jsonl is not None:
            record = {"step": int(step), "split": split, "time": round(time.time(), 3), **clean}
            self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(f"{split}/{k}", v, global_step=step)
        if self._wandb is not None:
            self._wandb.log({f"{split}/{k}": v for k, v in clean.items()}, step=step)

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def read_metrics(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` back (optionally one split only), in file order.

    A (split, step) logged twice (a run resumed by an older spidrkit, which did not truncate the
    log) keeps its last line, at the place of that line. A line that is not JSON is a
    :class:`~spidrkit.errors.DataError` naming the file and line.
    """
    rows: dict[tuple[Any, Any], dict[str, Any]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"{path}:{n}: not a JSON line") from None
        if not isinstance(row, dict) or (split is not None and row.get("split") != split):
            continue
        key = (row.get("split"), row.get("step", n))
        rows.pop(key, None)
        rows[key] = row
    return list(rows.values())


def last_train_metrics(path: str | Path, keys: tuple[str, ...]) -> dict[str, float]:
    """``keys`` of the last training line of a ``metrics.jsonl`` ({} when it has none)."""
    rows = read_metrics(path, "train")
    return {k: float(rows[-1][k]) for k in keys if k in rows[-1]} if rows else {}


def format_postfix(metrics: dict[str, float]) -> dict[str, str]:
    """Short progress-bar strings: 4 significant digits, perplexities 1 decimal, lr as 2.0e-04."""
    out = {}
    for k, v in metrics.items():
        if k == "lr":
            out[k] = f"{v:.2e}"
        elif "ppl" in k or k.endswith("per_s") or k.startswith("active"):
            out[k] = f"{v:.1f}"
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)
        else:
            out[k] = f"{v:.4g}"
    return out


class CodebookMonitor:
    """Active-codeword counts and collapse warnings.

    Args:
        model: the (unwrapped) model; buffers named ``...codebooks.<i>.counts`` are watched.
        min_active_fraction: warn when a codebook used fewer than this fraction of its codewords
            since the previous :meth:`update`.
        min_target_ppl: warn when the target perplexity falls below this value.
    """

    def __init__(
        self, model: nn.Module, min_active_fraction: float = 0.1, min_target_ppl: float = 2.0
    ):
        self.model = model
        self.min_active_fraction = min_active_fraction
        self.min_target_ppl = min_target_ppl
        self._last = {name: buf.detach().clone() for name, buf in self._counts().items()}
        self.warnings: list[str] = []

    def _counts(self) -> dict[str, torch.Tensor]:
        return {
            name: buf
            for name, buf in self.model.named_buffers()
            if name.endswith(".counts") and "codebooks" in name
        }

    def update(self, step: int, target_ppl: float | None = None) -> dict[str, float]:
        """Codewords used since the last call: ``{"active_codewords": mean over codebooks,
        "active_codewords_min": smallest, "active_codewords_<i>": codebook i's}``; logs a warning
        when collapsing (returns {} if none). A codebook that was not updated at all since the
        last call (an idle teacher, frozen codebooks) is left out rather than counted as
        collapsed."""
        out: dict[str, float] = {}
        actives = []
        size = 0
        for name, buf in self._counts().items():
            now = buf.detach()
            last = self._last.get(name)
            changed = (
                now != last.to(now.device)
                if last is not None
                else torch.ones_like(now, dtype=torch.bool)
            )
            self._last[name] = now.clone()
            if not bool(changed.any()):
                continue
            actives.append(int(changed.sum()))
            size = now.numel()
        if actives:
            out["active_codewords"] = sum(actives) / len(actives)
            out["active_codewords_min"] = float(min(actives))
            out.update({f"active_codewords_{i}": float(a) for i, a in enumerate(actives)})
            if min(actives) < self.min_active_fraction * size:
                self._warn(
                    f"step {step}: codebook collapse? only {min(actives)} of {size} codewords were "
                    f"used since the last log (threshold {self.min_active_fraction:.0%})"
                )
        if (
            target_ppl is not None
            and math.isfinite(target_ppl)
            and target_ppl < self.min_target_ppl
        ):
            self._warn(
                f"step {step}: target perplexity {target_ppl:.2f} is below {self.min_target_ppl}: "
                "the teacher's codes are collapsing"
            )
        return out

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)


def cuda_peak_memory_gb(device: torch.device) -> float:
    """Peak allocated CUDA memory in GiB since the last reset (0 on CPU)."""
    if device.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(device) / 2**30
