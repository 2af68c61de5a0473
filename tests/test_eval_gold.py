"""Gold phones as units: the unit-LM topline's inputs."""

from __future__ import annotations

import json
import re

import pytest

from spidrkit.errors import DataError
from spidrkit.eval.gold import write_gold_phone_units, write_gold_task_units
from spidrkit.units.files import read_units


def _phones(path, rows) -> None:
    path.write_text("".join(json.dumps({"name": n, "phones": p}) + "\n" for n, p in rows))


def test_train_phones_become_deduplicated_units(tmp_path):
    _phones(tmp_path / "phones.jsonl", [("u1", ["SIL", "SIL", "k", "k", "ae", "t", "SIL"])])
    vocab = write_gold_phone_units(tmp_path / "phones.jsonl", tmp_path / "train.jsonl")
    assert vocab == {"SIL": 0, "ae": 1, "k": 2, "t": 3}
    [rec] = read_units(tmp_path / "train.jsonl")
    assert rec.audio == "u1" and rec.units == [0, 2, 1, 3, 0]


def test_lexical_items_are_framed_by_silence(tmp_path):
    _phones(tmp_path / "phones.jsonl", [("u1", ["SIL", "k", "ae", "t", "ae"])])
    vocab = write_gold_phone_units(tmp_path / "phones.jsonl", tmp_path / "train.jsonl")
    task = tmp_path / "lexical"
    task.mkdir()
    (task / "gold.csv").write_text(
        "filename,id,voice,correct,word,phones\nf1,0,s0,1,cat,k ae t\nf2,0,s0,0,tak,t ae k\n"
    )
    assert write_gold_task_units(task, tmp_path / "lex.jsonl", vocab) == 2
    recs = {r.audio: r.units for r in read_units(tmp_path / "lex.jsonl")}
    assert recs == {"f1": [0, 2, 1, 3, 0], "f2": [0, 3, 1, 2, 0]}


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("filename,id,correct\nf1,0,1\n", "needs columns"),
        ("filename,phones\nf1,k zz\n", "['zz'] not in the training phones"),
        ("filename,phones\nf1,\n", "gold.csv:2: no phones"),
    ],
)
def test_bad_task_files_are_named(tmp_path, csv, message):
    _phones(tmp_path / "phones.jsonl", [("u1", ["SIL", "k"])])
    vocab = write_gold_phone_units(tmp_path / "phones.jsonl", tmp_path / "train.jsonl")
    (tmp_path / "gold.csv").write_text(csv)
    with pytest.raises(DataError, match=re.escape(message)):
        write_gold_task_units(tmp_path, tmp_path / "lex.jsonl", vocab)


def test_bad_phones_file_names_the_line(tmp_path):
    (tmp_path / "phones.jsonl").write_text('{"name": "u1", "phones": ["a"]}\n{"name": 3}\n')
    with pytest.raises(DataError, match=r"phones.jsonl:2: expected"):
        write_gold_phone_units(tmp_path / "phones.jsonl", tmp_path / "out.jsonl")
