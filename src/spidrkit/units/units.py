"""Discrete units: codebook units (argmax of the student heads) or k-means units of a layer.

```python
import spidrkit
from spidrkit.units import Tokenizer, KMeans
tok = Tokenizer(model, layer=6)                                # codebook units of layer 6
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
from typing import Any

import torch

from spidrkit.audio import load_audio, resample
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import ConfigError
from spidrkit.models.inference import codebook_units, head_layers, plan_batches
from spidrkit.units.extract import AudioItem, EncoderFeatures, load_encoder, run_batch
from spidrkit.units.files import Units, dedup
from spidrkit.units.kmeans import KMeans

# -- unit sources ----------------------------------------------------------------------------------


class CodebookUnits(EncoderFeatures):
    """Argmax of the student head of a layer as a feature source ``{layer: [batch, frames, 1]}``.

    ``dim`` is 1 and the values are unit ids (stored as float by the harness' batching, turned back
    to int64 by :func:`frame_units`). Runs :func:`spidrkit.models.inference.codebook_units`.
    """

    def __init__(self, model: Any, layer: int, *, precision: str = "fp32") -> None:
        model = getattr(model, "model", model)
        available = head_layers(model)
        if layer not in available:
            raise ConfigError(
                f"no codebook head for layer {layer}; this model's heads name layers "
                f"{available[0]}..{available[-1]} (use --kmeans for other layers)"
            )
        super().__init__(model, [layer], precision=precision)
        self.dim = 1

    def __call__(self, wavs: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        layer = self.layers[0]
        units, _ = codebook_units(self.model, wavs, [layer], precision=self.precision)
        return {layer: units[layer][..., None].float()}


class KMeansUnits:
    """Features of a source, then the nearest k-means centroid: ``{layer: [batch, frames, 1]}``."""

    def __init__(self, features: Any, kmeans: KMeans) -> None:
        if len(features.layers) != 1:
            raise ConfigError("k-means units need exactly one layer")
        if features.dim != kmeans.dim:
            raise ConfigError(
                f"k-means centroids have dimension {kmeans.dim} but layer {features.layers[0]} "
                f"features have {features.dim}; use the k-means trained on this model and layer"
            )
        self.features = features
        self.kmeans = kmeans
        self.layers = list(features.layers)
        self.batchable = features.batchable
        self.dim = 1

    def num_frames(self, num_samples: int) -> int:
        return self.features.num_frames(num_samples)

    def to(self, device: torch.device | str) -> KMeansUnits:
        self.features.to(device)
        self.kmeans = self.kmeans.to(device)
        return self

    @torch.no_grad()
    def __call__(self, wavs: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        layer = self.layers[0]
        feats = self.features(wavs)[layer]  # [B, T, D]
        b, t, d = feats.shape
        units = self.kmeans.to(feats.device).predict(feats.reshape(b * t, d))
        return {layer: units.reshape(b, t, 1).float()}


def frame_units(out: torch.Tensor) -> torch.Tensor:
    """``[frames, 1]`` float output of a unit source -> int64 ``[frames]``."""
    return out[:, 0].round().long()


# -- the tokenizer API -----------------------------------------------------------------------------


class Tokenizer:
    """Audio -> discrete units, for spoken-LM training and scoring.

    Args:
        encoder: a SpidR / DinoSR model (or a ``spidrkit.load`` encoder, or a preset name or
            checkpoint path, loaded on ``device``).
        layer: 1-based layer.
        kmeans: a :class:`KMeans` (or a path to one); None for the model's codebook units.
        dedup: merge consecutive repeats.
    """

    def __init__(
        self,
        encoder: Any,
        layer: int,
        kmeans: KMeans | str | Path | None = None,
        dedup: bool = True,
        *,
        device: torch.device | str | None = None,
        max_batch_seconds: float = 200.0,
    ) -> None:
        if isinstance(encoder, str | Path):
            encoder = load_encoder(str(encoder), device or "cpu")
        if isinstance(kmeans, str | Path):
            kmeans = KMeans.load(kmeans)
        model = getattr(encoder, "model", encoder)
        if kmeans is None:
            self.source: Any = CodebookUnits(model, layer)
        else:
            self.source = KMeansUnits(EncoderFeatures(model, [layer]), kmeans)
        if device is not None:
            self.source.to(device)
        self.layer = layer
        self.dedup = dedup
        self.max_batch_seconds = max_batch_seconds

    def _waveforms(self, inputs: Sequence[Any], sample_rate: int) -> list[torch.Tensor]:
        wavs = []
        for x in inputs:
            if isinstance(x, str | Path):
                wavs.append(torch.from_numpy(load_audio(x)))
                continue
            w = torch.as_tensor(x, dtype=torch.float32)
            if w.ndim != 1:
                raise ConfigError(f"waveforms must be 1-D [samples], got shape {tuple(w.shape)}")
            if sample_rate != SAMPLE_RATE:
                w = torch.from_numpy(resample(w.cpu().numpy(), sample_rate, SAMPLE_RATE))
            wavs.append(w)
        return wavs

    def frames(self, inputs: Sequence[Any], sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Units at the frame rate (no merging): list of int64 ``[frames]``, in input order."""
        wavs = self._waveforms(inputs, sample_rate)
        items = [AudioItem(str(i), str(i), w.shape[0]) for i, w in enumerate(wavs)]
        out: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * len(wavs)
        groups = plan_batches(
            [w.shape[0] for w in wavs],
            max_samples=int(self.max_batch_seconds * SAMPLE_RATE),
            equal_lengths=not self.source.batchable,
        )
        for idx in groups:
            batch = run_batch(self.source, [items[k] for k in idx], [wavs[k] for k in idx])
            for k, (_, feats) in zip(idx, batch, strict=True):
                out[k] = frame_units(feats[self.layer])
        return out

    def units(
        self,
        inputs: Sequence[Any],
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

    def __call__(self, inputs: Sequence[Any], sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
        """Paths or 1-D waveforms -> list of int64 unit tensors (repeats merged if ``dedup``)."""
        frames = self.frames(inputs, sample_rate)
        return [dedup(u)[0] if self.dedup else u for u in frames]


def units_from_features(
    features: Iterable[tuple[str, torch.Tensor]], kmeans: KMeans, *, deduplicate: bool
) -> Iterator[Units]:
    """k-means units of saved features: ``(name, [frames, dim])`` pairs -> :class:`Units`."""
    for name, feats in features:
        yield Units.from_frames(name, kmeans.predict(feats.float()), deduplicate)
