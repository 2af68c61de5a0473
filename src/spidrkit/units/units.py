"""Discrete units: codebook units (argmax of the student heads) or k-means units of a layer.

```python
import spidrkit
from spidrkit.units import Tokenizer, KMeans
tok = Tokenizer(spidrkit.load("spidr_base"), layer=6)          # codebook units of layer 6
tok = Tokenizer(model, layer=6, kmeans=KMeans.load("km.pt"))   # k-means units
units = tok(["a.wav", "b.flac"])          # list of LongTensor [n], consecutive repeats merged
units = tok([wav_tensor], sample_rate=16000)                   # or raw waveforms
```

Units files (JSONL, optionally a text twin) are read and written by :mod:`spidrkit.units.files`.

Codebook heads and layers: head k (0-based) of a model with L layers and K codebooks predicts the
codes of teacher layer ``L - K + 1 + k`` (1-based). For SpidR that head sits on the same student
layer; for DinoSR every head sits on the last student layer but is still named by the teacher layer
whose codes it predicts. So ``--layer 6`` means the same head index for both models.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from spidrkit.api import Encoder, FrameEncoder, Waveforms, load
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import ConfigError
from spidrkit.models.inference import check_head_layers
from spidrkit.units.extract import AudioItem, run_corpus
from spidrkit.units.files import Units, dedup
from spidrkit.units.kmeans import KMeans
from spidrkit.utils.progress import progress


def check_kmeans(encoder: Encoder, layer: int, kmeans: KMeans) -> None:
    """Refuse a k-means whose centroids do not have the dimension of ``layer``'s features."""
    encoder.check_layers([layer])
    if encoder.dim != kmeans.dim:
        raise ConfigError(
            f"k-means centroids have dimension {kmeans.dim} but layer {layer} features have "
            f"{encoder.dim}; use the k-means trained on this model and layer"
        )


def frame_units(
    encoder: Encoder,
    waveforms: Waveforms,
    layer: int,
    kmeans: KMeans | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> list[torch.Tensor]:
    """Units of ``layer`` at the frame rate (int64 ``[frames]`` per utterance, on the CPU): the
    nearest ``kmeans`` centroid of each frame's features, or the codebook head's argmax."""
    if kmeans is None:
        return [u[layer] for u in encoder.codebook_units(waveforms, sample_rate, layers=[layer])]
    feats = encoder.features(waveforms, sample_rate, layers=[layer])
    device = kmeans.centroids.device
    return [kmeans.predict(f[layer].to(device)).cpu() for f in feats]


class Tokenizer:
    """Audio -> discrete units, for spoken-LM training and scoring.

    Args:
        encoder: a :class:`spidrkit.api.Encoder` (``spidrkit.load(...)``), a model (SpidR,
            DinoSR or another :class:`spidrkit.api.FrameEncoder`, run on ``device``), or a preset
            name or checkpoint path (loaded on ``device``).
        layer: 1-based layer.
        kmeans: a :class:`KMeans` (or a path to one); None for the model's codebook units.
        dedup: merge consecutive repeats.
        max_batch_seconds: padded audio per batch when ``encoder`` is not an Encoder yet.
    """

    def __init__(
        self,
        encoder: Encoder | FrameEncoder | str | Path,
        layer: int,
        kmeans: KMeans | str | Path | None = None,
        dedup: bool = True,
        *,
        device: torch.device | str | None = None,
        max_batch_seconds: float = 200.0,
    ) -> None:
        batch = int(max_batch_seconds * SAMPLE_RATE)
        if isinstance(encoder, str | Path):
            encoder = load(encoder, device=device or "cpu", max_batch_samples=batch)
        elif not isinstance(encoder, Encoder):
            if device is None and isinstance(encoder, torch.nn.Module):
                device = next(encoder.parameters()).device
            encoder = Encoder(encoder, device or "cpu", max_batch_samples=batch)
        if isinstance(kmeans, str | Path):
            kmeans = KMeans.load(kmeans, encoder.device)
        if kmeans is None:
            check_head_layers(encoder.unit_layers(), [layer])
        else:
            check_kmeans(encoder, layer, kmeans)
        self.encoder = encoder
        self.kmeans = kmeans
        self.layer = layer
        self.dedup = dedup

    def frames(self, inputs: Waveforms, sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Units at the frame rate (no merging): list of int64 ``[frames]``, in input order."""
        return frame_units(self.encoder, inputs, self.layer, self.kmeans, sample_rate)

    def units(
        self,
        inputs: Sequence[str | Path | torch.Tensor],
        names: Sequence[str] | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> list[Units]:
        """:class:`Units` records (``audio`` = the path, or ``names[i]``)."""
        names = names or [
            str(x) if isinstance(x, str | Path) else str(i) for i, x in enumerate(inputs)
        ]
        return [
            Units.from_frames(n, u, self.dedup)
            for n, u in zip(names, self.frames(inputs, sample_rate), strict=True)
        ]

    def __call__(self, inputs: Waveforms, sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Paths or 1-D waveforms -> list of int64 unit tensors (repeats merged if ``dedup``)."""
        frames = self.frames(inputs, sample_rate)
        return [dedup(u)[0] if self.dedup else u for u in frames]


def units_of_audio(
    encoder: Encoder,
    items: Sequence[AudioItem],
    layer: int,
    kmeans: KMeans | None = None,
    *,
    before_residual: bool = True,
    deduplicate: bool = True,
    name: str = "path",
    show_progress: bool = False,
) -> list[Units]:
    """``spidrkit units`` on audio: units of ``layer`` for every item, in input order (``audio`` =
    the item's path, or its fileid with ``name="fileid"``): the nearest ``kmeans`` centroid of each
    frame, or, without k-means, the argmax of the model's codebook head for that layer."""
    (layer,) = encoder.check_layers([layer])
    if kmeans is None:
        check_head_layers(encoder.unit_layers(), [layer])
        outputs = run_corpus(encoder, items, units=[layer])
    else:
        kmeans.check_source(encoder.identity(before_residual=before_residual), layer)
        check_kmeans(encoder, layer, kmeans)
        outputs = run_corpus(encoder, items, layers=[layer], before_residual=before_residual)
    bar = progress(
        total=round(sum(it.num_samples for it in items) / SAMPLE_RATE, 2),
        desc="units",
        unit="s",
        enabled=show_progress,
    )
    by_id = {}
    for item, out in outputs:
        frames = out[layer]
        if kmeans is not None:
            frames = kmeans.predict(frames.to(kmeans.centroids.device))
        label = item.fileid if name == "fileid" else item.path
        by_id[item.fileid] = Units.from_frames(label, frames.cpu(), deduplicate)
        bar.update(item.num_samples / SAMPLE_RATE)
    bar.close()
    return [by_id[it.fileid] for it in items]


def units_from_features(
    features: Iterable[tuple[str, torch.Tensor]], kmeans: KMeans, *, deduplicate: bool
) -> Iterator[Units]:
    """k-means units of saved features: ``(name, [frames, dim])`` pairs -> :class:`Units`."""
    for name, feats in features:
        yield Units.from_frames(name, kmeans.predict(feats.float()), deduplicate)
