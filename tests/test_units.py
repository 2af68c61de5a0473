"""Units: dedup, JSONL files, codebook and k-means units, Tokenizer, CLI round trip audio -> JSONL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.api import Encoder
from spidrkit.audio import standardize
from spidrkit.cli.main import main
from spidrkit.errors import ConfigError, DataError
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import save_model
from spidrkit.models.inference import head_layers
from spidrkit.units import KMeans, KMeansConfig, Tokenizer, Units, fit_kmeans, read_units
from spidrkit.units.extract import list_audio, load_waveform
from spidrkit.units.files import dedup, expand, write_units

sf = pytest.importorskip("soundfile")


def tiny(model_type: str = "spidr", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(model_type, PRESETS[f"{model_type}_tiny"].config).eval()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for i, n in enumerate([16000, 9000, 12000, 7000]):
        path = tmp_path / "wavs" / f"s{i % 2}" / f"u{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.2 * rng.standard_normal(n)).astype(np.float32), 16000)
    return tmp_path / "wavs"


def test_dedup_and_expand() -> None:
    u, d = dedup(torch.tensor([3, 3, 1, 1, 1, 3, 2]))
    assert u.tolist() == [3, 1, 3, 2] and d.tolist() == [2, 3, 1, 1]
    assert expand(u.tolist(), d.tolist()) == [3, 3, 1, 1, 1, 3, 2]
    e, ed = dedup(torch.zeros(0, dtype=torch.long))
    assert e.numel() == 0 and ed.numel() == 0
    with pytest.raises(DataError):
        expand([1, 2], [1])


def test_units_jsonl_round_trip(tmp_path: Path) -> None:
    recs = [
        Units.from_frames("a.wav", torch.tensor([1, 1, 2]), True),
        Units.from_frames("b.wav", torch.tensor([4, 4]), False),
    ]
    assert write_units(recs, tmp_path / "u.jsonl", txt=tmp_path / "u.txt") == 2
    assert read_units(tmp_path / "u.jsonl") == recs
    assert (tmp_path / "u.txt").read_text() == "1 2\n4 4\n"
    assert '"durations"' not in (tmp_path / "u.jsonl").read_text().splitlines()[1]
    (tmp_path / "bad.jsonl").write_text('{"audio": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_units(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("model_type", ["spidr", "dinosr"])
def test_codebook_units_are_argmax_of_the_layer_head(model_type: str) -> None:
    model = tiny(model_type)
    assert head_layers(model) == [2, 3, 4]  # L=4, K=3: heads name layers L-K+1..L
    wavs = [torch.randn(16000), torch.randn(7000)]
    refs = [model.get_codebooks(standardize(w)[None]) for w in wavs]  # per wav, per head
    enc = Encoder(model)
    for k, layer in enumerate(head_layers(model)):
        out = enc.codebook_units(wavs, layers=[layer])
        for i in range(len(wavs)):
            assert torch.equal(out[i][layer], refs[i][k][0].argmax(-1))
    with pytest.raises(ConfigError, match="layers 2..4"):
        Tokenizer(model, 1)


def test_tokenizer_paths_waveforms_and_kmeans(corpus: Path) -> None:
    model = tiny()
    items = list_audio(corpus)
    paths = [it.path for it in items]
    tok = Tokenizer(model, layer=3)
    from_paths = tok(paths)
    from_wavs = tok([load_waveform(it) for it in items])
    assert all(torch.equal(a, b) for a, b in zip(from_paths, from_wavs, strict=True))
    frames = tok.frames(paths)
    for f, u, it in zip(frames, from_paths, items, strict=True):
        assert f.dtype == torch.long and f.shape == (model.num_frames(it.num_samples),)
        assert torch.equal(dedup(f)[0], u) and (u[1:] != u[:-1]).all()
    # k-means units: nearest centroid of the layer features
    enc = Encoder(model)
    feats = torch.cat([enc.features(load_waveform(it), layers=[3])[0][3] for it in items])
    km = fit_kmeans(feats, KMeansConfig(k=5, batch_size=64, max_epochs=3))
    ktok = Tokenizer(model, 3, kmeans=km, dedup=False)
    got = ktok([load_waveform(items[0])])[0]
    assert torch.equal(got, km.predict(enc.features(load_waveform(items[0]), layers=[3])[0][3]))
    # other sample rates are resampled to 16 kHz
    w8 = torch.randn(8000)
    assert tok.frames([w8], sample_rate=8000)[0].shape == (model.num_frames(16000),)


def test_round_trip_audio_to_units_jsonl(corpus: Path, tmp_path: Path) -> None:
    model = tiny()
    ckpt = save_model(model, tmp_path / "ckpt.pt")
    out, txt = tmp_path / "u.jsonl", tmp_path / "u.txt"
    assert (
        main(
            [
                "units",
                str(corpus),
                "--model",
                str(ckpt),
                "--layer",
                "4",
                "--out",
                str(out),
                "--txt",
                str(txt),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    recs = read_units(out)
    items = list_audio(corpus)
    assert [r.audio for r in recs] == [it.path for it in items]
    expect = Tokenizer(model, 4).units([it.path for it in items])
    assert recs == expect
    for r, it in zip(recs, items, strict=True):
        assert sum(r.durations) == model.num_frames(it.num_samples)
    lines = txt.read_text().splitlines()
    assert [list(map(int, line.split())) for line in lines] == [r.units for r in recs]


def test_cli_kmeans_units_from_audio_equal_units_from_features(corpus: Path, tmp_path: Path):
    ckpt = save_model(tiny(), tmp_path / "ckpt.pt")
    feats, km = tmp_path / "feats", tmp_path / "km.pt"
    common = ["--no-progress", "--device", "cpu"]
    assert (
        main(
            [
                "extract",
                str(corpus),
                "--model",
                str(ckpt),
                "--layers",
                "3",
                "--out",
                str(feats),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "kmeans",
                "--audio",
                str(corpus),
                "--model",
                str(ckpt),
                "--layer",
                "3",
                "-k",
                "6",
                "--batch-size",
                "50",
                "--out",
                str(km),
                *common,
            ]
        )
        == 0
    )
    assert KMeans.load(km).meta["layer"] == 3
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (
        main(
            [
                "units",
                str(corpus),
                "--model",
                str(ckpt),
                "--layer",
                "3",
                "--kmeans",
                str(km),
                "--name",
                "fileid",
                "--no-dedup",
                "--out",
                str(a),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "units",
                "--features",
                str(feats),
                "--kmeans",
                str(km),
                "--no-dedup",
                "--out",
                str(b),
                *common,
            ]
        )
        == 0
    )
    ua = {r.audio: r.units for r in read_units(a)}
    ub = {r.audio: r.units for r in read_units(b)}
    assert ua == ub and len(ua) == 4
    assert (
        main(["units", str(corpus), "--model", str(ckpt), "--layer", "1", "--out", str(a), *common])
        == 2
    )  # no codebook head on layer 1
