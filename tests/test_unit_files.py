"""One module owns the units and feature file formats: every reader agrees with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spidrkit.errors import DataError
from spidrkit.units.files import (
    KeyIndex,
    Units,
    dedup_list,
    frame_units_by_key,
    list_features,
    load_features,
    match_keys,
    read_units,
    save_features,
    strip_extension,
    write_units,
)


def _write(path, lines) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_every_reader_honours_durations(tmp_path) -> None:
    from spidrkit.eval.abx.items import read_units_jsonl as abx_reader
    from spidrkit.lm.data import read_units_jsonl as lm_reader

    recs = [Units("spk/a.wav", [3, 5, 3], [2, 1, 3]), Units("b", [7], None)]
    write_units(recs, tmp_path / "u.jsonl")
    frames = {"spk/a": [3, 3, 5, 3, 3, 3], "b": [7]}
    assert {k: v.tolist() for k, v in frame_units_by_key(tmp_path / "u.jsonl").items()} == frames
    assert {k: v.tolist() for k, v in abx_reader(tmp_path / "u.jsonl").items()} == frames
    lm_frames = lm_reader(tmp_path / "u.jsonl", dedup=False)
    assert [r.units for r in lm_frames] == [frames["spk/a"], frames["b"]]  # was: durations ignored
    assert [r.units for r in lm_reader(tmp_path / "u.jsonl", dedup=True)] == [[3, 5, 3], [7]]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"units": [1]}, "expected"),
        ({"audio": "a", "units": [1, "2"]}, "list of integers"),
        ({"audio": "a", "units": [1, 2], "durations": [1]}, "one integer >= 1 per unit"),
        ({"audio": "a", "units": [1], "durations": [0]}, "one integer >= 1 per unit"),
    ],
)
def test_bad_units_lines_name_file_and_line(tmp_path, line, problem) -> None:
    _write(tmp_path / "u.jsonl", [{"audio": "ok", "units": [1]}, line])
    with pytest.raises(DataError, match=problem) as exc:
        read_units(tmp_path / "u.jsonl")
    assert "u.jsonl:2:" in str(exc.value)


def test_dedup_list() -> None:
    assert dedup_list([3, 3, 5, 5, 5, 3]) == [3, 5, 3]
    assert dedup_list(torch.tensor([1, 1])) == [1]
    assert dedup_list([]) == []


def test_key_matching_from_the_end() -> None:
    assert strip_extension("a/b.opus") == "a/b" and strip_extension("a/b.c") == "a/b.c"
    index = KeyIndex(["dev/aAbc", "/data/lexical/dev/aAbc.wav", "test/aAbc", "other"])
    assert index.find("/data/lexical/dev/aAbc.wav") == "/data/lexical/dev/aAbc.wav"
    assert index.find("/elsewhere/dev/aAbc.flac") == "dev/aAbc"
    assert index.find("nothing") is None
    with pytest.raises(DataError, match="several entries match"):
        index.find("aAbc")  # dev/ or test/?
    # ABX and unit quality: item fileids are shorter than the audio paths written in the JSONL
    assert match_keys(["corpus/spk1/u1", "corpus/spk1/u2"], ["spk1/u1", "u2", "zz"]) == {
        "spk1/u1": "corpus/spk1/u1",
        "u2": "corpus/spk1/u2",
    }


def test_feature_files(tmp_path) -> None:
    x = torch.randn(5, 3)
    save_features(tmp_path / "a" / "x.pt", x, "pt")
    save_features(tmp_path / "y.npy", x, "npy")
    np.save(tmp_path / "z.npy", np.zeros(4, dtype=np.float32))  # 1-D -> [frames, 1]
    assert [fid for fid, _ in list_features(tmp_path)] == ["a/x", "y", "z"]
    assert torch.equal(load_features(tmp_path / "a" / "x.pt"), x)
    assert torch.equal(load_features(tmp_path / "y.npy"), x)
    assert load_features(tmp_path / "z.npy").shape == (4, 1)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="bad.pt: cannot read features"):
        load_features(tmp_path / "bad.pt")
