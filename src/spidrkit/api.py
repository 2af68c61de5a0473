"""The front door from audio to encoder outputs: load a model in one call, get features or codebook
units per utterance.

    import spidrkit
    enc = spidrkit.load("spidr_base")                    # or a checkpoint path, or "spidr_tiny"
    feats = enc.features([wav1, wav2], sample_rate=44100, layers=[6])   # [{6: Tensor[T, 768]}, ...]
    feats = enc.features(["a.wav", "b.flac"], layers=[6])                # or audio files
    units = enc.codebook_units(wav1)                     # [{layer: LongTensor[T]}]

Waveforms may be 1-D tensors/arrays of any length and sample rate (they are resampled to 16 kHz),
audio file paths, a list of them, or a padded 2-D batch with ``lengths``. Each item's result is what
the item gives alone (padded frames never leak into valid ones).

:class:`Encoder` runs anything that implements :class:`FrameEncoder`: SpidR and DinoSR
(:mod:`spidrkit.models`) and the MFCC / log-mel / HuggingFace baselines
(:mod:`spidrkit.units.baselines`). Every command that runs an encoder goes through it:
``spidrkit extract``, ``kmeans``, ``units``, ``abx --model``, ``slm-eval --model`` and the
:class:`spidrkit.units.Tokenizer`. It owns input handling (mono, 16 kHz, float32), layer checks,
length-sorted padded batches (:func:`spidrkit.models.inference.plan_batches`), cropping each item to
its own frames, and decoding the next batch's audio while the current one runs
(:meth:`Encoder.stream`, for corpora).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from spidrkit.audio import load_audio, resample
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import ConfigError, SpidrkitError
from spidrkit.models import DinoSR, SpidR
from spidrkit.models.inference import (
    check_head_layers,
    codebook_units,
    head_layers,
    plan_batches,
)
from spidrkit.models.pretrained import load_pretrained
from spidrkit.utils.device import resolve_device
from spidrkit.utils.precision import resolve_precision
from spidrkit.utils.provenance import source_identity

Audio = Tensor | np.ndarray | str | Path
Waveforms = Audio | Sequence[Audio]
Item = TypeVar("Item")


class FrameEncoder(Protocol):
    """What :class:`Encoder` runs: raw 16 kHz waveforms -> frame features of numbered layers.

    SpidR and DinoSR (Transformer layers 1..L), the spectral baselines (one pseudo-layer 0) and the
    HuggingFace baselines (0 = Transformer input, 1..L) implement it.
    """

    @property
    def layer_range(self) -> range:
        """The layer numbers :meth:`layer_features` accepts."""
        ...

    @property
    def dim(self) -> int:
        """Feature dimension."""
        ...

    @property
    def batchable(self) -> bool:
        """True when a padded batch gives each item what it gives alone (else only items of equal
        length share a batch)."""
        ...

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples (0: too short)."""
        ...

    def to(self, device: torch.device) -> Any:
        """Move to ``device`` (returns the encoder)."""
        ...

    def layer_features(
        self,
        wavs: Sequence[Tensor],
        layers: Sequence[int],
        *,
        before_residual: bool = True,
        precision: str = "fp32",
    ) -> dict[int, Tensor]:
        """Raw (not standardised) 16 kHz waveforms, each ``[samples]`` and at least one frame long
        -> ``{layer: [batch, frames, dim]}``; frames past ``num_frames(len(wav))`` are padding."""
        ...


