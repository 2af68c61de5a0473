"""Realistic voices and recording conditions: draws, signal chain, a realistic tiny corpus."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from spidrkit.errors import ConfigError
from spidrkit.synth.conditions import (
    CLEAN,
    REALISTIC,
    Recording,
    UtteranceDraw,
    apply_recording,
    channel_response,
    coloured_noise,
    draw_recording,
    draw_utterance,
    room_impulse_response,
)
from spidrkit.synth.speakers import make_speakers


def _tone_speech(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = np.zeros(n)
    x[2000:14000] = np.sin(2 * np.pi * 220 * t[2000:14000]) * 3000 + rng.normal(0, 300, 12000)
    return x


def test_clean_draws_are_neutral():
    assert draw_recording(CLEAN, "0/s00") == Recording()
    assert draw_utterance(CLEAN, "k") == UtteranceDraw()
    assert make_speakers(6, 2, 2, seed=0) == make_speakers(6, 2, 2, seed=0, conditions=CLEAN)


def test_realistic_draws_are_seeded_and_in_range():
    a = [draw_recording(REALISTIC, f"0/s{i:02d}") for i in range(40)]
    assert a == [draw_recording(REALISTIC, f"0/s{i:02d}") for i in range(40)]
    assert a != [draw_recording(REALISTIC, f"1/s{i:02d}") for i in range(40)]
    lo, hi = REALISTIC.formant_scale
    assert all(lo <= r.formant_scale <= hi for r in a)
    assert any(r.rt60 == 0 for r in a) and any(r.rt60 > 0 for r in a)  # dry and roomy speakers
    assert all(r.rt60 == 0 or REALISTIC.rt60[0] <= r.rt60 <= REALISTIC.rt60[1] for r in a)
    snrs = [draw_utterance(REALISTIC, f"u{i}").snr_db for i in range(200)]
    finite = [s for s in snrs if np.isfinite(s)]
    assert 0.6 < len(finite) / len(snrs) <= 1.0
    assert all(REALISTIC.snr_db[0] <= s <= REALISTIC.snr_db[1] for s in finite)
    # a recording survives corpus.json
    assert Recording.from_dict(json.loads(json.dumps(a[3].to_dict()))) == a[3]


def test_speakers_get_scaled_formants_in_voice_file():
    spk = make_speakers(6, 2, 2, seed=0, conditions=REALISTIC)
    neutral = make_speakers(6, 2, 2, seed=0)
    for s, n in zip(spk, neutral, strict=True):
        assert (s.timbre, s.split) == (n.timbre, n.split)
        f0 = [line for line in s.voice_file_text().splitlines() if line.startswith("formant 1 ")]
        n0 = [line for line in n.voice_file_text().splitlines() if line.startswith("formant 1 ")]
        got, base = int(f0[0].split()[2]), int(n0[0].split()[2])
        assert got == round(base * s.recording.formant_scale * s.recording.formant_factors[1][0])


def test_room_response_keeps_time_and_drr():
    rec = Recording(rt60=0.5, drr_db=3.0, room_seed=7)
    h = room_impulse_response(rec)
    assert h[0] == 1.0 and np.argmax(np.abs(h)) == 0  # direct path at lag 0: alignments hold
    drr = 10 * np.log10(1.0 / np.sum(h[1:] ** 2))
    assert drr == pytest.approx(3.0, abs=0.01)
    assert len(h) == int(0.5 * 16000)


def test_channel_response_shapes():
    rec = Recording(highpass_hz=200.0, lowpass_hz=3400.0)
    mag = channel_response(rec, 16000)
    f = np.fft.rfftfreq(16000, 1 / 16000)
    assert mag[np.argmin(np.abs(f - 1000))] == pytest.approx(1.0, abs=0.01)
    assert mag[np.argmin(np.abs(f - 50))] < 0.1  # high-passed
    assert mag[np.argmin(np.abs(f - 7000))] < 0.01  # band-limited (8th order)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_slope(exponent):
    x = coloured_noise(1 << 15, exponent, np.random.default_rng(0))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    low, high = p[(f > 200) & (f < 400)].mean(), p[(f > 3200) & (f < 6400)].mean()
    slope = np.log10(low / high) / np.log10(3200 / 200)  # ~exponent
    assert slope == pytest.approx(exponent, abs=0.35)


def test_apply_recording_snr_level_and_determinism():
    dry = _tone_speech()
    speech = slice(2000, 14000)
    utt = UtteranceDraw(noise="colour", snr_db=10.0, colour=1.0, level_dbfs=-20.0)
    rec = Recording()
    out = apply_recording(dry, speech, rec, utt, "k", drift_db=0.0)
    assert np.array_equal(out, apply_recording(dry, speech, rec, utt, "k", drift_db=0.0))
    level = 20 * np.log10(np.sqrt(np.mean(out[speech] ** 2)) / 32768)
    assert level == pytest.approx(-20.0, abs=0.01)
    scale = np.sqrt(np.mean(out[speech] ** 2)) / np.sqrt(np.mean(dry[speech] ** 2))
    noise = out - dry * scale  # flat channel: the rest is the noise
    snr = 10 * np.log10(np.mean((dry[speech] * scale) ** 2) / np.mean(noise[speech] ** 2))
    assert snr == pytest.approx(10.0, abs=0.6)


def test_conditions_validate():
    with pytest.raises(ConfigError, match="rt60"):
        replace(REALISTIC, rt60=(0.5, 0.1)).validate()
    with pytest.raises(ConfigError, match="noise_prob"):
        replace(REALISTIC, noise_prob=1.5).validate()
    REALISTIC.validate()


@pytest.fixture(scope="module")
def realistic_tiny(tmp_path_factory):
    from spidrkit.synth import make_corpus

    out = tmp_path_factory.mktemp("realistic") / "corpus"
    make_corpus(out, preset="tiny", seed=0, conditions="realistic", workers=2, show_progress=False)
    return out


def test_realistic_corpus_has_aligned_clean_view(realistic_tiny):
    from spidrkit.data.manifest import read_manifest
    from spidrkit.synth import check_corpus

    assert check_corpus(realistic_tiny).ok
    info = json.loads((realistic_tiny / "corpus.json").read_text())
    assert info["conditions"]["name"] == "realistic"
    assert info["speakers"][0]["recording"]["formant_scale"] != 1.0
    train = read_manifest(realistic_tiny / "train" / "manifest.csv")
    clean = read_manifest(realistic_tiny / "train" / "clean_manifest.csv")
    assert list(train.fileids) == list(clean.fileids)
    assert list(train.num_samples) == list(clean.num_samples)
    for i in range(3):
        noisy, _ = sf.read(train.path(i))
        dry, _ = sf.read(clean.path(i))
        assert len(noisy) == len(dry)
        assert not np.allclose(noisy, dry)
    # held-out splits have no clean view (it is a training aid only)
    assert not (realistic_tiny / "dev" / "clean_manifest.csv").exists()


def test_realistic_corpus_is_deterministic(realistic_tiny, tmp_path):
    from spidrkit.synth import make_corpus

    again = tmp_path / "again"
    make_corpus(
        again, preset="tiny", seed=0, conditions="realistic", workers=1, show_progress=False
    )
    a = (realistic_tiny / "SHA256SUMS").read_text()
    b = (again / "SHA256SUMS").read_text()
    assert a == b
