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

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spidrkit.audio.io import SAMPLE_RATE, standardize
from spidrkit.errors import SpidrkitError
from spidrkit.models import PRESETS, DinoSR, SpidR, build_model
from spidrkit.models.checkpoint import load_model, load_state, read_checkpoint
from spidrkit.models.components import frame_attention_mask, num_frames

Waveforms = Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


class Encoder:
    """A SpidR/DinoSR model ready for inference on raw audio (eval mode, no gradients)."""

    def __init__(
        self,
        model: SpidR | DinoSR,
        device: str | torch.device = "cpu",
        max_batch_samples: int = SAMPLE_RATE * 120,
        precision: str = "fp32",
    ) -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise SpidrkitError(f"precision {precision!r}: expected fp32, bf16 or fp16")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.max_batch_samples = max_batch_samples
        self.precision = precision

    def _autocast(self) -> Any:
        """Mixed precision on the model's device (no-op in fp32; fp16 only on CUDA)."""
        if self.precision == "fp32" or (self.precision == "fp16" and self.device.type != "cuda"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def num_layers(self) -> int:
        return self.model.config.encoder_num_layers

    @property
    def dim(self) -> int:
        return self.model.config.encoder_embed_dim

    def frames(self, num_samples: int) -> int:
        return int(num_frames(num_samples, self.model.config.extractor_conv_layer_config))

    # -- input handling --------------------------------------------------------------------------

    def prepare(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[Tensor]:
        """Split, downmix check, resample to 16 kHz and standardise: a list of 1-D float32 tensors."""
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
                from spidrkit.audio import resample

                r = torch.from_numpy(
                    np.ascontiguousarray(resample(r.numpy(), sample_rate, SAMPLE_RATE))
                )
            if self.frames(r.numel()) < 1:
                raise SpidrkitError(
                    f"waveform {i}: {r.numel()} samples at 16 kHz is too short for one frame"
                )
            out.append(standardize(r))
        return out

    def _batches(self, wavs: list[Tensor]) -> list[list[int]]:
        """Index groups, longest first, each padded size under ``max_batch_samples``."""
        order = sorted(range(len(wavs)), key=lambda i: -wavs[i].numel())
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and (len(batches[-1]) + 1) * wavs[batches[-1][0]].numel() <= self.max_batch_samples
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _pad(self, wavs: list[Tensor]) -> tuple[Tensor, Tensor | None, list[int]]:
        longest = max(w.numel() for w in wavs)
        batch = torch.zeros(len(wavs), longest)
        for j, w in enumerate(wavs):
            batch[j, : w.numel()] = w
        frames = [self.frames(w.numel()) for w in wavs]
        mask = frame_attention_mask(frames, self.frames(longest), self.device)
        return batch.to(self.device), mask, frames

    def _projected(self, batch: Tensor, wavs: list[Tensor]) -> Tensor:
        """Projected features; a group-norm extractor normalises over time, so run it per item."""
        if self.model.config.extractor_mode != "group_norm" or len(wavs) == 1:
            return self.model.features(batch)
        feats = [self.model.features(w[None].to(self.device))[0] for w in wavs]
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)

    # -- outputs ---------------------------------------------------------------------------------

    @torch.inference_mode()
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
        wavs = self.prepare(waveforms, sample_rate, lengths)
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for idx in self._batches(wavs):
            group = [wavs[i] for i in idx]
            batch, mask, frames = self._pad(group)
            with self._autocast():
                x = self._projected(batch, group)
                _, res, outs = self.model.student(x, mask, num_layers=max(layers))
            reps = res if before_residual else outs
            for j, i in enumerate(idx):
                results[i] = {n: reps[n - 1][j, : frames[j]].float().cpu() for n in layers}
        return results

    @torch.inference_mode()
    def codebook_units(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        *,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[dict[int, Tensor]]:
        """Per utterance, {layer: LongTensor [frames]}: argmax of each student head, keyed by the
        1-based layer of the codebook it predicts."""
        wavs = self.prepare(waveforms, sample_rate, lengths)
        layer_ids = [i + 1 for i in self.model.codebook_layers]
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for idx in self._batches(wavs):
            group = [wavs[i] for i in idx]
            batch, mask, frames = self._pad(group)
            with self._autocast():
                x = self._projected(batch, group)
                final, res, _ = self.model.student(x, mask)
                inputs = self.model.head_inputs(res, final)
                codes = [head(h).argmax(-1).cpu() for head, h in zip(self.model.heads, inputs)]
            for j, i in enumerate(idx):
                results[i] = {n: c[j, : frames[j]] for n, c in zip(layer_ids, codes)}
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
    name = str(name_or_path)
    preset = PRESETS.get(name)
    if preset is not None:
        model = build_model(preset.model_type, preset.config)
        if preset.url is not None:
            from spidrkit.models.hub import fetch_preset

            ckpt = read_checkpoint(fetch_preset(name, offline=offline))
            load_state(model, ckpt.state_dict, source=name)
        return Encoder(model, device, **kwargs)
    path = Path(name)
    if not path.exists():
        known = ", ".join(PRESETS)
        raise SpidrkitError(f"{name}: no such checkpoint file or preset (presets: {known})")
    return Encoder(load_model(path, model_type=model_type), device, **kwargs)
