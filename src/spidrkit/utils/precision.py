"""The one precision vocabulary: ``auto``, ``fp32``, ``bf16``, ``fp16``, and the autocast they mean.

Used by pretraining (``run.precision``), the unit LM (``run.precision``) and inference
(``spidrkit.load(..., precision=...)``, ``--precision``):

- ``fp32``: no autocast;
- ``bf16``: ``torch.autocast`` to bfloat16 (the official recipe);
- ``fp16``: autocast to float16 (training adds a GradScaler, :mod:`spidrkit.train.engine`);
- ``auto``: ``bf16`` on a CUDA device that supports it, ``fp32`` elsewhere.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch

from spidrkit.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


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
    return precision


def autocast(precision: str, device: torch.device) -> Any:
    """``torch.autocast`` for ``bf16``/``fp16`` (``auto`` resolved first), nothing for ``fp32``."""
    dtype = AUTOCAST_DTYPES[resolve_precision(precision, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
