"""spidrkit: SpidR and DinoSR speech encoders, from pretraining to units to spoken-LM scores."""

from __future__ import annotations

__version__ = "0.1.0"

from spidrkit.errors import SpidrkitError  # noqa: E402

__all__ = ["SpidrkitError", "__version__"]
