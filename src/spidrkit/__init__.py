"""spidrkit: SpidR and DinoSR speech encoders, from pretraining to units to spoken-LM scores."""

from __future__ import annotations

__version__ = "0.1.0"

from spidrkit.errors import SpidrkitError  # noqa: E402


def load(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Load an encoder by preset name or checkpoint path; see :func:`spidrkit.api.load`."""
    from spidrkit.api import load as _load

    return _load(*args, **kwargs)


__all__ = ["SpidrkitError", "__version__", "load"]
