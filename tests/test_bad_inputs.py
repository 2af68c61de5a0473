"""Bad inputs and faults (issue 11): each ends in a one-line error naming the input, or in correct,
reported handling, and no earlier output is lost. The parsers are fuzzed in test_fuzz_parsers.py."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spidrkit.api import Encoder
from spidrkit.cli.main import main as cli_main
from spidrkit.errors import CheckpointError, ConfigError, DataError, OutputError, worker_message
from spidrkit.train import checkpoint as ckpt
from spidrkit.train.config import load_train_config
from spidrkit.train.loop import fit
from spidrkit.train.rundir import run_folder, truncate_metrics
from train_helpers import REPO, TINY_TOML, make_corpus, tiny_overrides


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=6)


def _cfg(corpus, out, **extra):
    return load_train_config(TINY_TOML, tiny_overrides(corpus, out, **extra))


def _cli(capsys, *args):
    """Run ``spidrkit ARGS`` in-process: (exit code, stderr)."""
    code = cli_main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ run folders


def test_resume_false_into_existing_run_refuses_then_overwrite_moves_it_aside(corpus, tmp_path):
    out = tmp_path / "run"
    first = fit(_cfg(corpus, out, **{"run.max_steps": 4}))
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    metrics = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        fit(_cfg(corpus, out, **{"run.max_steps": 2, "run.resume": "false"}))
    after = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    assert after == before and (out / "metrics.jsonl").read_bytes() == metrics
    result = fit(_cfg(corpus, out, **{"run.max_steps": 2, "run.resume": "false"}), overwrite=True)
    assert result.step == 2 and result.checkpoint.name == "checkpoint_00000002.pt"
    (aside,) = out.glob("replaced-*")
    kept = {p.name: p.read_bytes() for p in (aside / "checkpoints").iterdir()}
    assert kept == before and (aside / "metrics.jsonl").read_bytes() == metrics
    assert first.checkpoint.name in kept
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_cli_train_resume_false_exits_2_with_one_line(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    sets = tiny_overrides(corpus, out, **{"run.max_steps": 2})
    args = ["train", TINY_TOML, *sum((["--set", s] for s in sets), [])]
    assert _cli(capsys, *args)[0] == 0
    code, err = _cli(capsys, *args, "--set", "run.resume=false")
    _one_line_error(code, err, str(out), "--overwrite")


def test_every_checkpoint_corrupt_restart_keeps_its_own(corpus, tmp_path):
    out = tmp_path / "run"
    fit(_cfg(corpus, out, **{"run.max_steps": 6, "run.save_interval": 3}))
    for _, p in ckpt.list_checkpoints(out / "checkpoints"):
        data = bytearray(p.read_bytes())
        data[len(data) // 3] ^= 0xFF  # zip directory intact, content wrong
        p.write_bytes(bytes(data))
    result = fit(_cfg(corpus, out, **{"run.max_steps": 2, "run.keep_last": "1"}))
    assert result.step == 2 and result.checkpoint.name == "checkpoint_00000002.pt"
    ckdir = out / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(ckdir)] == [2]
    assert sorted(p.name for p in ckdir.glob("*.corrupt")) == [
        "checkpoint_00000003.pt.corrupt",
        "checkpoint_00000003.pt.sha256.corrupt",
        "checkpoint_00000006.pt.corrupt",
        "checkpoint_00000006.pt.sha256.corrupt",
    ]


def test_byte_corrupted_checkpoint_is_detected_by_its_checksum(tmp_path):
    good = ckpt.save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(5000)}}, keep_last=0)
    bad = ckpt.save_checkpoint(tmp_path, 2, {"model": {"w": torch.ones(5000)}}, keep_last=0)
    assert ckpt.digest_path(bad).read_text().endswith("  checkpoint_00000002.pt\n")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    assert "SHA-256" in ckpt.verify_checkpoint(bad)
    with pytest.raises(CheckpointError, match="checkpoint_00000002.pt: .*corrupted"):
        ckpt.load_checkpoint(bad)
    assert ckpt.find_latest_checkpoint(tmp_path) == good
    ckpt.digest_path(bad).unlink()  # without its checksum, the zip CRCs still catch it
    assert "CRC" in ckpt.verify_checkpoint(bad)


def test_second_run_on_one_folder_is_refused_while_the_first_holds_it(corpus, tmp_path):
    out = tmp_path / "run"
    with run_folder(out, out / "checkpoints", resume=True):
        with pytest.raises(ConfigError, match="another run is writing to this folder"):
            fit(_cfg(corpus, out, **{"run.max_steps": 1}))
    assert fit(_cfg(corpus, out, **{"run.max_steps": 1})).step == 1  # released


def test_lock_is_held_across_processes(tmp_path):
    code = (
        "import sys, time; from spidrkit.train.rundir import run_folder\n"
        f"with run_folder({str(tmp_path)!r}, resume=True):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(ConfigError, match=f"pid {proc.pid}"):
            with run_folder(tmp_path, resume=True):
                pass
    finally:
        proc.kill()
        proc.wait()
    with run_folder(tmp_path, resume=True):  # a killed holder leaves no stale lock
        pass


def test_resumed_steps_appear_once_in_metrics(corpus, tmp_path):
    out = tmp_path / "run"
    fit(_cfg(corpus, out, **{"run.max_steps": 5}))  # checkpoints 2, 4 and 5
    for p in (out / "checkpoints").glob("checkpoint_00000005.pt*"):
        p.unlink()  # as if killed after logging step 5, before its checkpoint
    fit(_cfg(corpus, out, **{"run.max_steps": 6}))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_truncate_metrics_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "train", "loss": 1.0} for s in (1, 2, 3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "spl')
    assert truncate_metrics(path, 2) == 2
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]


def test_lm_train_no_resume_into_existing_run_is_refused(tmp_path):
    from spidrkit.config import from_dict
    from spidrkit.lm.config import LMTrainConfig
    from spidrkit.lm.train import train_lm

    units = tmp_path / "u.jsonl"
    rng = np.random.default_rng(0)
    units.write_text(
        "".join(
            json.dumps({"audio": f"a{i}", "units": rng.integers(0, 8, 40).tolist()}) + "\n"
            for i in range(12)
        )
    )
    cfg = from_dict(
        LMTrainConfig,
        {
            "preset": "lm_tiny",
            "model": {"num_units": 8, "max_positions": 64},
            "data": {"train": str(units), "block_size": 32, "max_tokens": 256},
            "run": {
                "output_dir": str(tmp_path / "lm"),
                "max_steps": 2,
                "device": "cpu",
                "tensorboard": False,
            },
        },
    )
    train_lm(cfg, show_progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train_lm(cfg, resume=False, show_progress=False)
    train_lm(cfg, resume=False, show_progress=False, overwrite=True)
    assert list((tmp_path / "lm").glob("replaced-*/checkpoint_00000002.pt"))


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "override",
    [
        "optimizer.lr=nan",
        "optimizer.eps=nan",
        "optimizer.clip_norm=nan",
        "optimizer.lr=inf",
        "masking.mask_prob=nan",
        "run.collapse_min_active=-inf",
    ],
)
def test_non_finite_numbers_are_refused_by_check_config_and_train(override, capsys):
    key = override.split("=")[0]
    code, err = _cli(capsys, "check-config", TINY_TOML, "--set", override)
    assert code == 2 and f"{key}: " in err and "finite" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match=key):
        load_train_config(TINY_TOML, [override])


def test_min_sample_size_below_one_frame_is_refused():
    with pytest.raises(ConfigError, match=r"data.min_sample_size: 100 .*receptive field \(400"):
        load_train_config(TINY_TOML, ["data.min_sample_size=100"])


# -------------------------------------------------------------------------------------- manifests


def test_manifest_problems_name_the_file_and_line(tmp_path, capsys):
    from spidrkit.data.manifest import read_manifest

    m = tmp_path / "m.csv"
    m.write_text("fileid,path,num_samples\na,a.wav,10\nb,b.wav,10\na,c.wav,10\n")
    with pytest.raises(DataError, match=r"m.csv:4: fileid 'a' already appears on line 2"):
        read_manifest(m)
    m.write_bytes(b"fileid,path,num_samples\na,\xff\xfe.wav,10\n")
    with pytest.raises(DataError, match=r"m.csv:2: not UTF-8"):
        read_manifest(m)
    m.write_bytes(b"fileid,path,num_samples\na,a.wav,10\nb,b\x00.wav,10\n")
    with pytest.raises(DataError, match=r"m.csv:3: contains a NUL byte"):
        read_manifest(m)
    secret = tmp_path / "id_key"
    secret.write_text("AWS_SECRET=hunter2-very-secret\n")
    code, err = _cli(capsys, "manifest", "--validate", secret, "--no-progress")
    line = _one_line_error(code, err, str(secret), "lacks the manifest columns")
    assert "hunter2" not in line


def test_endless_input_is_refused_with_bounded_memory():
    from spidrkit.data.manifest import read_manifest
    from spidrkit.eval.abx.items import read_item_file
    from spidrkit.eval.unit_quality import read_phone_labels

    with pytest.raises(DataError, match="/dev/zero"):
        read_manifest("/dev/zero")
    with pytest.raises(DataError, match="/dev/zero:1: line longer than"):
        read_item_file("/dev/zero")
    with pytest.raises(DataError, match="/dev/zero:1: line longer than"):
        read_phone_labels("/dev/zero")


def test_understated_num_samples_is_an_error_not_an_oversized_batch(corpus, tmp_path):
    from spidrkit.data.config import DataConfig
    from spidrkit.data.dataset import make_dataloader

    lines = corpus.read_text().splitlines()
    fid, path, n = lines[1].split(",")
    lines[1] = f"{fid},{corpus.parent / path},{int(n) // 5}"
    m = tmp_path / "short.csv"
    m.write_text("\n".join([lines[0], lines[1]]) + "\n")
    cfg = DataConfig(
        max_batch_samples=40_000, min_sample_size=400, max_sample_size=20_000, num_workers=0
    )
    loader = make_dataloader(m, cfg, None, seed=0)
    with pytest.raises(DataError, match=f"says {int(n) // 5} samples, the audio has {n}"):
        next(iter(loader))


def test_worker_error_is_one_line(corpus, tmp_path, capsys):
    lines = corpus.read_text().splitlines()
    fid, path, n = lines[1].split(",")
    m = tmp_path / "bad.csv"
    m.write_text(f"{lines[0]}\n{fid},{corpus.parent / path},{int(n) + 7}\n")
    sets = tiny_overrides(m, tmp_path / "run", **{"data.num_workers": 1, "run.max_steps": 1})
    code, err = _cli(capsys, "train", TINY_TOML, *sum((["--set", s] for s in sets), []))
    _one_line_error(code, err, "says", "rebuild the manifest")
    text = "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent...\n"
    text += '  File "x.py", line 1\nspidrkit.errors.DataError: m.csv: bad row'
    assert worker_message(text) == "m.csv: bad row"


# ---------------------------------------------------------------------- output paths (extract)


class _FakeSource:
    """A frame encoder that gives every file 2 frames of ones (no model needed)."""

    layer_range = range(1, 2)
    dim = 3
    batchable = True

    def num_frames(self, n: int) -> int:
        return 2

    def to(self, device):
        return self

    def layer_features(self, wavs, layers, *, before_residual=True, precision="fp32"):
        return {1: torch.ones(len(wavs), 2, 3)}


@pytest.mark.parametrize("fileid", ["../../x", "/abs/x", "a/../../x", ""])
def test_extract_never_writes_outside_out(corpus, tmp_path, fileid):
    from spidrkit.units.extract import extract_features, list_audio

    lines = corpus.read_text().splitlines()
    _, path, n = lines[1].split(",")
    m = tmp_path / "deep" / "m.csv"
    m.parent.mkdir()
    m.write_text(
        f"{lines[0]}\nok,{corpus.parent / path},{n}\n{fileid},{corpus.parent / path},{n}\n"
    )
    out = tmp_path / "deep" / "out"
    with pytest.raises(DataError, match=r"m.csv row 2: fileid .* outputs are only written inside"):
        extract_features(Encoder(_FakeSource()), list_audio(m), out, show_progress=False)
    assert not list(tmp_path.rglob("*.pt"))  # nothing written, inside or out


def test_extract_duplicate_fileids_are_refused(corpus, tmp_path):
    from spidrkit.units.extract import extract_features, list_audio

    folder = tmp_path / "wavs"
    folder.mkdir()
    wav = corpus.parent / "u00.wav"
    (folder / "a.wav").write_bytes(wav.read_bytes())
    (folder / "a.WAV").write_bytes(wav.read_bytes())  # same fileid "a", two files
    with pytest.raises(DataError, match="fileid 'a' is also the fileid of"):
        extract_features(
            Encoder(_FakeSource()), list_audio(folder), tmp_path / "o", show_progress=False
        )


def _tar_with(tmp_path, members):
    path = tmp_path / "shard.tar"
    with tarfile.open(path, "w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, fileobj=io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
    return path


def test_tar_links_and_escaping_names_are_counted_not_dropped(corpus, tmp_path):
    from spidrkit.data.scan import scan_tar

    wav = (corpus.parent / "u00.wav").read_bytes()
    tar = _tar_with(
        tmp_path,
        [
            ("ok.wav", "file", wav),
            ("../../evil.wav", "file", wav),
            ("/abs/evil2.wav", "file", wav),
            ("link.wav", "sym", "ok.wav"),
        ],
    )
    with pytest.raises(DataError, match="3 unreadable") as info:
        scan_tar(tar, show_progress=False)
    msg = str(info.value)
    assert "link member" in msg and "climbs out" in msg and "absolute path" in msg
    m = scan_tar(tar, show_progress=False, skip_errors=True)
    assert m.fileids.tolist() == ["ok"]


# ----------------------------------------------------------------------------- evaluation inputs


def _units_file(tmp_path, rows):
    p = tmp_path / "units.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


@pytest.mark.parametrize(
    "row, needle",
    [
        ([1, 2, 3], "expected a JSON object per line, found a list"),
        ({"audio": "a", "units": [1, -1]}, "'units'[1] = -1 is outside [0, 1048575]"),
        ({"audio": "a", "units": [1, 0.5]}, "must be a list of integers; 'units'[1] is 0.5"),
        ({"audio": "a", "units": [10**12]}, "is outside [0, 1048575]"),
        ({"audio": "a", "units": [True]}, "'units'[0] is true"),
        ({"audio": "a", "units": [1, 2], "durations": [1, 0]}, "'durations'[1] = 0 is outside"),
        (
            {"audio": "a", "units": [1, 2], "durations": [1]},
            "one integer >= 1 per unit (2 units, 1 durations)",
        ),
        ('{"audio": "a", "units": [1', "not valid JSON"),
    ],
)
def test_units_jsonl_values_are_checked_by_every_reader(tmp_path, row, needle):
    from spidrkit.eval.abx.items import read_units_jsonl
    from spidrkit.lm.data import read_units_jsonl as lm_read
    from spidrkit.units.files import read_units

    p = _units_file(tmp_path, [{"audio": "ok", "units": [0]}, row])
    readers = [read_units_jsonl, read_units]
    if "durations" not in str(row):
        readers.append(lm_read)
    for reader in readers:
        with pytest.raises(DataError, match="units.jsonl:2: ") as info:
            reader(p)
        assert needle in str(info.value), (reader, str(info.value))


def test_unit_quality_refuses_bad_units_and_duplicates(tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"name": "a", "phones": ["x", "y"] * 4}) + "\n")
    units = _units_file(tmp_path, [{"audio": "a.wav", "units": [1, 10**12, 1, 2]}])
    code, err = _cli(capsys, "unit-quality", labels, units)
    _one_line_error(code, err, "units.jsonl:1", "outside")
    units = _units_file(tmp_path, [{"audio": "a", "units": [1, 2, 1, 2]}] * 2)
    code, err = _cli(capsys, "unit-quality", labels, units)
    _one_line_error(code, err, "units.jsonl:2", "already appears on line 1")
    labels.write_text('["a", "b"]\n')
    code, err = _cli(capsys, "unit-quality", labels, units)
    _one_line_error(code, err, "labels.jsonl:1", "found a list")


def test_item_file_duplicates_and_binary_are_refused(tmp_path):
    from spidrkit.eval.abx.items import ITEM_HEADER, read_item_file

    p = tmp_path / "x.item"
    head = " ".join(ITEM_HEADER) + "\n"
    p.write_text(head + "f1 0.1 0.2 a b c s1\nf2 0.1 0.2 a b c s1\nf1 0.1 0.2 a b c s1\n")
    with pytest.raises(DataError, match=r"x.item:4: item 'f1 0.1 0.2' already appears on line 2"):
        read_item_file(p)
    p.write_bytes(head.encode() + b"f1 0.1 0.2 \xff b c s1\n")
    with pytest.raises(DataError, match=r"x.item:2: not UTF-8"):
        read_item_file(p)
    p.write_text(head + "f1 0.1 nan a b c s1\n")
    with pytest.raises(DataError, match=r"x.item:2: need 0 <= onset <= offset"):
        read_item_file(p)


def test_non_finite_features_are_refused_everywhere(tmp_path, capsys):
    from spidrkit.eval.abx.items import load_feature_file
    from spidrkit.units.kmeans import KMeansConfig, fit_kmeans

    feats = tmp_path / "feats"
    feats.mkdir()
    x = torch.randn(20, 4)
    x[3, 1] = float("nan")
    torch.save(x, feats / "a.pt")
    y = torch.randn(20, 4)
    y[0, 0] = float("inf")
    np.save(feats / "b.npy", y.numpy())
    with pytest.raises(DataError, match=r"a.pt: 1 of 80 feature values are NaN or infinite"):
        load_feature_file(feats / "a.pt")
    with pytest.raises(DataError, match=r"b.npy: 1 of 80"):
        load_feature_file(feats / "b.npy")
    with pytest.raises(DataError, match="k-means training frames: 1 of"):
        fit_kmeans(x, KMeansConfig(k=2, batch_size=8, max_epochs=1))
    torch.save({"centroids": torch.zeros(2, 4), "meta": {}}, tmp_path / "km.pt")
    code, err = _cli(
        capsys,
        "units",
        "--features",
        feats,
        "--kmeans",
        tmp_path / "km.pt",
        "--out",
        tmp_path / "u.jsonl",
        "--no-progress",
    )
    _one_line_error(code, err, "NaN or infinite")


def test_gold_csv_problems_name_the_line(tmp_path):
    from spidrkit.lm.zerospeech import _read_gold

    g = tmp_path / "gold.csv"
    g.write_text("filename,id,correct\na,1,1\nb,1,0\na,2,1\n")
    with pytest.raises(DataError, match=r"gold.csv:4: filename 'a' already appears on line 2"):
        _read_gold(g, "storycloze")
    g.write_text('filename,id,correct\na,1,1\n"' + "b" * 200_000 + '",1,0\n')
    with pytest.raises(DataError, match=r"gold.csv:3: not a valid CSV line \(field larger"):
        _read_gold(g, "storycloze")
    g.write_text("filename,id,correct\na,1\n")
    with pytest.raises(DataError, match=r"gold.csv:2: expected 3 columns"):
        _read_gold(g, "storycloze")


# ------------------------------------------------------------------------------- disk full, OS


def test_disk_full_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    first = ckpt.save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(10_000)}}, keep_last=1)
    before = first.read_bytes()
    written = [0]

    def full(self, data):
        written[0] += len(data)
        if written[0] > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    monkeypatch.setattr(ckpt.HashingWriter, "write", full)
    with pytest.raises(OutputError, match=r"checkpoint_00000002.pt: cannot write \(No space"):
        ckpt.save_checkpoint(tmp_path, 2, {"model": {"w": torch.ones(10_000)}}, keep_last=1)
    assert first.read_bytes() == before and ckpt.verify_checkpoint(first) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, first.name + ".sha256"]


def test_file_size_limit_in_cli_is_one_line_and_keeps_old_output(corpus, tmp_path):
    out = tmp_path / "m.csv"
    out.write_text("fileid,path,num_samples\nold,old.wav,1\n")
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))\n"
        "from spidrkit.cli.main import main\n"
        f"sys.exit(main(['manifest', {str(corpus.parent)!r}, '-o', {str(out)!r}, '--no-progress']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "m.csv: cannot write (File too large)" in lines[0], proc.stderr
    assert out.read_text() == "fileid,path,num_samples\nold,old.wav,1\n"
    assert not list(tmp_path.glob(".m.csv.*"))


# ================================================================= round two (issue 18): classes
# Each test below generates its cases (file kinds x commands, path shapes, device names, umasks,
# count matrices) rather than listing the examples of the issue.


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from bad_files import make_zoo

    root = tmp_path_factory.mktemp("zoo")
    return root, make_zoo(root / "files")


def _run_line(capsys, line):
    """``spidrkit LINE`` in-process: (exit code, non-warning stderr lines)."""
    import logging
    import shlex

    args = shlex.split(line)
    if args[0] not in ("info", "convert", "check-config", "manifest", "unit-quality", "plot"):
        args.append("--no-progress")
    logging.disable(logging.CRITICAL)
    try:
        code = cli_main(args)
    except SystemExit as exc:
        code = exc.code
    finally:
        logging.disable(logging.NOTSET)
    err = capsys.readouterr().err
    return code, [x for x in err.splitlines() if x.strip() and "warning:" not in x]


def _slots():
    from bad_files import SLOTS

    return SLOTS


@pytest.mark.parametrize(("slot", "takes"), _slots(), ids=[s.split(" {")[0] for s, _ in _slots()])
def test_every_file_kind_in_every_file_slot_is_a_one_line_error(zoo, slot, takes, capsys):
    """Class 4: a file that is not what the slot takes (text named .pt, an LM checkpoint for an
    encoder, bit flips, a truncated config.json beside a checkpoint, pickles, folders, ...)."""
    root, files = zoo
    out = root / "out"
    out.mkdir(exist_ok=True)
    fmt = {k: str(v) for k, v in files.items()} | {
        "out": str(out),
        "audio": str(files["wav"].parent),
    }
    bad = []
    for kind, path in files.items():
        if kind in takes:
            continue
        code, lines = _run_line(capsys, slot.replace("{}", str(path)).format(**fmt))
        if not (code == 2 and len(lines) == 1 and "internal error" not in lines[0]):
            bad.append((kind, code, lines[:3]))
    assert not bad, bad
    assert not list(files["model"].parent.glob("c.pt*"))  # nothing written beside the inputs


def test_artefacts_carry_a_checksum_and_a_flipped_byte_is_caught_by_every_reader(zoo):
    from spidrkit.lm.train import load_lm
    from spidrkit.models.checkpoint import read_checkpoint
    from spidrkit.units.kmeans import KMeans

    _, files = zoo
    for kind in ("model", "safetensors", "kmeans", "lm"):
        assert files[kind].with_name(files[kind].name + ".sha256").is_file(), kind
    for reader, kind in (
        (read_checkpoint, "flipped_model"),
        (read_checkpoint, "flipped_safetensors"),
        (KMeans.load, "flipped_kmeans"),
        (load_lm, "flipped_lm"),
    ):
        with pytest.raises(CheckpointError, match="SHA-256"):
            reader(files[kind])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from(["a", "b", ".", "..", "", " ", "\\", "\x00", "\x01", "C:", "é", "x" * 300]),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
    st.booleans(),
)
def test_any_fileid_lands_inside_the_output_folder_or_is_refused(parts, lead, trail):
    """Class 6: path shapes. Through a symlinked folder inside ``out`` too."""
    import tempfile

    from spidrkit.utils.paths import inside

    name = ("/" if lead else "") + "/".join(parts) + ("/" if trail else "")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "out"
        (root / "a").mkdir(parents=True)
        (Path(tmp) / "elsewhere").mkdir()
        os.symlink(Path(tmp) / "elsewhere", root / "b")  # "b/..." leaves the folder
        try:
            path = inside(root, name, ".pt")
        except DataError:
            return
        real_root = root.resolve()
        assert real_root in path.parent.resolve().parents or path.parent.resolve() == real_root
        assert not path.name.startswith(".") or name.split("/")[-1].startswith(".")
        assert path.name != ".pt"


def test_symlink_loops_list_each_file_once_and_duplicate_feature_files_are_refused(tmp_path):
    import soundfile as sf

    from spidrkit.data.scan import scan_directory
    from spidrkit.units.files import list_features

    (tmp_path / "a" / "b").mkdir(parents=True)
    sf.write(tmp_path / "a" / "b" / "x.wav", np.zeros(4000, np.float32), 16000)
    os.symlink("..", tmp_path / "a" / "b" / "up")  # a loop
    os.symlink(tmp_path / "a", tmp_path / "again")  # the same folder twice
    m = scan_directory(tmp_path, show_progress=False)
    assert len(m) == 1
    feats = tmp_path / "f"
    feats.mkdir()
    torch.save(torch.zeros(2, 2), feats / "u.pt")
    np.save(feats / "u.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match="u.npy and u.pt both hold fileid 'u'"):
        list_features(feats)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027])
def test_outputs_follow_the_umask(tmp_path, umask):
    from spidrkit.utils.files import atomic_path, atomic_write

    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "a.bin", digest=True) as f:
            f.write(b"x")
        with atomic_path(tmp_path / "b.bin") as p:
            p.write_bytes(b"y")
    finally:
        os.umask(old)
    for name in ("a.bin", "a.bin.sha256", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.parametrize("device", ["cuda:0", "cuda:7", "meta", "xla", "mps", "", "cuda:x", "gpu"])
def test_devices_that_cannot_run_are_one_line_errors(device, tmp_path, capsys, monkeypatch):
    from spidrkit.utils.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="device"):
        resolve_device(device)
    item = tmp_path / "x.item"
    item.write_text("#file onset offset #phone prev-phone next-phone speaker\n")
    code, lines = _run_line(capsys, f"abx {item} {tmp_path} --device '{device}'")
    assert code == 2 and len(lines) == 1 and f"device {device!r}" in lines[0], lines


def test_unit_lm_stops_on_a_non_finite_loss_and_claims_no_model(tmp_path, monkeypatch, capsys):
    """Class 2: a NaN loss ends lm-train with exit 2; no best.pt is written or printed."""
    from spidrkit.lm.model import UnitLM

    units = tmp_path / "u.jsonl"
    rng = np.random.default_rng(0)
    units.write_text(
        "".join(
            json.dumps({"audio": f"u{i}", "units": rng.integers(0, 16, 40).tolist()}) + "\n"
            for i in range(20)
        )
    )
    forward = UnitLM.forward

    def nan_forward(self, tokens):
        out = forward(self, tokens)
        return out * float("nan")

    monkeypatch.setattr(UnitLM, "forward", nan_forward)
    out = tmp_path / "lm"
    code, lines = _run_line(
        capsys,
        f"lm-train {REPO / 'configs' / 'lm_tiny.toml'} --set data.train='{units}' "
        f"--set run.output_dir='{out}' --set run.max_steps=3 --set data.block_size=32 "
        "--set data.max_tokens=64 --set run.device=cpu --set run.tensorboard=false",
    )
    assert code == 2 and len(lines) == 1 and "non-finite" in lines[0], lines
    assert not (out / "best.pt").exists()
    assert not list(out.glob("checkpoint_*.pt"))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    st.integers(1, 5).flatmap(
        lambda r: st.integers(1, 5).flatmap(
            lambda c: st.lists(
                st.lists(st.integers(0, 50), min_size=c, max_size=c), min_size=r, max_size=r
            )
        )
    )
)
def test_unit_quality_metrics_are_finite_or_an_error(counts):
    """Class 2: PNMI of a one-phone label set (or no frame) is an error, never ``nan``."""
    from spidrkit.eval.unit_quality import metrics_from_counts

    try:
        values = metrics_from_counts(np.asarray(counts, dtype=np.int64))
    except DataError:
        c = np.asarray(counts)
        assert c.sum() == 0 or (c.sum(1) > 0).sum() == 1
        return
    assert all(np.isfinite(v) for v in values)


def test_stale_features_and_kmeans_of_another_source_or_layer_are_refused(zoo, tmp_path, capsys):
    """Class 3: outputs record what produced them; a re-run or a consumer with another source,
    layer or option is refused instead of mixing."""
    _, files = zoo
    out = tmp_path / "feats"
    m = files["manifest"]
    assert _run_line(capsys, f"extract {m} --baseline mfcc --out {out}")[0] == 0
    assert _run_line(capsys, f"extract {m} --baseline mfcc --out {out}")[0] == 0  # resumes
    for other in (
        "--baseline logmel",
        "--baseline mfcc --hop-ms 10",
        "--baseline mfcc --cmvn",
        "--baseline mfcc --format npy",
    ):
        code, lines = _run_line(capsys, f"extract {m} {other} --out {out}")
        assert code == 2 and len(lines) == 1 and "made differently" in lines[0], (other, lines)
    code, lines = _run_line(capsys, f"extract {m} --model {files['model']} --layers 2 --out {out}")
    assert code == 2 and "model_digest" in lines[0], lines
    # k-means remembers the features' source: features of another source are refused
    km = tmp_path / "km.pt"
    assert _run_line(capsys, f"kmeans --features {out} -k 2 --out {km}")[0] == 0
    other = tmp_path / "feats10"
    assert _run_line(capsys, f"extract {m} --baseline mfcc --hop-ms 10 --out {other}")[0] == 0
    code, lines = _run_line(
        capsys, f"units --features {other} --kmeans {km} --out {tmp_path / 'u.jsonl'}"
    )
    assert code == 2 and "another source" in lines[0] and "hop_ms" in lines[0], lines
    # ... and its layer: the zoo's k-means is of layer 2
    code, lines = _run_line(
        capsys,
        f"units {m} --model {files['model']} --layer 3 --kmeans {files['kmeans']} "
        f"--out {tmp_path / 'u.jsonl'}",
    )
    assert code == 2 and "trained on layer 2" in lines[0], lines
    assert not (tmp_path / "u.jsonl").exists()


def test_unrecorded_outputs_are_not_vouched_for(tmp_path):
    from spidrkit.utils.provenance import check_producer, check_record, write_record

    (tmp_path / "x.pt").write_bytes(b"old")
    with pytest.raises(ConfigError, match="no record of what produced them"):
        check_record(tmp_path, {"seed": 0}, what="features", has_outputs=True)
    stage = tmp_path / "stage"
    assert check_producer(stage, {"seed": 0}, what="a demo stage") is False
    write_record(stage, {"seed": 0})
    assert check_producer(stage, {"seed": 0}, what="a demo stage") is True
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        check_producer(stage, {"seed": 1}, what="a demo stage")


def test_sizes_derived_from_input_are_bounded(tmp_path):
    """Class 5: tiny inputs that claim huge sizes are refused before anything is allocated."""
    import struct

    from spidrkit.audio.io import audio_info, load_audio
    from spidrkit.config import read_toml
    from spidrkit.errors import AudioError
    from spidrkit.eval.abx.items import read_item_file
    from spidrkit.units.files import read_units

    for rate in (1, 2, 999, 10**7):
        data = b"\0\0" * 64
        wav = tmp_path / f"r{rate}.wav"
        fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
        riff = b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data
        wav.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
        for reader in (audio_info, load_audio):
            with pytest.raises(AudioError, match=f"{rate} Hz"):
                reader(wav)
    head = "#file onset offset #phone prev-phone next-phone speaker\n"
    for onset, offset in ((1e9, 1e9 + 0.1), (0.0, 3600.0), (86400.0, 86401.0)):
        item = tmp_path / "x.item"
        item.write_text(head + f"a {onset} {offset} p # # s\n")
        with pytest.raises(DataError, match="x.item:2: an item ends after"):
            read_item_file(item)
    wav = tmp_path / "c65.wav"  # 65 channels
    fmt = struct.pack("<IHHIIHH", 16, 1, 65, 16000, 2 * 16000 * 65, 2 * 65, 16)
    riff = b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 130) + bytes(130)
    wav.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    with pytest.raises(AudioError, match="65 channels"):
        audio_info(wav)
    import soundfile as sf

    flac = tmp_path / "huge.flac"  # a FLAC header claiming 2^36 - 1 samples (1193 h)
    sf.write(flac, np.zeros(1600, np.float32), 16000)
    raw = bytearray(flac.read_bytes())
    field = int.from_bytes(raw[18:26], "big") | ((1 << 36) - 1)
    raw[18:26] = field.to_bytes(8, "big")
    flac.write_bytes(bytes(raw))
    with pytest.raises(AudioError, match="over the 24 h"):
        load_audio(flac)
    units = tmp_path / "u.jsonl"
    units.write_text(json.dumps({"audio": "a", "units": [1, 2], "durations": [2**24, 2**24]}))
    with pytest.raises(DataError, match="add up to 33554432 frames"):
        read_units(units)
    with pytest.raises(ConfigError, match="/dev/zero: over 4 MiB"):
        read_toml("/dev/zero")
    from spidrkit.eval.abx.result import read_results_json

    with pytest.raises(DataError, match="/dev/zero: over 64 MiB"):
        read_results_json("/dev/zero")


def test_outputs_as_a_set_and_never_onto_an_input(zoo, tmp_path, capsys):
    """Class 7 (and 6): --out and --txt are written together or not at all; an output never
    replaces an input or the other output; convert leaves a run's config.json alone."""
    _, files = zoo
    feats, km = files["features"], files["kmeans"]
    old = tmp_path / "u.jsonl"
    old.write_text('{"audio": "old", "units": [1]}\n')
    ro = Path("/sys")  # a folder nobody (root included) may create files in
    code, lines = _run_line(
        capsys, f"units --features {feats} --kmeans {km} --out {old} --txt {ro / 'u.txt'}"
    )
    assert code == 2 and len(lines) == 1 and "cannot write" in lines[0], lines
    assert old.read_text() == '{"audio": "old", "units": [1]}\n'
    code, lines = _run_line(
        capsys, f"units --features {feats} --kmeans {km} --out {old} --txt {old}"
    )
    assert code == 2 and "also --out" in lines[0], lines
    wav = files["wav"]
    before = wav.read_bytes()
    for out in (wav, wav.parent / "new.wav", files["manifest"].parent):
        code, lines = _run_line(capsys, f"manifest {wav.parent} -o {out}")
        assert code == 2 and len(lines) == 1, lines
    assert wav.read_bytes() == before and not (wav.parent / "new.wav").exists()
    code, lines = _run_line(capsys, f"convert {files['model']} {files['model']}")
    assert code == 2 and "refusing to overwrite" in lines[0]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"run": {"max_steps": 5}}')
    assert _run_line(capsys, f"convert {files['model']} {run / 'm.pt'}")[0] == 0
    assert (run / "config.json").read_text() == '{"run": {"max_steps": 5}}'


