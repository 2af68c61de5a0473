"""Every path that runs an encoder gives the same features and units (one inference core).

spidrkit.load().features / .codebook_units, `spidrkit extract`, `abx --model` (model_features),
`kmeans --model`, `spidrkit units` (codebook and k-means) and `slm-eval --model` (Tokenizer), on a
layer-norm SpidR and a group-norm DinoSR, with utterances of different lengths batched together.
All of them go through one front door, :class:`spidrkit.api.Encoder`: the same batches of the same
audio give bit-identical outputs on every path (the last test).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import spidrkit
from spidrkit.cli.main import main
from spidrkit.eval.abx.model_features import model_features
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import save_model
from spidrkit.units import KMeans, Tokenizer, read_units
from spidrkit.units.files import load_features

sf = pytest.importorskip("soundfile")

LENGTHS = {"s0/u0": 16000, "s0/u1": 9000, "s1/u2": 12100, "s1/u3": 7000}
ATOL = 1e-4  # batched vs single runs differ by float rounding only


def _model(model_type: str):
    torch.manual_seed(0)
    cfg = PRESETS[f"{model_type}_tiny"].config
    if model_type == "dinosr":  # the group-norm front end, which must run item by item
        cfg = dataclasses.replace(cfg, extractor_mode="group_norm")
    return build_model(model_type, cfg).eval()


@pytest.fixture(params=["spidr", "dinosr"])
def setup(request, tmp_path: Path):
    rng = np.random.default_rng(0)
    wavs = {}
    for fid, n in LENGTHS.items():
        path = tmp_path / "wavs" / f"{fid}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        wav = (0.2 * rng.standard_normal(n)).astype(np.float32)
        sf.write(path, wav, 16000, subtype="FLOAT")
        wavs[fid] = torch.from_numpy(wav)
    ckpt = save_model(_model(request.param), tmp_path / "m.pt")
    return request.param, tmp_path, wavs, ckpt


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a.float(), b.float(), atol=ATOL, rtol=1e-4)


def test_features_agree_on_every_path(setup) -> None:
    model_type, tmp, wavs, ckpt = setup
    layers = [1, 2]
    enc = spidrkit.load(ckpt)
    # reference: each utterance alone
    single = {fid: enc.features(w, layers=layers)[0] for fid, w in wavs.items()}
    batched = dict(zip(wavs, enc.features(list(wavs.values()), layers=layers), strict=True))
    # `spidrkit extract` (manifest-free folder input, several layers -> layer folders)
    out = tmp / "feats"
    args = ["extract", str(tmp / "wavs"), "--model", str(ckpt), "--layers", "1,2", "-o", str(out)]
    assert main([*args, "--no-progress", "--device", "cpu"]) == 0
    # `abx --model`
    abx = model_features(
        enc,
        {fid: tmp / "wavs" / f"{fid}.wav" for fid in wavs},
        layers,
        dtype=torch.float32,
        show_progress=False,
    )
    for fid in wavs:
        for layer in layers:
            ref = single[fid][layer]
            assert ref.shape[0] == enc.frames(LENGTHS[fid])
            _close(batched[fid][layer], ref)
            _close(load_features(out / f"layer{layer}" / f"{fid}.pt"), ref)
            _close(abx[layer][fid], ref)


def test_units_agree_on_every_path(setup) -> None:
    model_type, tmp, wavs, ckpt = setup
    enc = spidrkit.load(ckpt)
    paths = [tmp / "wavs" / f"{fid}.wav" for fid in wavs]
    layer = enc.model.codebook_layers[-1] + 1  # the top head
    # codebook units: spidrkit.load, `spidrkit units`, Tokenizer (slm-eval --model)
    ref = {fid: enc.codebook_units(w)[0][layer] for fid, w in wavs.items()}
    common = ["--no-progress", "--device", "cpu", "--no-dedup", "--name", "fileid"]
    args = ["units", str(tmp / "wavs"), "--model", str(ckpt), "--layer", str(layer)]
    assert main([*args, "-o", str(tmp / "cb.jsonl"), *common]) == 0
    from_cli = {r.audio: r.frames() for r in read_units(tmp / "cb.jsonl")}
    tok = Tokenizer(str(ckpt), layer, dedup=False).frames(paths)
    for (fid, expected), from_tok in zip(ref.items(), tok, strict=True):
        assert from_cli[fid] == expected.tolist()
        assert from_tok.tolist() == expected.tolist()
    # k-means units: `kmeans --model` then `units --kmeans` / Tokenizer vs k-means of load() features
    km = tmp / "km.pt"
    args = ["kmeans", "--audio", str(tmp / "wavs"), "--model", str(ckpt), "--layer", "2"]
    assert main([*args, "-k", "4", "-o", str(km), "--no-progress", "--device", "cpu"]) == 0
    kmeans = KMeans.load(km)
    expected = {
        fid: kmeans.predict(enc.features(w, layers=[2])[0][2]).tolist() for fid, w in wavs.items()
    }
    args = ["units", str(tmp / "wavs"), "--model", str(ckpt), "--layer", "2", "--kmeans", str(km)]
    assert main([*args, "-o", str(tmp / "km.jsonl"), *common]) == 0
    from_cli = {r.audio: r.frames() for r in read_units(tmp / "km.jsonl")}
    tok = Tokenizer(str(ckpt), 2, str(km), dedup=False).frames(paths)
    for (fid, exp), from_tok in zip(expected.items(), tok, strict=True):
        assert from_cli[fid] == exp and from_tok.tolist() == exp


def _item_file(path: Path) -> Path:
    """Four phones per utterance (a/b in two contexts, 4 frames each) in the first 0.4 s."""
    lines = ["#file onset offset #phone prev-phone next-phone speaker\n"]
    for fid in LENGTHS:
        for k, (ph, ctx) in enumerate([("a", "x y"), ("b", "x y"), ("a", "y x"), ("b", "y x")]):
            lo, hi = 5 * k, 5 * k + 4
            lines.append(f"{fid} {lo * 0.02:.2f} {hi * 0.02:.2f} {ph} {ctx} {fid[:2]}\n")
    path.write_text("".join(lines))
    return path


def test_load_extract_units_and_abx_model_give_identical_outputs(setup) -> None:
    """One front door: the same batches of the same audio give bit-identical outputs."""
    _, tmp, wavs, ckpt = setup
    enc = spidrkit.load(ckpt)
    ref = dict(zip(wavs, enc.features(list(wavs.values()), layers=[2]), strict=True))
    common = ["--no-progress", "--device", "cpu"]
    feats = tmp / "feats16"
    args = ["extract", str(tmp / "wavs"), "--model", str(ckpt), "--layers", "2", "-o", str(feats)]
    assert main([*args, "--dtype", "float16", *common]) == 0
    for fid in wavs:
        assert torch.equal(load_features(feats / f"{fid}.pt"), ref[fid][2].half())
    # `spidrkit units`: k-means units of those features, codebook units of the model
    km = tmp / "km.pt"
    args = ["kmeans", "--features", str(feats), "-k", "4", "-o", str(km), "--no-progress"]
    assert main(args) == 0
    kmeans = KMeans.load(km)
    args = ["units", str(tmp / "wavs"), "--model", str(ckpt), "--layer", "2", "--no-dedup"]
    for extra, expect in [
        (["--kmeans", str(km)], {f: kmeans.predict(r[2]) for f, r in ref.items()}),
        ([], {f: u[2] for f, u in zip(wavs, enc.codebook_units(list(wavs.values())))}),
    ]:
        out = tmp / "u.jsonl"
        assert main([*args, *extra, "-o", str(out), "--name", "fileid", *common]) == 0
        assert {r.audio: r.frames() for r in read_units(out)} == {
            f: u.tolist() for f, u in expect.items()
        }
        out.unlink()
    # `spidrkit abx --model` scores exactly the features `spidrkit extract` wrote
    item = _item_file(tmp / "t.item")
    scores = []
    for source in (["--model", str(ckpt), "--audio", str(tmp / "wavs")], [str(feats)]):
        out = tmp / f"abx{len(scores)}.json"
        assert main(["abx", str(item), *source, "--layers", "2", "--json", str(out), *common]) == 0
        scores.append([(r["error"], r["layer"]) for r in json.loads(out.read_text())["results"]])
    assert scores[0] == scores[1] and len(scores[0]) == 1
