"""Feature extraction harness: inputs, batching, sharding, padding parity, layout, resume, CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.api import Encoder
from spidrkit.cli.main import main
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import save_model
from spidrkit.models.inference import plan_batches
from spidrkit.units.extract import (
    AudioItem,
    extract_features,
    list_audio,
    load_waveform,
    run_corpus,
    shard,
)
from spidrkit.units.files import feature_path, load_features

sf = pytest.importorskip("soundfile")


LENGTHS = [16000, 11200, 8000, 12345, 300]  # the last one is shorter than one frame


def write_corpus(root: Path, lengths=LENGTHS) -> Path:
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        path = root / f"spk{i % 2}" / f"utt{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(n) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t) + 0.05 * rng.standard_normal(n)
        sf.write(path, wav.astype(np.float32), 16000)
    return root


def tiny(model_type: str = "spidr", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(model_type, PRESETS[f"{model_type}_tiny"].config).eval()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "wavs")


def test_list_audio_folder_and_manifest(corpus: Path, tmp_path: Path) -> None:
    items = list_audio(corpus)
    assert [it.fileid for it in items] == [f"spk{i % 2}/utt{i}" for i in (0, 2, 4, 1, 3)]
    assert {it.fileid: it.num_samples for it in items}["spk1/utt3"] == 12345
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fileid", "path", "num_samples"])
        for it in items:
            w.writerow([it.fileid, Path(it.path).relative_to(tmp_path), it.num_samples])
    again = list_audio(manifest)
    assert [(i.fileid, i.num_samples) for i in again] == [(i.fileid, i.num_samples) for i in items]
    assert torch.equal(load_waveform(again[1]), load_waveform(items[1]))


def test_batches_respect_caps() -> None:
    lengths = [900, 800, 800, 500, 400, 100]
    batches = plan_batches(lengths, max_samples=2000, max_items=3)
    assert [[lengths[i] for i in b] for b in batches] == [[900, 800], [800, 500], [400, 100]]
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 2000
    strict = plan_batches(lengths, max_samples=10_000, max_items=10, equal_lengths=True)
    assert [[lengths[i] for i in b] for b in strict] == [[900], [800, 800], [500], [400], [100]]
    assert plan_batches(lengths[:1], max_samples=10, max_items=4) == [[0]]  # oversized alone


def test_corpus_stream_is_length_sorted_and_batched_by_the_encoder_caps(corpus: Path) -> None:
    seen: list[float] = []
    enc = Encoder(tiny(), max_batch_samples=20000, max_batch_items=2)
    out = list(run_corpus(enc, list_audio(corpus), layers=[1], on_batch=seen.append))
    assert [it.num_samples for it, _ in out] == sorted(LENGTHS, reverse=True)
    assert seen == pytest.approx([16000 / 16000, 12345 / 16000, 11200 / 16000, 8300 / 16000])
    assert out[-1][1][1].shape == (0, 64)  # shorter than one frame: empty, not an error


def test_shard_takes_every_world_th_of_length_sorted_list() -> None:
    items = [AudioItem(f"f{i}", "", n) for i, n in enumerate([5, 9, 1, 7, 3, 8, 2])]
    parts = [shard(items, r, 3) for r in range(3)]
    ordered = sorted(items, key=lambda it: -it.num_samples)
    assert parts[1] == ordered[1::3]
    assert sorted(it.fileid for p in parts for it in p) == sorted(it.fileid for it in items)


@pytest.mark.parametrize("model_type", ["spidr", "dinosr"])
@pytest.mark.parametrize("before_residual", [True, False])
def test_padded_batch_gives_each_item_what_it_gives_alone(
    corpus: Path, model_type: str, before_residual: bool
) -> None:
    enc = Encoder(tiny(model_type))
    items = [it for it in list_audio(corpus) if it.num_samples > 400]  # one frame at least
    wavs = [load_waveform(it) for it in items]
    batched = enc.features(wavs, layers=[1, 3], before_residual=before_residual)
    for feats, wav in zip(batched, wavs, strict=True):
        (alone,) = enc.features(wav, layers=[1, 3], before_residual=before_residual)
        for layer in (1, 3):
            assert feats[layer].shape == (enc.frames(wav.shape[0]), 64)
            torch.testing.assert_close(feats[layer], alone[layer], atol=2e-5, rtol=1e-4)


def test_only_layers_up_to_the_highest_are_computed() -> None:
    model = tiny()
    calls: list[int] = []
    for i, layer in enumerate(model.student.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
    Encoder(model).features(torch.randn(4000), layers=[2])
    assert calls == [0, 1]


def test_extract_layout_formats_and_values(corpus: Path, tmp_path: Path) -> None:
    model = tiny()
    items = list_audio(corpus)
    out = tmp_path / "one"
    stats = extract_features(Encoder(model), items, out, layers=[3], show_progress=False)
    assert stats.num_files == 5 and stats.audio_seconds == pytest.approx(sum(LENGTHS) / 16000)
    for it in items:
        feats = load_features(out / f"{it.fileid}.pt")
        assert (
            feats.shape == (model.num_frames(it.num_samples), 64) and feats.dtype == torch.float32
        )
    assert load_features(out / "spk0/utt4.pt").shape == (0, 64)
    multi = tmp_path / "multi"
    extract_features(
        Encoder(model),
        items,
        multi,
        layers=[1, 3],
        fmt="npy",
        dtype=torch.float16,
        show_progress=False,
    )
    arr = np.load(multi / "layer3" / "spk1" / "utt1.npy")
    assert arr.dtype == np.float16 and (multi / "layer1" / "spk0" / "utt0.npy").exists()
    ref = load_features(out / "spk1/utt1.pt")
    np.testing.assert_allclose(arr.astype(np.float32), ref.numpy(), atol=2e-2, rtol=1e-2)


def test_extract_resumes_and_ignores_partial_files(corpus: Path, tmp_path: Path) -> None:
    src = Encoder(tiny())
    items = list_audio(corpus)
    out = tmp_path / "f"
    extract_features(src, items, out, layers=[2], show_progress=False)
    done = feature_path(out, "spk0/utt0", None, "pt")
    before = done.stat().st_mtime_ns
    missing = feature_path(out, "spk1/utt1", None, "pt")
    missing.unlink()
    (missing.parent / ".utt1.pt.abc.tmp").write_bytes(b"half")  # what a killed write leaves
    stats = extract_features(src, items, out, layers=[2], show_progress=False)
    assert (stats.num_files, stats.num_skipped) == (1, 4)
    assert done.stat().st_mtime_ns == before and missing.exists()
    assert load_features(missing).shape[0] == src.frames(11200)


def test_extract_shards_cover_the_corpus_once(corpus: Path, tmp_path: Path) -> None:
    src = Encoder(tiny())
    items = list_audio(corpus)
    counts = [
        extract_features(
            src, items, tmp_path / "s", layers=[2], rank=r, world=2, show_progress=False
        ).num_files
        for r in range(2)
    ]
    assert counts == [3, 2]
    assert len(list((tmp_path / "s").rglob("*.pt"))) == 5


def test_cli_extract_checkpoint_and_help(corpus: Path, tmp_path: Path, capsys) -> None:
    model = tiny()
    ckpt = save_model(model, tmp_path / "ckpt.pt")
    out = tmp_path / "cli"
    assert (
        main(
            [
                "extract",
                str(corpus),
                "--model",
                str(ckpt),
                "--layers",
                "4",
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
                "--batch-seconds",
                "1.5",
            ]
        )
        == 0
    )
    item = next(it for it in list_audio(corpus) if it.fileid == "spk0/utt2")
    (expect,) = Encoder(model).features(load_waveform(item), layers=[4])
    torch.testing.assert_close(load_features(out / "spk0/utt2.pt"), expect[4], atol=2e-5, rtol=1e-4)
    assert main(["extract", str(corpus), "--model", str(ckpt), "--out", str(out)]) == 2
    assert "--layers" in capsys.readouterr().err
    for cmd in ("extract", "kmeans", "units"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert f"spidrkit {cmd}" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_two_processes_split_the_corpus(corpus: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    ckpt = save_model(tiny(), tmp_path / "ckpt.pt")
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "tr"
    cmd = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "-m",
        "spidrkit.cli.main",
        "extract",
        str(corpus),
        "--model",
        str(ckpt),
        "--layers",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "rank 0/2: 3 files written" in res.stderr and "rank 1/2: 2 files written" in res.stderr
    assert len(list(out.rglob("*.pt"))) == 5