def test_plot_on_a_full_disk_keeps_the_previous_image(zoo, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    _, files = zoo
    png = tmp_path / "p.png"
    png.write_bytes(b"previous image")

    def full(self, f, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    code, lines = _run_line(capsys, f"plot phone-unit {files['quality_json']} --out {png}")
    assert code == 2 and len(lines) == 1 and "No space left" in lines[0], lines
    assert png.read_bytes() == b"previous image" and not list(tmp_path.glob(".p.png*"))


@pytest.mark.parametrize("where", ["init_checkpoint", "resume"])
def test_refused_pickles_in_training_are_one_line(corpus, tmp_path, capsys, where, zoo):
    _, files = zoo
    out = tmp_path / "run"
    sets = tiny_overrides(corpus, out, **{"run.max_steps": 1})
    if where == "init_checkpoint":
        sets.append(f"run.init_checkpoint='{files['pickle_pt']}'")
    else:
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "checkpoint_00000001.pt").write_bytes(
            files["pickle_pt"].read_bytes()
        )
    args = " ".join(f'--set "{s}"' for s in sets)
    code, lines = _run_line(capsys, f"train {TINY_TOML} {args} --set run.max_steps=2")
    assert code == 2 and len(lines) == 1, lines
    assert "pickled Python objects (argparse.ArgumentParser), refused" in lines[0], lines


def test_a_diverged_unit_lm_is_refused_when_loaded_and_when_scoring(tmp_path):
    from spidrkit.lm.config import LM_PRESETS
    from spidrkit.lm.model import UnitLM
    from spidrkit.lm.score import score_sequences
    from spidrkit.lm.train import load_lm, save_lm

    lm = UnitLM(LM_PRESETS["lm_tiny"])
    with torch.no_grad():
        next(lm.parameters()).fill_(float("nan"))
    save_lm(tmp_path / "best.pt", lm)
    with pytest.raises(CheckpointError, match="hold NaN/inf"):
        load_lm(tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="non-finite log-likelihood"):
        score_sequences(lm, [[1, 2, 3]], names=["a.wav"])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    key=st.sampled_from(
        ["pnmi", "phones", "units", "counts", "perplexity", "error", "layer", "results", "config"]
    ),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.floats(allow_nan=False),
        st.text(max_size=3),
        st.lists(st.one_of(st.integers(-2, 2), st.text(max_size=2)), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
)
def test_plot_inputs_with_wrong_values_are_one_line_errors(zoo, key, value):
    """Class 4: result files whose fields hold other types or values: a plot or one line."""
    pytest.importorskip("matplotlib")
    import contextlib
    import io as _io
    import tempfile

    _, files = zoo
    with tempfile.TemporaryDirectory() as tmp:
        for kind, plot in (("quality_json", "phone-unit"), ("abx_json", "abx-layers")):
            data = json.loads(files[kind].read_text())
            target = data["results"][0] if kind == "abx_json" and key != "results" else data
            target[key] = value
            path = Path(tmp) / "in.json"
            path.write_text(json.dumps(data))
            err = _io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
                code = cli_main(["plot", plot, str(path), "--out", str(Path(tmp) / "p.png")])
            lines = [x for x in err.getvalue().splitlines() if x.strip()]
            assert code == 0 or (code == 2 and len(lines) == 1), (kind, key, value, lines)


def test_unexpected_exceptions_are_one_line_internal_errors(monkeypatch, capsys):
    from spidrkit.cli import env as env_cmd
    from spidrkit.errors import SpidrkitError

    def boom(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(env_cmd, "run", boom)
    code = cli_main(["env"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "internal error: ZeroDivisionError" in lines[0]
    with pytest.raises(ZeroDivisionError):
        cli_main(["-v", "env"])

    def multi(args):
        raise SpidrkitError("first\n  second\n  third")

    monkeypatch.setattr(env_cmd, "run", multi)
    assert cli_main(["env"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "spidrkit env: error: first; second; third"
    ]
