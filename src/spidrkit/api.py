"""High-level encoder API: load a model in one call, get features or codebook units per utterance.

    import spidrkit
    enc = spidrkit.load("spidr_base")                    # or a checkpoint path, or "spidr_tiny"
    feats = enc.features([wav1, wav2], sample_rate=44100, layers=[6])   # [{6: Tensor[T, 768]}, ...]
    units = enc.codebook_units(wav1)                     # [{layer: LongTensor[T]}]

Waveforms may be 1-D tensors/arrays of any length and sample rate (they are resampled to 16 kHz and
standardised), a list of them, or a padded 2-D batch with ``lengths``. Each item's result is what the
item gives alone (padded frames never leak into valid ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spidrkit.audio import resample
from spidrkit.audio.io import SAMPLE_RATE, standardize
from spidrkit.errors import SpidrkitError
from spidrkit.models import DinoSR, SpidR
from spidrkit.models.components import num_frames
from spidrkit.models.inference import codebook_units, layer_features, plan_batches
from spidrkit.models.pretrained import load_pretrained
from spidrkit.utils.device import resolve_device
from spidrkit.utils.precision import resolve_precision

Waveforms = Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


class Encoder:
    """A SpidR/DinoSR model ready for inference on raw audio (eval mode, no gradients).

    Batches are planned by :func:`spidrkit.models.inference.plan_batches` and run by
    :func:`~spidrkit.models.inference.layer_features` / :func:`~spidrkit.models.inference.codebook_units`,
    the core every command uses.
    """

    def __init__(
        self,
        model: SpidR | DinoSR,
        device: str | torch.device = "cpu",
        max_batch_samples: int = SAMPLE_RATE * 120,
        precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)  # one line for meta, a missing GPU, a typo
        resolve_precision(precision, self.device)  # fails early on a name it does not know
        self.model = model.to(self.device).eval()
        self.max_batch_samples = max_batch_samples
        self.precision = precision

    @property
    def num_layers(self) -> int:
        return self.model.config.encoder_num_layers

    @property
    def dim(self) -> int:
        return self.model.config.encoder_embed_dim

    def frames(self, num_samples: int) -> int:
        return int(num_frames(num_samples, self.model.config.extractor_conv_layer_config))

    # -- input handling --------------------------------------------------------------------------

    def waveforms(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[Tensor]:
        """Split, check mono, resample to 16 kHz: a list of 1-D float32 tensors (not standardised)."""
        if isinstance(waveforms, (Tensor, np.ndarray)) and waveforms.ndim == 2:
            rows = [torch.as_tensor(w) for w in waveforms]
            if lengths is not None:
                rows = [r[: int(n)] for r, n in zip(rows, lengths)]
        elif isinstance(waveforms, (Tensor, np.ndarray)):
            if waveforms.ndim != 1:
                raise SpidrkitError(
                    f"expected 1-D or 2-D waveforms, got shape {tuple(waveforms.shape)}"
                )
            rows = [torch.as_tensor(waveforms)]
        else:
            rows = [torch.as_tensor(w) for w in waveforms]
        out = []
        for i, r in enumerate(rows):
            if r.ndim != 1:
                raise SpidrkitError(
                    f"waveform {i}: expected mono 1-D audio, got shape {tuple(r.shape)}"
                )
            r = r.float()
            if sample_rate != SAMPLE_RATE:
                r = torch.from_numpy(
                    np.ascontiguousarray(resample(r.numpy(), sample_rate, SAMPLE_RATE))
                )
            if self.frames(r.numel()) < 1:
                raise SpidrkitError(
                    f"waveform {i}: {r.numel()} samples at 16 kHz is too short for one frame"
                )
            out.append(r)
        return out

    def prepare(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[Tensor]:
        """:meth:`waveforms`, each standardised (what the model sees before padding)."""
        return [standardize(w) for w in self.waveforms(waveforms, sample_rate, lengths)]

    def _batches(self, wavs: list[Tensor]) -> list[list[int]]:
        return plan_batches([w.numel() for w in wavs], max_samples=self.max_batch_samples)

    # -- outputs ---------------------------------------------------------------------------------

    def features(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        *,
        layers: Sequence[int] | None = None,
        before_residual: bool = True,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[dict[int, Tensor]]:
        """Per utterance, {layer: [frames, dim] float32 on CPU}. Layers count from 1; default all.

        Only layers up to the highest one asked are computed.
        """
        layers = list(layers or range(1, self.num_layers + 1))
        bad = [n for n in layers if not 1 <= n <= self.num_layers]
        if bad:
            raise SpidrkitError(f"layers {bad}: the model has layers 1..{self.num_layers}")
        wavs = self.waveforms(waveforms, sample_rate, lengths)
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for idx in self._batches(wavs):
            reps, frames = layer_features(
                self.model,
                [wavs[i] for i in idx],
                layers,
                before_residual=before_residual,
                precision=self.precision,
            )
            for j, i in enumerate(idx):
                results[i] = {n: reps[n][j, : frames[j]].cpu() for n in layers}
        return results

    def codebook_units(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        *,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[dict[int, Tensor]]:
        """Per utterance, {layer: LongTensor [frames]}: argmax of each student head, keyed by the
        1-based layer of the codebook it predicts."""
        wavs = self.waveforms(waveforms, sample_rate, lengths)
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for idx in self._batches(wavs):
            codes, frames = codebook_units(
                self.model, [wavs[i] for i in idx], precision=self.precision
            )
            for j, i in enumerate(idx):
                results[i] = {n: c[j, : frames[j]].cpu() for n, c in codes.items()}
        return results


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    model_type: str | None = None,
    offline: bool | None = None,
    **kwargs: Any,
) -> Encoder:
    """Load an encoder by preset name ("spidr_base", "dinosr_base_reproduced",
    "dinosr_base_original", "spidr_tiny", ...) or checkpoint path (.pt, .safetensors, fairseq)."""
    model = load_pretrained(name_or_path, model_type=model_type, offline=offline)
    return Encoder(model, device, **kwargs)
