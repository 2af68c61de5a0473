"""Spectral features in plain torch: mel filterbank, DCT, deltas, batched MFCC frames.

Used by the MFCC / log-mel baselines (:mod:`spidrkit.units.baselines`) and by the MFCC warm-up
targets of small-scale pretraining (:class:`spidrkit.models.spidr.SpidR`, ``warmup_targets``).
Conventions (docs/units.md): Hann window, power spectrum, no centring ("snip edges"), HTK mel scale,
log with a 1e-6 floor, orthonormal DCT-II.
"""

from __future__ import annotations

import math

import torch

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import ConfigError

WIN_LENGTH = 400  # 25 ms
N_FFT = 512


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int,
    *,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 20.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale: ``[n_fft // 2 + 1, n_mels]`` float32.

    Filter j rises linearly from mel point j to j+1 and falls to j+2 (``n_mels + 2`` points evenly
    spaced in mel between ``f_min`` and ``f_max``, default Nyquist); peak value 1.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(f"mel filterbank needs 0 <= f_min < f_max <= {sample_rate / 2}")
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    m_pts = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2)
    f_pts = mel_to_hz(m_pts.double())
    lower, center, upper = f_pts[:-2], f_pts[1:-1], f_pts[2:]  # [n_mels]
    f = freqs[:, None]
    up = (f - lower) / (center - lower)
    down = (upper - f) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def dct_matrix(n_mels: int, n_ceps: int) -> torch.Tensor:
    """Orthonormal DCT-II basis ``[n_mels, n_ceps]`` (so ``ceps = logmel @ D``)."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_ceps, dtype=torch.float64)
    d = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :])
    d[:, 0] *= 1.0 / math.sqrt(2.0)
    return (d * math.sqrt(2.0 / n_mels)).float()


def deltas(x: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas over time of ``x`` ``[..., frames, dim]`` (edges replicated), HTK formula."""
    t = x.shape[-2]
    if t == 0:
        return x.clone()
    first, last = x[..., :1, :], x[..., -1:, :]
    padded = torch.cat(
        [
            first.expand(*x.shape[:-2], window, x.shape[-1]),
            x,
            last.expand(*x.shape[:-2], window, -1),
        ],
        dim=-2,
    )
    num = torch.zeros_like(x)
    for n in range(1, window + 1):
        num += n * (
            padded[..., window + n : window + n + t, :]
            - padded[..., window - n : window - n + t, :]
        )
    return num / (2 * sum(n * n for n in range(1, window + 1)))


class MFCCFrames(torch.nn.Module):
    """Batched MFCC (13 + deltas + second deltas = 39 dims) on an arbitrary frame grid.

    ``win`` and ``hop`` in samples; frames: ``floor((n - win) / hop) + 1`` as for a conv stack whose
    receptive field is ``win`` and total stride ``hop`` (400 / 320 for every SpidR extractor).
    No parameters and no state-dict entries (the constant matrices are non-persistent buffers).
    """

    dim = 39
    window: torch.Tensor
    fbank: torch.Tensor
    dct: torch.Tensor

    def __init__(self, win: int = WIN_LENGTH, hop: int = 320, n_mels: int = 40) -> None:
        super().__init__()
        self.win, self.hop = win, hop
        self.n_fft = max(N_FFT, 1 << (win - 1).bit_length())
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)
        fbank = mel_filterbank(n_mels, n_fft=self.n_fft)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("dct", dct_matrix(n_mels, 13), persistent=False)

    @torch.no_grad()
    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> ``[batch, frames, 39]`` float32."""
        wavs = wavs.float()
        if wavs.shape[-1] < self.win:
            return wavs.new_zeros(wavs.shape[0], 0, self.dim)
        frames = wavs.unfold(-1, self.win, self.hop) * self.window  # [B, T, win]
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)
        ceps = torch.log(power @ self.fbank + 1e-6) @ self.dct  # [B, T, 13]
        d1 = deltas(ceps)
        return torch.cat([ceps, d1, deltas(d1)], dim=-1)
