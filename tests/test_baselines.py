"""Baselines: own MFCC / log-mel, and HuggingFace HuBERT, wav2vec 2.0, WavLM (tiny random models)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.api import Encoder
from spidrkit.cli.main import main
from spidrkit.errors import ConfigError
from spidrkit.models import num_frames
from spidrkit.units.baselines import (
    SpectralFeatures,
    dct_matrix,
    deltas,
    hz_to_mel,
    mel_filterbank,
    parse_baseline,
)
from spidrkit.units.extract import list_audio, load_waveform
from spidrkit.units.files import load_features

sf = pytest.importorskip("soundfile")


def test_mel_filterbank_shape_and_peaks() -> None:
    fb = mel_filterbank(40)
    assert fb.shape == (257, 40) and (fb >= 0).all()
    assert (fb.max(0).values > 0.5).all()  # every filter covers at least one FFT bin
    peaks = fb.argmax(0)
    assert (peaks[1:] >= peaks[:-1]).all()  # ordered by frequency
    # filter centres evenly spaced in mel
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, rel=2e-3)


def test_dct_is_orthonormal() -> None:
    d = dct_matrix(20, 20)
    torch.testing.assert_close(d.T @ d, torch.eye(20), atol=1e-5, rtol=0)


def test_deltas_of_a_ramp_are_its_slope() -> None:
    x = torch.arange(10.0)[:, None] * torch.tensor([[2.0, -1.0]])
    d = deltas(x)
    torch.testing.assert_close(d[2:-2], torch.tensor([[2.0, -1.0]]).expand(6, 2))
    assert deltas(torch.zeros(0, 3)).shape == (0, 3)


@pytest.mark.parametrize("n", [399, 400, 16000, 12345])
def test_frame_counts_match_the_encoder_at_20ms(n: int) -> None:
    mf = SpectralFeatures("mfcc", hop_ms=20)
    assert mf.num_frames(n) == num_frames(n)
    assert mf.single(torch.randn(n)).shape == (num_frames(n), 39)
    lm10 = SpectralFeatures("logmel", hop_ms=10)
    assert lm10.single(torch.randn(n)).shape == (0 if n < 400 else (n - 400) // 160 + 1, 80)


def test_logmel_of_a_tone_peaks_at_its_frequency() -> None:
    lm = SpectralFeatures("logmel")
    t = torch.arange(16000) / 16000
    feats = lm.single(torch.sin(2 * math.pi * 1000 * t))
    fb = mel_filterbank(80)
    expected = int(fb[round(1000 / 8000 * 256)].argmax())
    assert (feats.argmax(1) == expected).float().mean() > 0.9
    mf = SpectralFeatures("mfcc", with_deltas=False)
    dct = dct_matrix(40, 13)
    logmel40 = SpectralFeatures("logmel", n_mels=40).single(t)
    torch.testing.assert_close(mf.single(t), logmel40 @ dct)


def test_spectral_batch_equals_single_and_errors() -> None:
    mf = SpectralFeatures("mfcc")
    wavs = [torch.randn(16000), torch.randn(5000)]
    out = mf.layer_features(wavs)[0]
    torch.testing.assert_close(out[1, : mf.num_frames(5000)], mf.single(wavs[1]))
    with pytest.raises(ConfigError):
        SpectralFeatures("plp")
    with pytest.raises(ConfigError):
        parse_baseline("mfcc", [6])
    with pytest.raises(ConfigError, match="unknown baseline"):
        parse_baseline("cpc", None)


def test_cli_extract_mfcc_same_layout(tmp_path: Path) -> None:
    wav = tmp_path / "wavs" / "a" / "x.flac"
    wav.parent.mkdir(parents=True)
    sf.write(wav, np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1, 16000)
    out = tmp_path / "mfcc"
    assert (
        main(
            [
                "extract",
                str(tmp_path / "wavs"),
                "--baseline",
                "mfcc",
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert load_features(out / "a" / "x.pt").shape == (num_frames(12000), 39)
    assert (
        main(
            [
                "extract",
                str(tmp_path / "wavs"),
                "--baseline",
                "logmel",
                "--hop-ms",
                "10",
                "--out",
                str(tmp_path / "lm"),
                "--format",
                "npy",
                "--no-progress",
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "lm" / "a" / "x.npy").shape == ((12000 - 400) // 160 + 1, 80)


# -- HuggingFace -----------------------------------------------------------------------------------

SMALL = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def hf_model(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "hubert":  # group-norm feature extractor, post-LN (as hubert-base)
        return transformers.HubertModel(transformers.HubertConfig(**SMALL))
    if kind == "wav2vec2":  # layer-norm extractor, pre-LN (as wav2vec2-large-lv60)
        cfg = transformers.Wav2Vec2Config(
            **SMALL, feat_extract_norm="layer", do_stable_layer_norm=True
        )
        return transformers.Wav2Vec2Model(cfg)
    return transformers.WavLMModel(transformers.WavLMConfig(**SMALL, feat_extract_norm="layer"))


@pytest.mark.hf
@pytest.mark.parametrize("kind", ["hubert", "wav2vec2", "wavlm"])
def test_hf_layers_match_hidden_states_and_padding(kind: str) -> None:
    from spidrkit.units.baselines import HFEncoder

    model = hf_model(kind).eval()
    enc = HFEncoder(model, normalize=True)
    assert enc.batchable == (kind != "hubert")
    wavs = [torch.randn(8000), torch.randn(5000)]
    from spidrkit.audio import standardize

    with torch.no_grad():
        hs = model(standardize(wavs[0])[None], output_hidden_states=True).hidden_states
    out = enc.layer_features(wavs[:1], [0, 2])
    torch.testing.assert_close(out[2][0], hs[2][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[0][0], hs[0][0], atol=1e-5, rtol=1e-4)
    assert out[2].shape[1] == enc.num_frames(8000) == num_frames(8000)
    # the hook stops the forward after layer 2: layer 3 never runs
    calls = []
    model.encoder.layers[2].register_forward_hook(lambda *_: calls.append(1))
    enc.layer_features(wavs[:1], [0, 2])
    assert calls == []
    if enc.batchable:
        batched = enc.layer_features(wavs, [0, 2])
        alone = enc.layer_features(wavs[1:], [0, 2])
        t = enc.num_frames(5000)
        torch.testing.assert_close(batched[2][1, :t], alone[2][0, :t], atol=2e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="0..3"):
        enc.layer_features(wavs, [4])
    with pytest.raises(ConfigError, match="0..3"):
        Encoder(enc).features(wavs, layers=[4])


@pytest.mark.hf
def test_cli_extract_hf_from_folder(tmp_path: Path) -> None:
    model = hf_model("hubert")
    model.save_pretrained(tmp_path / "hubert")
    rng = np.random.default_rng(0)
    for i, n in enumerate([8000, 6000, 6000]):
        p = tmp_path / "wavs" / f"u{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    out = tmp_path / "feats"
    assert (
        main(
            [
                "extract",
                str(tmp_path / "wavs"),
                "--baseline",
                f"hf:{tmp_path / 'hubert'}",
                "--layers",
                "1",
                "3",
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    from spidrkit.units.baselines import HFEncoder

    enc = Encoder(HFEncoder(str(tmp_path / "hubert")))
    for it in list_audio(tmp_path / "wavs"):
        (ref,) = enc.features(load_waveform(it), layers=[1, 3])
        torch.testing.assert_close(load_features(out / "layer3" / f"{it.fileid}.pt"), ref[3])
        assert load_features(out / "layer1" / f"{it.fileid}.pt").shape == (
            num_frames(it.num_samples),
            32,
        )
