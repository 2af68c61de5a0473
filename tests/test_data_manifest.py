"""Manifests: folder and tar scans, CSV/TSV round trips, validation, the CLI."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from spidrkit.audio import load_audio  # noqa: E402
from spidrkit.cli.main import main as cli_main  # noqa: E402
from spidrkit.data import (  # noqa: E402
    Manifest,
    StringColumn,
    read_manifest,
    scan_directory,
    scan_tar,
    validate_manifest,
    write_manifest,
)
from spidrkit.errors import DataError  # noqa: E402


def _write(path, n, sr=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels == 1 else (n, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * rng.standard_normal(shape)).astype(np.float32), sr)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    _write(root / "spk1" / "a.wav", 16000, seed=1)
    _write(root / "spk1" / "b.flac", 8000, seed=2)
    _write(root / "spk2" / "c.wav", 44100 + 11, sr=44100, channels=2, seed=3)
    _write(root / "d.ogg", 12000, seed=4)
    (root / "notes.txt").write_text("not audio")
    return root


def test_string_column():
    items = ["a", "", "é/ü", "x,y", "long" * 20]
    col = StringColumn.from_strings(items)
    assert len(col) == 5 and col.tolist() == items and col[2] == "é/ü" and col[-1] == items[-1]
    assert col.take([4, 0, 2]).tolist() == [items[4], items[0], items[2]]
    both = StringColumn.concat([col, col.take([1, 3])])
    assert both.tolist() == items + ["", "x,y"]


def test_scan_directory(corpus):
    m = scan_directory(corpus, show_progress=False)
    assert m.kind == "files"
    assert m.fileids.tolist() == ["d", "spk1/a", "spk1/b", "spk2/c"]
    for i in range(len(m)):
        assert m.num_samples[i] == len(load_audio(m.path(i)))
    assert m.num_samples.tolist() == [12000, 16000, 8000, 16004]  # 44111 frames at 44.1 kHz
    only_wav = scan_directory(corpus, extensions=["wav"], show_progress=False)
    assert only_wav.fileids.tolist() == ["spk1/a", "spk2/c"]


def test_roundtrip_csv_relative_paths(corpus, tmp_path, monkeypatch):
    m = scan_directory(corpus, show_progress=False)
    out = write_manifest(m, corpus / "train.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "fileid,path,num_samples"
    assert lines[2] == "spk1/a,spk1/a.wav,16000"
    monkeypatch.chdir(tmp_path.parent)  # relative paths resolve from the manifest's folder
    back = read_manifest(out)
    assert back.fileids.tolist() == m.fileids.tolist()
    np.testing.assert_array_equal(back.num_samples, m.num_samples)
    assert all(back.path(i).is_file() for i in range(len(back)))
    # outside the corpus folder: absolute paths
    elsewhere = write_manifest(m, tmp_path / "lists" / "train.csv")
    row = elsewhere.read_text().splitlines()[1].split(",")
    assert os.path.isabs(row[1])
    assert read_manifest(elsewhere).path(0) == corpus / "d.ogg"


def test_roundtrip_tsv(corpus, tmp_path):
    m = scan_directory(corpus, show_progress=False)
    out = write_manifest(m, tmp_path / "train.tsv", format="tsv")
    lines = out.read_text().splitlines()
    assert lines[0] == str(corpus) and lines[1] == "d.ogg\t12000"
    back = read_manifest(out)
    assert back.fileids.tolist() == m.fileids.tolist()
    assert back.path(1) == corpus / "spk1" / "a.wav"


def test_csv_quoting_and_column_order(tmp_path):
    (tmp_path / "m.csv").write_text(
        'num_samples,path,fileid\n100,"dir,with comma/x.wav","x,1"\n200,y.wav,y\n'
    )
    m = read_manifest(tmp_path / "m.csv")
    assert m.fileids.tolist() == ["x,1", "y"]
    assert m.paths.tolist() == ["dir,with comma/x.wav", "y.wav"]
    assert m.num_samples.tolist() == [100, 200]
    write_manifest(m, tmp_path / "n.csv")
    assert read_manifest(tmp_path / "n.csv").fileids.tolist() == ["x,1", "y"]


def test_malformed_manifests(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("fileid,path,num_samples\na,a.wav,10\nb,b.wav\nc,c.wav,abc\n")
    with pytest.raises(DataError, match=r"bad\.csv: expected 3 columns .* line\(s\) 3"):
        read_manifest(bad)
    bad.write_text("fileid,path,num_samples\na,a.wav,10\nc,c.wav,abc\nd,d.wav,1.5\n")
    with pytest.raises(DataError, match=r"num_samples must hold integers.*line 3: 'abc'.*line 4"):
        read_manifest(bad)
    bad.write_text("name,file\na,b\n")
    with pytest.raises(DataError, match="lacks the manifest columns"):
        read_manifest(bad)
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "missing.csv")


def test_scan_reports_every_bad_file(corpus):
    (corpus / "spk1" / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (corpus / "spk2" / "empty.wav").write_bytes(b"")
    sf.write(corpus / "spk2" / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError) as exc:
        scan_directory(corpus, show_progress=False)
    msg = str(exc.value)
    assert "3 unreadable audio files" in msg
    assert "corrupt.wav: cannot decode" in msg
    assert "empty.wav: empty file" in msg
    assert "zero.wav: contains no audio samples" in msg
    m = scan_directory(corpus, skip_errors=True, show_progress=False)
    assert len(m) == 4


def test_tar_manifest_reads_in_place(corpus, tmp_path):
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(corpus, arcname=".")
    m = scan_tar(tar_path, show_progress=False)
    assert m.kind == "archive" and m.archives == ("shard.tar",)
    assert sorted(m.fileids.tolist()) == ["d", "spk1/a", "spk1/b", "spk2/c"]
    out = write_manifest(m, tmp_path / "shard.csv")
    header = out.read_text().splitlines()[0]
    assert header == "fileid,archive,byte_offset,byte_size,num_samples"
    back = read_manifest(out)
    before = set(os.listdir(tmp_path))
    for i in range(len(back)):
        fid = back.fileids[i]
        src = next(corpus.glob(fid + ".*"))
        raw = src.read_bytes()
        view = back.read_bytes(i)
        assert bytes(view) == raw  # offsets point at the member's data
        view.release()
        wav = back.load(i)
        np.testing.assert_array_equal(wav, load_audio(src))
        assert len(wav) == back.num_samples[i]
    assert set(os.listdir(tmp_path)) == before  # nothing extracted
    clone = pickle.loads(pickle.dumps(back))  # open maps are not pickled
    assert clone._maps == {} and len(clone.load(0)) == back.num_samples[0]
    back.close()


def test_compressed_tar_is_rejected(corpus, tmp_path):
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(corpus / "d.ogg", arcname="d.ogg")
    gz = tmp_path / "shard.tar"
    gz.write_bytes(gzip.compress(tar_path.read_bytes()))
    with pytest.raises(DataError, match="gzip-compressed archive"):
        scan_tar(gz, show_progress=False)


def test_validate_reports_everything_at_once(corpus, tmp_path):
    m = scan_directory(corpus, show_progress=False)
    out = write_manifest(m, corpus / "train.csv")
    assert validate_manifest(out, show_progress=False).ok
    assert validate_manifest(out, decode=True, show_progress=False).ok
    (corpus / "spk1" / "a.wav").unlink()
    (corpus / "spk1" / "b.flac").write_bytes(b"broken")
    text = out.read_text().replace("spk2/c.wav,16004", "spk2/c.wav,15000")
    out.write_text(text + "d,d.ogg,12000\n")
    report = validate_manifest(out, show_progress=False)
    assert not report.ok
    messages = [p.message for p in report.problems]
    assert len(messages) == 4, messages
    assert "'d' appears 2 times" in messages[0]
    assert any("a.wav: file not found" in s for s in messages)
    assert any("b.flac: cannot decode" in s for s in messages)
    assert any("num_samples is 15000 in the manifest but the file has 16004" in s for s in messages)
    with pytest.raises(DataError, match="4 problems"):
        report.raise_if_problems()
    assert cli_main(["manifest", "--validate", str(out), "--no-progress"]) == 1


def test_validate_archive_problems(corpus, tmp_path):
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(corpus / "d.ogg", arcname="d.ogg")
    out = write_manifest(scan_tar(tar_path, show_progress=False), tmp_path / "s.csv")
    rows = out.read_text().splitlines()
    rows.append("e,shard.tar,999999,10,100")  # beyond the end
    rows.append("f,gone.tar,0,10,100")  # missing archive
    out.write_text("\n".join(rows) + "\n")
    messages = [p.message for p in validate_manifest(out, show_progress=False).problems]
    assert len(messages) == 2, messages
    assert any("gone.tar: archive not found" in s for s in messages)
    assert any("outside the archive" in s for s in messages)


def test_cli_writes_manifest_from_folder(corpus, tmp_path, capsys):
    out = tmp_path / "m" / "train.csv"
    assert cli_main(["manifest", str(corpus), "-o", str(out), "--no-progress"]) == 0
    assert "4 utterances" in capsys.readouterr().out
    assert len(read_manifest(out)) == 4
    assert cli_main(["manifest", str(tmp_path / "nothing"), "-o", str(out)]) == 2


def test_concat_and_subset(corpus, tmp_path):
    m = scan_directory(corpus, show_progress=False)
    sub = m.subset([3, 1])
    assert sub.fileids.tolist() == ["spk2/c", "spk1/a"] and sub.num_samples.tolist() == [
        16004,
        16000,
    ]
    both = Manifest.concat([m, sub])
    assert len(both) == 6 and both.path(4) == corpus / "spk2" / "c.wav"


def test_crlf_blank_lines_and_tsv_extensions(tmp_path):
    (tmp_path / "m.csv").write_bytes(
        b"fileid,path,num_samples\r\na,a.wav,10\r\n\r\nb,b.wav,20\r\n\n"
    )
    m = read_manifest(tmp_path / "m.csv")
    assert m.fileids.tolist() == ["a", "b"] and m.paths.tolist() == ["a.wav", "b.wav"]
    assert m.num_samples.tolist() == [10, 20]
    (tmp_path / "m.tsv").write_text(
        "/data\nspk.1/utt.a.flac\t5\nv1.0/noext\t6\n.hidden/x.wav\t7\nplain\t8\n"
    )
    t = read_manifest(tmp_path / "m.tsv")
    assert t.root == Path("/data")
    assert t.fileids.tolist() == ["spk.1/utt.a", "v1.0/noext", ".hidden/x", "plain"]
    assert t.num_samples.tolist() == [5, 6, 7, 8]
    ref = [os.path.splitext(p)[0] for p in t.paths.tolist()]
    assert t.fileids.tolist() == ref


def test_large_manifest_blocks(tmp_path, monkeypatch):
    import spidrkit.data.manifest as manifest_module

    monkeypatch.setattr(
        manifest_module, "_CHUNK_BYTES", 64
    )  # many blocks, lines split across reads
    rows = [f"dir{i % 7}/utt{i},dir{i % 7}/utt{i}.flac,{1000 + i}" for i in range(500)]
    (tmp_path / "big.csv").write_text("fileid,path,num_samples\n" + "\n".join(rows) + "\n")
    m = read_manifest(tmp_path / "big.csv")
    assert len(m) == 500 and m.fileids[499] == "dir2/utt499" and m.num_samples[499] == 1499
    bad = rows[:]
    bad[321] = "x,y,12z"
    (tmp_path / "bad.csv").write_text("fileid,path,num_samples\n" + "\n".join(bad) + "\n")
    with pytest.raises(DataError, match=r"line 323: '12z'"):
        read_manifest(tmp_path / "bad.csv")