class Encoder:
    """A :class:`FrameEncoder` ready for inference on raw audio (eval mode, no gradients).

    ``max_batch_samples`` caps ``len(batch) * longest`` (padded 16 kHz samples) of a batch and
    ``max_batch_items`` its size; results do not depend on them (up to float rounding).
    """

    def __init__(
        self,
        model: FrameEncoder,
        device: str | torch.device = "cpu",
        *,
        max_batch_samples: int = SAMPLE_RATE * 120,
        max_batch_items: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)  # one line for meta, a missing GPU, a typo
        resolve_precision(precision, self.device)  # fails early on a name it does not know
        model.to(self.device)
        if isinstance(model, nn.Module):
            model.eval()
        self.model = model
        self.max_batch_samples = int(max_batch_samples)
        self.max_batch_items = max_batch_items
        self.precision = precision

    @property
    def num_layers(self) -> int:
        """The highest layer number."""
        return self.model.layer_range[-1]

    @property
    def dim(self) -> int:
        return self.model.dim

    def frames(self, num_samples: int) -> int:
        """Frames of a 16 kHz waveform of ``num_samples`` samples."""
        return int(self.model.num_frames(int(num_samples)))

    def identity(self, *, before_residual: bool = True) -> dict[str, Any]:
        """What this encoder computes, as plain data (type and weight digest, or a baseline's
        settings): the record resumable outputs keep (:mod:`spidrkit.utils.provenance`)."""
        return source_identity(
            self.model,
            before_residual=before_residual if isinstance(self.model, nn.Module) else None,
        )

    # -- inputs ----------------------------------------------------------------------------------

    def check_layers(self, layers: Sequence[int] | None) -> list[int]:
        """The layers asked (sorted, each once; None: every layer), or a ConfigError naming the
        ones the model does not have."""
        have = self.model.layer_range
        if layers is None:
            return list(have)
        asked = sorted(set(int(n) for n in layers))
        bad = [n for n in asked if n not in have]
        if not asked or bad:
            raise ConfigError(
                f"layers {bad or list(layers)}: the model has layers {have[0]}..{have[-1]}"
            )
        return asked

    def waveforms(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[Tensor]:
        """Split, decode paths, check mono, resample to 16 kHz: a list of 1-D float32 tensors
        (not standardised: each model standardises what it needs). ``sample_rate`` is that of the
        arrays; files are decoded and resampled by :func:`spidrkit.audio.load_audio`."""
        rows: list[Audio]
        if isinstance(waveforms, (Tensor, np.ndarray)) and waveforms.ndim == 2:
            batch = [torch.as_tensor(w) for w in waveforms]
            if lengths is not None:
                batch = [r[: int(n)] for r, n in zip(batch, lengths, strict=True)]
            rows = list(batch)
        elif isinstance(waveforms, (Tensor, np.ndarray)):
            if waveforms.ndim != 1:
                raise SpidrkitError(
                    f"expected 1-D or 2-D waveforms, got shape {tuple(waveforms.shape)}"
                )
            rows = [waveforms]
        elif isinstance(waveforms, (str, Path)):
            rows = [waveforms]
        else:
            rows = list(waveforms)
        out = []
        for i, row in enumerate(rows):
            if isinstance(row, (str, Path)):
                out.append(torch.from_numpy(load_audio(row)))
                continue
            r = torch.as_tensor(row)
            if r.ndim != 1:
                raise SpidrkitError(
                    f"waveform {i}: expected mono 1-D audio, got shape {tuple(r.shape)}"
                )
            r = r.float()
            if sample_rate != SAMPLE_RATE:
                r = torch.from_numpy(
                    np.ascontiguousarray(resample(r.cpu().numpy(), sample_rate, SAMPLE_RATE))
                )
            out.append(r)
        for i, r in enumerate(out):
            if self.frames(r.numel()) < 1:
                raise SpidrkitError(
                    f"waveform {i}: {r.numel()} samples at 16 kHz is too short for one frame"
                )
        return out

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
        """Per utterance, {layer: [frames, dim] float32 on CPU}. Default: every layer.

        Only layers up to the highest one asked are computed. ``before_residual``: the layer
        results the paper evaluates; False for the layer outputs (SpidR / DinoSR only).
        """
        wavs = self.waveforms(waveforms, sample_rate, lengths)
        stream = self.stream(
            range(len(wavs)),
            wavs.__getitem__,
            [w.numel() for w in wavs],
            layers=layers,
            before_residual=before_residual,
        )
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for i, out in stream:
            results[i] = out
        return results

    def codebook_units(
        self,
        waveforms: Waveforms,
        sample_rate: int = SAMPLE_RATE,
        *,
        layers: Sequence[int] | None = None,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> list[dict[int, Tensor]]:
        """Per utterance, {layer: LongTensor [frames]}: argmax of each student head (default: every
        head), keyed by the 1-based layer of the codebook it predicts."""
        wavs = self.waveforms(waveforms, sample_rate, lengths)
        stream = self.stream(
            range(len(wavs)), wavs.__getitem__, [w.numel() for w in wavs], units=layers or "all"
        )
        results: list[dict[int, Tensor]] = [{} for _ in wavs]
        for i, out in stream:
            results[i] = out
        return results

    def unit_layers(self) -> list[int]:
        """The layers with a codebook head (empty for a baseline)."""
        return head_layers(self.model) if isinstance(self.model, SpidR | DinoSR) else []

    def stream(
        self,
        items: Sequence[Item],
        load: Callable[[Item], Tensor],
        num_samples: Sequence[int],
        *,
        layers: Sequence[int] | None = None,
        before_residual: bool = True,
        units: Sequence[int] | str | None = None,
        on_batch: Callable[[float], Any] | None = None,
    ) -> Iterator[tuple[Item, dict[int, Tensor]]]:
        """Outputs of a corpus, ``(item, {layer: [frames, dim]})``, longest items first.

        ``load(item)`` gives the raw 16 kHz waveform ``[samples]`` of an item whose length is
        ``num_samples[i]``; the next batch is decoded in a background thread while the current
        one runs. An item too short for one frame gives ``[0, dim]``. With ``units`` (layers, or
        ``"all"``), the outputs are codebook units ``{layer: int64 [frames]}`` instead of
        features. ``on_batch(seconds)`` is called after each batch (progress bars).
        """
        compute = self._computation(layers, before_residual, units)
        groups = plan_batches(
            num_samples,
            max_samples=self.max_batch_samples,
            max_items=self.max_batch_items,
            equal_lengths=not self.model.batchable,
        )
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:

            def submit(k: int) -> concurrent.futures.Future[list[Tensor]] | None:
                if k >= len(groups):
                    return None
                return pool.submit(lambda: [load(items[i]) for i in groups[k]])

            future = submit(0)
            for k, group in enumerate(groups):
                assert future is not None
                wavs = future.result()
                future = submit(k + 1)
                frames = [self.frames(w.shape[-1]) for w in wavs]
                run = [j for j, t in enumerate(frames) if t > 0]
                out = compute([wavs[j] for j in run]) if run else {}
                for j, (i, t) in enumerate(zip(group, frames, strict=True)):
                    if t == 0:
                        yield items[i], {n: compute.empty.clone() for n in compute.keys}
                    else:
                        r = run.index(j)
                        yield items[i], {n: o[r, :t].detach().cpu().clone() for n, o in out.items()}
                if on_batch is not None:
                    on_batch(sum(w.shape[-1] for w in wavs) / SAMPLE_RATE)

    def _computation(
        self,
        layers: Sequence[int] | None,
        before_residual: bool,
        units: Sequence[int] | str | None,
    ) -> _Compute:
        """What one batch runs: features, or codebook units, of the checked layers."""
        if units is None:
            checked = self.check_layers(layers)
            return _Compute(
                checked,
                lambda wavs: self.model.layer_features(
                    [w.to(self.device) for w in wavs],
                    checked,
                    before_residual=before_residual,
                    precision=self.precision,
                ),
                torch.zeros(0, self.dim),
            )
        model = self.model
        if not isinstance(model, SpidR | DinoSR):
            raise ConfigError("baselines have no codebooks: use k-means units")
        heads = head_layers(model)
        wanted = heads if isinstance(units, str) else sorted(set(int(n) for n in units))
        check_head_layers(heads, wanted)
        return _Compute(
            wanted,
            lambda wavs: codebook_units(
                model, [w.to(self.device) for w in wavs], wanted, precision=self.precision
            )[0],
            torch.zeros(0, dtype=torch.long),
        )


class _Compute:
    """One batch's computation: ``fn(wavs) -> {layer: padded output}`` for the layers ``keys``;
    ``empty`` is the output of an item too short for one frame."""

    def __init__(
        self, keys: list[int], fn: Callable[[list[Tensor]], dict[int, Tensor]], empty: Tensor
    ) -> None:
        self.keys = keys
        self.fn = fn
        self.empty = empty

    def __call__(self, wavs: list[Tensor]) -> dict[int, Tensor]:
        return self.fn(wavs)


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    model_type: str | None = None,
    offline: bool | None = None,
    **kwargs: Any,
) -> Encoder:
    """Load an encoder by preset name ("spidr_base", "dinosr_base_reproduced",
    "dinosr_base_original", "spidr_tiny", ...) or checkpoint path (.pt, .safetensors, fairseq).

    ``kwargs`` go to :class:`Encoder` (``max_batch_samples``, ``max_batch_items``, ``precision``).
    """
    model = load_pretrained(name_or_path, model_type=model_type, offline=offline)
    return Encoder(model, device, **kwargs)
