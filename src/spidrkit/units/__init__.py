"""Features, k-means and discrete units: the bridge from an encoder to evaluation and spoken LMs.

- ``extract``: run an encoder (or a baseline) over a corpus, one feature file per utterance.
- ``baselines``: MFCC / log-mel (own torch code) and HuggingFace HuBERT, wav2vec 2.0, WavLM.
- ``kmeans``: minibatch k-means with k-means++ init, in torch.
- ``units``: codebook and k-means units, the ``Tokenizer``.
- ``files``: the units JSONL and feature file formats, deduplication, name matching.
"""

from spidrkit.units.extract import (
    AudioItem,
    EncoderFeatures,
    ExtractStats,
    extract_features,
    list_audio,
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
from spidrkit.units.units import (
    CodebookUnits,
    KMeansUnits,
    Tokenizer,
)

__all__ = [
    "AudioItem",
    "CodebookUnits",
    "EncoderFeatures",
    "ExtractStats",
    "KeyIndex",
    "KMeans",
    "KMeansConfig",
    "KMeansUnits",
    "Tokenizer",
    "Units",
    "dedup",
    "extract_features",
    "fit_kmeans",
    "list_audio",
    "list_features",
    "load_features",
    "read_units",
    "sample_frames",
    "write_units",
]
