"""The one precision vocabulary: ``auto``, ``fp32``, ``bf16``, ``fp16``, and the autocast they mean.

Used by pretraining (``run.precision``), the unit LM (``run.precision``) and inference
(``spidrkit.load(..., precision=...)``, ``--precision``):

- ``fp32``: no autocast;
- ``bf16``: ``torch.autocast`` to bfloat16 (the official recipe); on a CPU without native bf16
  arithmetic (:func:`cpu_bf16_native`) it runs emulated and slowly, with a warning;
- ``fp16``: autocast to float16 (training adds a GradScaler, :mod:`spidrkit.train.engine`);
- ``auto``: ``bf16`` on a CUDA device that supports it, ``fp32`` elsewhere, CPUs included. On a CPU
  with native bf16 (AVX512-BF16), bf16 autocast is 1.7-1.8x faster than fp32 for a pretraining step
  of fixed shape at 1 thread, but on real batches (a new length every step) at 2 threads it measured
  slower than fp32 (docs/benchmarks.md, "Training"); ask for ``bf16`` explicitly to use it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Literal

import torch

from spidrkit.errors import ConfigError

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@functools.cache
def cpu_bf16_native() -> bool:
    """True where this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if callable(check) and check():
            return True
    return False


def resolve_precision(precision: str, device: torch.device, where: str = "precision") -> str:
    """``precision`` made concrete for ``device`` (``auto`` -> ``bf16`` or ``fp32``), checked.

    Raises ConfigError naming ``where`` for an unknown name or bf16 on a GPU without it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if _bf16_supported(device) else "fp32"
    if precision == "bf16" and device.type == "cuda" and not _bf16_supported(device):
        raise ConfigError(f"{where} = 'bf16' but this GPU has no bf16 support; use fp16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_native():
        _warn_emulated(where)
    return precision


@functools.cache
def _warn_emulated(where: str) -> None:
    log.warning(
        "%s = 'bf16': this CPU has no native bf16 (AVX512-BF16/AMX); it runs emulated, slowly",
        where,
    )


def autocast(precision: str, device: torch.device) -> Any:
    """``torch.autocast`` for ``bf16``/``fp16`` (``auto`` resolved first), nothing for ``fp32``."""
    dtype = AUTOCAST_DTYPES[resolve_precision(precision, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
