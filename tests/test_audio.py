"""Audio input: decoding, downmix, resampling, standardisation and the errors of bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from spidrkit.audio import (  # noqa: E402
    audio_info,
    load_audio,
    resample,
    resampled_length,
    standardize,
)
from spidrkit.errors import AudioError  # noqa: E402


def _tone(n: int, sr: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / sr
    wav = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels == 1:
        return wav
    return np.stack([wav * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
def test_load_16k_formats(tmp_path, fmt):
    if fmt.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile has no {fmt}")
    wav = _tone(16000, 16000)
    path = tmp_path / f"a.{fmt}"
    sf.write(path, wav, 16000)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1 and len(out) == 16000
    tol = 0.05 if fmt in ("ogg", "mp3") else 1e-3  # vorbis and mp3 are lossy
    assert np.abs(out - wav).max() < tol


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    sr, n = 44100, 44100 + 37
    wav = _tone(n, sr, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, wav, sr)
    info = audio_info(path)
    assert (info.frames, info.sample_rate, info.channels) == (n, sr, 2)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == resampled_length(n, sr) == info.num_samples() == round(n * 16000 / sr)
    # downmix = mean of channels (0.5 and 1.0 scaled copies -> 0.75 amplitude), same tone at 16 kHz
    ref = 0.75 * _tone(len(out), 16000)
    assert np.abs(out[200:-200] - ref[200:-200]).max() < 0.02


def test_resampled_length_matches_soxr():
    rng = np.random.default_rng(0)
    for sr in (8000, 11025, 22050, 24000, 32000, 44100, 48000):
        for n in rng.integers(1, 50000, size=5).tolist() + [1, 2, 3]:
            assert len(resample(np.zeros(n, np.float32), sr)) == resampled_length(n, sr)
    assert resampled_length(1001, 32000) == 501  # round half up, like soxr


def test_load_from_bytes_and_memoryview(tmp_path):
    wav = _tone(8000, 16000)
    buf = io.BytesIO()
    sf.write(buf, wav, 16000, format="FLAC")
    data = buf.getvalue()
    a = load_audio(data)
    b = load_audio(memoryview(data), name="x.tar:a.flac")
    np.testing.assert_array_equal(a, b)
    assert len(a) == 8000


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        load_audio(path)


def test_zero_frame_file(tmp_path):
    path = tmp_path / "noframes.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"noframes\.wav: contains no audio samples"):
        load_audio(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00this is not audio at all" * 10)
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot decode"):
        load_audio(path)
    with pytest.raises(AudioError, match=r"in-memory: cannot decode"):
        load_audio(b"garbage bytes", name="in-memory")


def test_wrong_rate_without_resampling(tmp_path):
    path = tmp_path / "a8k.wav"
    sf.write(path, _tone(800, 8000), 8000)
    with pytest.raises(AudioError, match=r"a8k\.wav: sample rate is 8000 Hz, expected 16000"):
        load_audio(path, allow_resample=False)
    assert len(load_audio(path)) == 1600
    assert len(load_audio(path, target_sr=None)) == 800


def test_standardize_is_layer_norm():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5000) * 3 + 2).astype(np.float32)
    y = standardize(x)
    assert y.dtype == np.float32
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-4
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (5000,), eps=1e-5).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)
    t = standardize(torch.from_numpy(np.stack([x, 2 * x])))
    assert isinstance(t, torch.Tensor) and t.shape == (2, 5000)
    np.testing.assert_allclose(t[1].numpy(), ref, atol=1e-4)
    # a constant signal stays finite (eps)
    assert np.all(standardize(np.ones(100, np.float32)) == 0)
