"""Features, k-means and discrete units: the bridge from an encoder to evaluation and spoken LMs.

- ``extract``: run an encoder (:class:`spidrkit.api.Encoder`, or a baseline in one) over a corpus,
  one feature file per utterance.
- ``baselines``: MFCC / log-mel (own torch code) and HuggingFace HuBERT, wav2vec 2.0, WavLM.
- ``kmeans``: minibatch k-means with k-means++ init, in torch.
- ``units``: codebook and k-means units, the ``Tokenizer``.
- ``files``: the units JSONL and feature file formats, deduplication, name matching.

The names below load on first use (PEP 562): ``spidrkit abx`` reads feature files through
``spidrkit.units.files`` and must not wait for the encoder and data-loading imports of ``extract``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spidrkit.units.extract import (
        AudioItem,
        ExtractStats,
        extract_features,
        list_audio,
        run_corpus,
    )
    from spidrkit.units.files import (
        KeyIndex,
        Units,
        dedup,
        list_features,
        load_features,
        read_units,
        write_units,
    )
    from spidrkit.units.kmeans import KMeans, KMeansConfig, fit_kmeans, sample_frames
    from spidrkit.units.units import Tokenizer, frame_units

_WHERE = {
    "extract": ("AudioItem", "ExtractStats", "extract_features", "list_audio", "run_corpus"),
    "files": (
        "KeyIndex",
        "Units",
        "dedup",
        "list_features",
        "load_features",
        "read_units",
        "write_units",
    ),
    "kmeans": ("KMeans", "KMeansConfig", "fit_kmeans", "sample_frames"),
    "units": ("Tokenizer", "frame_units"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE])


__all__ = [
    "AudioItem",
    "ExtractStats",
    "KeyIndex",
    "KMeans",
    "KMeansConfig",
    "Tokenizer",
    "Units",
    "dedup",
    "extract_features",
    "fit_kmeans",
    "frame_units",
    "list_audio",
    "list_features",
    "load_features",
    "read_units",
    "run_corpus",
    "sample_frames",
    "write_units",
]
