"""Device names to ``torch.device``: ``auto`` picks CUDA when there is one, else the CPU."""

from __future__ import annotations

import torch

from spidrkit.errors import ConfigError


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``"cuda"`` gets the
    local rank appended; ``cpu``, ``cuda:N`` (an existing GPU) and ``mps`` (when available) are
    taken as they are. Anything else (``meta``, a missing GPU, a typo) is a one-line ConfigError:
    the device is checked here, once, not when the first tensor moves."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda': CUDA is not available; use 'cpu' or 'auto'")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"device {device!r}: {str(exc).splitlines()[0]} (expected auto, cpu, cuda, cuda:1, ...)"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device {device!r}: CUDA is not available; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(
                f"device {device!r}: there {'is' if n == 1 else 'are'} {n} GPU(s) (cuda:0.."
                f"cuda:{n - 1})"
            )
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise ConfigError(
        f"device {device!r}: spidrkit runs on cpu or cuda (expected auto, cpu, cuda, cuda:1, ...)"
    )
