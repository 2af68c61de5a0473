"""Decode, downmix, resample and standardise audio: the one input path of every spidrkit stage.

``load_audio(source)`` returns a mono float32 waveform ``[samples]`` at 16 kHz (not standardised);
``standardize(wav)`` then gives the model input (zero mean, unit variance over the whole utterance:
a layer norm without affine, eps 1e-5; docs/models.md, "The architecture"). ``source`` is a path, or the bytes of an encoded
file (``bytes``, ``memoryview`` of an mmap'ed tar archive, or a binary file object).

Decoding uses soundfile (libsndfile: wav, flac, ogg/vorbis, opus, and mp3 when libsndfile >= 1.1),
resampling uses soxr (quality "HQ"). Both come with the ``audio`` extra. Every failure is an
:class:`~spidrkit.errors.AudioError` whose message names the file and the problem.

Length after resampling: soxr returns ``floor(frames * target_sr / sr + 0.5)`` samples (round half up);
:func:`resampled_length` computes the same number without decoding, and manifests store it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from spidrkit.errors import AudioError

SAMPLE_RATE = 16000
"""Sample rate of every model input (Hz)."""

STANDARDIZE_EPS = 1e-5
"""eps of the per-utterance standardisation (docs/data.md, "Audio")."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
"""Audio file extensions spidrkit reads (folder scans, task folders, ABX audio, name matching)."""

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one audio file (no decoding).

    frames: samples per channel at the file's own rate; sample_rate: Hz; channels; format: e.g. "WAV".
    """

    frames: int
    sample_rate: int
    channels: int
    format: str

    def num_samples(self, target_sr: int = SAMPLE_RATE) -> int:
        """Samples after resampling to ``target_sr`` (what :func:`load_audio` returns)."""
        return resampled_length(self.frames, self.sample_rate, target_sr)


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError:  # pragma: no cover - depends on the environment
        raise AudioError("reading audio needs soundfile: pip install 'spidrkit[audio]'") from None
    return soundfile


def _soxr() -> Any:
    try:
        import soxr
    except ImportError:  # pragma: no cover - depends on the environment
        raise AudioError("resampling audio needs soxr: pip install 'spidrkit[audio]'") from None
    return soxr


def resampled_length(frames: int, sr: int, target_sr: int = SAMPLE_RATE) -> int:
    """Length of ``frames`` samples at ``sr`` after resampling to ``target_sr`` (round half up).

    Matches soxr's output length exactly; equals ``frames`` when ``sr == target_sr``.
    """
    if sr == target_sr:
        return int(frames)
    return (2 * int(frames) * target_sr + sr) // (2 * sr)


def _describe(source: AudioSource, name: str | None) -> str:
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "<audio bytes>"


def _open(source: AudioSource, label: str) -> Any:
    """An open ``soundfile.SoundFile`` for ``source``; AudioError for missing/empty/corrupt input."""
    sf = _soundfile()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{label}: file not found")
        if path.is_dir():
            raise AudioError(f"{label}: is a directory, expected an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: empty file (0 bytes); re-create or remove it")
        target: Any = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(f"{label}: empty file (0 bytes); re-create or remove it")
        target = io.BytesIO(source)
    else:
        target = source
    try:
        f = sf.SoundFile(target)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(
            f"{label}: cannot decode ({exc}); the file is corrupt or not in a format "
            "libsndfile reads (wav, flac, ogg, mp3)"
        ) from None
    problem = _header_problem(int(f.samplerate), int(f.channels), int(f.frames))
    if problem is not None:
        f.close()
        raise AudioError(f"{label}: {problem}")
    return f


MIN_RATE, MAX_RATE = 1000, 768_000
"""Sample rates accepted in a header (a 2 Hz header would resample into 8000x more samples)."""
MAX_CHANNELS = 64
MAX_SECONDS = 24 * 3600
"""Longest accepted file: every size derived from a header is bounded before allocating."""


def _header_problem(sr: int, channels: int, frames: int) -> str | None:
    if not MIN_RATE <= sr <= MAX_RATE:
        return f"header says {sr} Hz, outside [{MIN_RATE}, {MAX_RATE}] Hz: corrupt or not audio"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"header says {channels} channels, outside [1, {MAX_CHANNELS}]: corrupt or not audio"
    if frames < 0 or frames > MAX_SECONDS * sr:
        return (
            f"header says {frames} frames ({frames / sr / 3600:.1f} h), over the "
            f"{MAX_SECONDS // 3600} h that spidrkit reads from one file: corrupt, or cut it first"
        )
    return None


def audio_info(source: AudioSource, *, name: str | None = None) -> AudioInfo:
    """Read only the header of ``source``: frames, sample rate, channels, format."""
    label = _describe(source, name)
    with _open(source, label) as f:
        return AudioInfo(int(f.frames), int(f.samplerate), int(f.channels), str(f.format))


def resample(wav: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``wav`` ([samples] or [samples, channels]) from ``sr`` to ``target_sr`` with soxr.

    Returns float32 with ``resampled_length(len(wav), sr, target_sr)`` samples; a no-op copy-free
    return when the rates are equal.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if sr == target_sr:
        return wav
    if sr <= 0 or target_sr <= 0:
        raise AudioError(f"cannot resample from {sr} Hz to {target_sr} Hz: rates must be positive")
    if wav.shape[0] == 0:
        return wav
    return np.ascontiguousarray(
        _soxr().resample(wav, sr, target_sr, quality="HQ"), dtype=np.float32
    )


def load_audio(
    source: AudioSource,
    *,
    target_sr: int | None = SAMPLE_RATE,
    name: str | None = None,
    allow_resample: bool = True,
) -> np.ndarray:
    """Decode ``source`` to a mono float32 waveform ``[samples]`` at ``target_sr``.

    Args:
        source: a path, the encoded bytes of a file (``bytes``/``memoryview``) or a binary file object.
        target_sr: output rate; ``None`` keeps the file's own rate.
        name: how errors name the input (default: the path, or "<audio bytes>").
        allow_resample: if False, a file whose rate is not ``target_sr`` is an error instead of being
            resampled.

    Channels are averaged (downmix). The result is NOT standardised: see :func:`standardize`.
    Raises AudioError for a missing, empty (0 bytes or 0 frames), corrupt or wrong-rate file.
    """
    label = _describe(source, name)
    sf = _soundfile()
    with _open(source, label) as f:
        sr = int(f.samplerate)
        if f.frames == 0:
            raise AudioError(f"{label}: contains no audio samples (0 frames)")
        if target_sr is not None and sr != target_sr and not allow_resample:
            raise AudioError(
                f"{label}: sample rate is {sr} Hz, expected {target_sr} Hz; convert it "
                f"(e.g. `sox in.wav -r {target_sr} out.wav`) or enable resampling"
            )
        try:
            data = f.read(dtype="float32", always_2d=True)  # [frames, channels]
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{label}: cannot decode ({exc}); the file is corrupt") from None
    if data.shape[0] == 0:
        raise AudioError(f"{label}: contains no decodable audio samples (truncated or corrupt)")
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{label}: contains NaN or infinite samples")
    if target_sr is not None and sr != target_sr:
        wav = resample(wav, sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def standardize(wav: Any, eps: float = STANDARDIZE_EPS) -> Any:
    """Zero mean, unit variance over the last axis: ``(x - mean) / sqrt(var + eps)``.

    The same as ``torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-5)`` (biased variance, no
    affine), as the model input requires (docs/models.md, "The architecture"). Accepts a numpy array or a torch tensor
    (``[samples]`` or ``[batch, samples]``) and returns the same kind, float32. For numpy the mean and
    variance are computed in float64.
    """
    if isinstance(wav, np.ndarray):
        if wav.shape[-1] == 0:
            return wav.astype(np.float32)
        x = wav.astype(np.float64)
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + eps)).astype(np.float32)
    import torch

    if isinstance(wav, torch.Tensor):
        t = wav.float()
        if t.shape[-1] == 0:
            return t
        return torch.nn.functional.layer_norm(t, t.shape[-1:], eps=eps)
    raise TypeError(
        f"standardize expects a numpy array or a torch tensor, got {type(wav).__name__}"
    )
