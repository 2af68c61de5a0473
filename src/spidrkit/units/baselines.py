"""Baseline frame features: log-mel, MFCC, and HuggingFace encoders.

Every baseline implements :class:`spidrkit.api.FrameEncoder`, so :class:`spidrkit.api.Encoder`
runs it as it runs SpidR and DinoSR (``Encoder(SpectralFeatures("mfcc")).features(wavs)``):
``layer_features`` takes a list of raw 16 kHz waveforms (each ``[samples]``) and returns
``{layer: [batch, frames, dim]}`` where frames beyond ``num_frames(len(wav))`` are padding.

Choices for the spectral baselines (written down in docs/units.md):
- 25 ms Hann window (400 samples), FFT size 512, power spectrum, no centring ("snip edges" as in
  Kaldi): frame i covers samples ``[i*hop, i*hop + 400)``. With the 20 ms hop this is exactly the
  encoders' receptive-field grid (``floor((n - 400) / 320) + 1`` frames), so baseline and encoder
  features of the same file have the same length.
- Mel scale of HTK (``2595 log10(1 + f / 700)``), triangular filters from 20 Hz to 8 kHz, no area
  normalisation; log with a 1e-6 floor. Log-mel: 80 filters. MFCC: 40 filters, orthonormal DCT-II,
  the first 13 coefficients, plus first and second deltas (window 2) by default: 39 dimensions, the
  ZeroSpeech MFCC baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spidrkit.audio import standardize
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.audio.spectral import (  # noqa: F401  (re-exported: the baselines' building blocks)
    N_FFT,
    WIN_LENGTH,
    dct_matrix,
    deltas,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from spidrkit.errors import ConfigError
from spidrkit.models.inference import pad_waveforms


def frames_for(num_samples: int, hop: int, win: int = WIN_LENGTH) -> int:
    """Frames of a snip-edges STFT: ``floor((n - win) / hop) + 1``, 0 when shorter than a window."""
    return 0 if num_samples < win else (num_samples - win) // hop + 1


@dataclass
class SpectralFeatures:
    """Log-mel or MFCC features as a frame encoder (single pseudo-layer 0).

    kind: "logmel" or "mfcc"; hop_ms: 10 or 20; n_mels defaults to 80 (log-mel) or 40 (MFCC);
    n_ceps: MFCC coefficients kept; with_deltas: append first and second deltas (MFCC only);
    cmvn: normalise each dimension to zero mean and unit variance over the utterance (the ZeroSpeech
    MFCC baseline's per-utterance normalisation; it removes a fixed channel's cepstral offset).
    """

    kind: str = "mfcc"
    hop_ms: int = 20
    n_mels: int | None = None
    n_ceps: int = 13
    with_deltas: bool = True
    cmvn: bool = False

    batchable = True  # computed item by item: padding never leaks

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "logmel"):
            raise ConfigError(f"unknown spectral baseline {self.kind!r}; use 'mfcc' or 'logmel'")
        if self.hop_ms not in (10, 20):
            raise ConfigError(f"hop_ms must be 10 or 20, got {self.hop_ms}")
        if self.n_mels is None:
            self.n_mels = 80 if self.kind == "logmel" else 40
        self.hop = SAMPLE_RATE * self.hop_ms // 1000
        self._fbank = mel_filterbank(self.n_mels)
        self._dct = dct_matrix(self.n_mels, self.n_ceps) if self.kind == "mfcc" else None
        self._window = torch.hann_window(WIN_LENGTH, periodic=True)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.hop_ms}ms" + ("-cmvn" if self.cmvn else "")

    @property
    def layer_range(self) -> range:
        return range(0, 1)

    @property
    def dim(self) -> int:
        if self.kind == "logmel":
            return int(self.n_mels or 0)
        return self.n_ceps * (3 if self.with_deltas else 1)

    def num_frames(self, num_samples: int) -> int:
        return frames_for(num_samples, self.hop)

    def to(self, device: torch.device | str) -> SpectralFeatures:
        self._fbank = self._fbank.to(device)
        self._window = self._window.to(device)
        if self._dct is not None:
            self._dct = self._dct.to(device)
        return self

    def single(self, wav: torch.Tensor) -> torch.Tensor:
        """Features of one waveform ``[samples]`` -> ``[frames, dim]`` float32."""
        wav = wav.float()
        t = frames_for(wav.shape[-1], self.hop)
        if t == 0:
            return wav.new_zeros(0, self.dim)
        frames = wav.unfold(0, WIN_LENGTH, self.hop)[:t] * self._window  # [T, 400]
        power = torch.fft.rfft(frames, n=N_FFT).abs().pow(2)  # [T, 257]
        logmel = torch.log(power @ self._fbank + 1e-6)  # [T, n_mels]
        if self.kind == "logmel":
            return _cmvn(logmel) if self.cmvn else logmel
        assert self._dct is not None  # built for kind == "mfcc"
        ceps = logmel @ self._dct
        if self.with_deltas:
            d1 = deltas(ceps)
            ceps = torch.cat([ceps, d1, deltas(d1)], dim=-1)
        return _cmvn(ceps) if self.cmvn else ceps

    @torch.no_grad()
    def layer_features(
        self,
        wavs: Sequence[torch.Tensor],
        layers: Sequence[int] = (0,),
        *,
        before_residual: bool = True,
        precision: str = "fp32",
    ) -> dict[int, torch.Tensor]:
        """Raw waveforms (each ``[samples]``) -> ``{0: [batch, frames, dim]}`` zero-padded
        (computed in float32; ``before_residual`` and ``precision`` do not apply)."""
        outs = [self.single(w.to(self._window.device)) for w in wavs]
        t_max = max((o.shape[0] for o in outs), default=0)
        batch = outs[0].new_zeros(len(outs), t_max, self.dim)
        for i, o in enumerate(outs):
            batch[i, : o.shape[0]] = o
        return {0: batch}


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(
            "HuggingFace baselines need the transformers library: pip install 'spidrkit[hf]'"
        ) from exc
    return transformers


class _StopForward(Exception):
    """Raised by a forward hook once the highest layer asked has run."""


class HFEncoder:
    """HuBERT / wav2vec 2.0 / WavLM from ``transformers`` as a frame encoder.

    Layer numbering follows the paper's: layer ``l`` (1-based) is the output of the l-th Transformer
    layer (``hidden_states[l]`` of transformers for post-LN models, the raw layer output for pre-LN
    ones); layer 0 is the Transformer input. Only layers up to the highest asked are computed (a
    forward hook stops the model there).

    Models whose feature extractor uses group norm (wav2vec 2.0 / HuBERT base) normalise over time,
    so padding changes their output: ``batchable`` is False and the harness runs them one utterance
    at a time. Input is standardised per utterance when the model's preprocessor config says
    ``do_normalize`` (default True when there is no preprocessor config).
    """

    def __init__(
        self,
        model: Any,
        *,
        normalize: bool | None = None,
        name: str = "hf",
    ) -> None:
        _require_transformers()
        self.name = name
        if isinstance(model, str | Path):
            model, normalize = _load_hf(str(model), normalize)
        self.model = model.eval()
        cfg = model.config
        self.num_layers = int(cfg.num_hidden_layers)
        self.dim_ = int(cfg.hidden_size)
        self.normalize = True if normalize is None else normalize
        self.batchable = getattr(cfg, "feat_extract_norm", "layer") != "group"
        self._kernels = list(cfg.conv_kernel)
        self._strides = list(cfg.conv_stride)

    @property
    def layer_range(self) -> range:
        return range(0, self.num_layers + 1)

    @property
    def dim(self) -> int:
        return self.dim_

    def num_frames(self, num_samples: int) -> int:
        n = num_samples
        for k, s in zip(self._kernels, self._strides, strict=True):
            n = (n - k) // s + 1 if n >= k else 0
        return max(n, 0)

    def to(self, device: torch.device | str) -> HFEncoder:
        self.model.to(device)
        return self

    def _encoder_layers(self) -> Any:
        enc = self.model.encoder
        return enc.layers

    @torch.no_grad()
    def layer_features(
        self,
        wavs: Sequence[torch.Tensor],
        layers: Sequence[int],
        *,
        before_residual: bool = True,
        precision: str = "fp32",
    ) -> dict[int, torch.Tensor]:
        """Raw waveforms (each ``[samples]``) -> ``{layer: [batch, frames, dim]}`` zero-padded
        (float32; ``before_residual`` and ``precision`` do not apply)."""
        bad = [layer for layer in layers if layer not in self.layer_range]
        if not layers or bad:
            raise ConfigError(
                f"{self.name}: layers must be in 0..{self.num_layers}, got {list(layers)}"
            )
        wanted = sorted(set(layers))
        device = next(self.model.parameters()).device
        if self.normalize:
            wavs = [standardize(w.float()) for w in wavs]
        x, lengths = pad_waveforms(wavs, device)
        padded = bool((lengths < x.shape[1]).any())
        valid = torch.arange(x.shape[1], device=device)[None, :] < lengths[:, None]
        mask = valid.long() if padded else None
        captured: dict[int, torch.Tensor] = {}
        top = max(wanted)
        hooks = []
        if 0 in wanted:
            # the input of the first Transformer layer
            def pre_hook(_mod: Any, args: tuple, kwargs: dict) -> None:
                hs = args[0] if args else kwargs["hidden_states"]
                captured[0] = hs
                if top == 0:
                    raise _StopForward

            hooks.append(
                self._encoder_layers()[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
            )
        for layer in wanted:
            if layer == 0:
                continue

            def hook(_mod: Any, _inp: Any, out: Any, layer: int = layer) -> None:
                captured[layer] = out[0] if isinstance(out, tuple | list) else out
                if layer == top:
                    raise _StopForward

            hooks.append(self._encoder_layers()[layer - 1].register_forward_hook(hook))
        try:
            self.model(x, attention_mask=mask)
        except _StopForward:
            pass
        finally:
            for h in hooks:
                h.remove()
        return {layer: captured[layer].float() for layer in wanted}


def _load_hf(name: str, normalize: bool | None) -> tuple[Any, bool | None]:
    """Load a model (and its preprocessor's ``do_normalize``) from a folder or hub name."""
    transformers = _require_transformers()
    try:
        model = transformers.AutoModel.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load HuggingFace model {name!r}: {exc}") from exc
    if normalize is None:
        try:
            fe = transformers.AutoFeatureExtractor.from_pretrained(name)
            normalize = bool(getattr(fe, "do_normalize", True))
        except (OSError, ValueError):
            normalize = None
    return model, normalize


def _cmvn(x: torch.Tensor) -> torch.Tensor:
    """Per-dimension mean and variance normalisation over frames ``[T, D]`` (population std)."""
    mean = x.mean(0, keepdim=True)
    std = x.std(0, unbiased=False, keepdim=True) if x.shape[0] > 1 else torch.ones_like(mean)
    return (x - mean) / std.clamp_min(1e-5)


def parse_baseline(
    spec: str, layers: list[int] | None, *, hop_ms: int = 20, cmvn: bool = False
) -> Any:
    """``mfcc`` | ``logmel`` | ``hf:<path-or-name>`` -> a frame encoder (``layers``: the layers
    asked, checked against what the baseline has)."""
    if spec in ("mfcc", "logmel"):
        if layers not in (None, [], [0]):
            raise ConfigError(f"--layers does not apply to the {spec} baseline")
        return SpectralFeatures(kind=spec, hop_ms=hop_ms, cmvn=cmvn)
    if cmvn:
        raise ConfigError("--cmvn applies to the mfcc and logmel baselines only")
    if spec.startswith("hf:"):
        name = spec[3:]
        if not name:
            raise ConfigError("write the HuggingFace model as hf:<folder-or-hub-name>")
        if not layers:
            raise ConfigError(f"{spec}: give the layers to extract with --layers")
        hf = HFEncoder(name, name=spec)
        bad = [layer for layer in layers if layer not in hf.layer_range]
        if bad:
            raise ConfigError(f"{spec}: layers must be in 0..{hf.num_layers}, got {layers}")
        return hf
    raise ConfigError(f"unknown baseline {spec!r}; use mfcc, logmel or hf:<path-or-name>")
