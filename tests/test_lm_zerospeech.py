"""Zero-shot task scoring with a hand-made scorer: pairing, ties, voice averaging, submissions."""

from __future__ import annotations

import json

import pytest

from spidrkit.errors import DataError
from spidrkit.lm.evaluate import UnitsLookup, format_table, write_submission
from spidrkit.lm.zerospeech import evaluate_task, load_task, pair_score

LEXICAL_HEADER = "filename,id,voice,correct,word,phones,frequency,length\n"
SYNTACTIC_HEADER = "filename,voice,type,subtype,id,correct,transcription\n"


def _write(folder, header, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gold.csv").write_text(header + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return folder


def test_pair_score_ties():
    assert pair_score(2.0, 1.0) == 1.0
    assert pair_score(1.0, 1.0) == 0.5
    assert pair_score(-3.0, -1.0) == 0.0


@pytest.fixture
def lexical(tmp_path):
    rows = [  # filename, id, voice, correct, word, phones, frequency, length
        ("w1A", "w1", "A", 1, "cat", "k ae t", 10, 3),
        ("n1A", "w1", "A", 0, "", "k ae p", "", 3),
        ("w1B", "w1", "B", 1, "cat", "k ae t", 10, 3),
        ("n1B", "w1", "B", 0, "", "k ae p", "", 3),
        ("w1C", "w1", "C", 1, "cat", "k ae t", 10, 3),
        ("n1C", "w1", "C", 0, "", "k ae p", "", 3),
        ("w2A", "w2", "A", 1, "dog", "d ao g", 0, 3),
        ("n2A", "w2", "A", 0, "", "d ao b", "", 3),
        ("w2B", "w2", "B", 1, "dog", "d ao g", 0, 3),
        ("n2B", "w2", "B", 0, "", "d ao b", "", 3),
        ("w3A", "w3", "A", 1, "sun", "s ah n", 2, 3),
        ("n3A", "w3", "A", 0, "", "s ah m", "", 3),
        ("m3A", "w3", "A", 0, "", "s ih n", "", 3),
        ("w4A", "w4", "A", 1, "hat", "h ae t", 5, 3),  # no non-word: unpaired
    ]
    scores = {
        "w1A": 5,
        "n1A": 3,  # 1
        "w1B": 2,
        "n1B": 2,  # tie 0.5
        "w1C": -1,
        "n1C": -4,  # 1           -> w1 = 0.8333 (in vocab)
        "w2A": 1,
        "n2A": 4,  # 0
        "w2B": 1,
        "n2B": 0,  # 1             -> w2 = 0.5 (frequency 0: out of vocab)
        "w3A": 3,
        "n3A": 1,
        "m3A": 5,  # 1, 0 -> w3 = 0.5 (in vocab)
        "w4A": 0,
    }
    return _write(tmp_path / "lexical" / "dev", LEXICAL_HEADER, rows), scores


def test_lexical_averages_voices_then_ids(lexical):
    folder, scores = lexical
    task = load_task(folder)
    assert task.kind == "lexical" and task.name == "lexical/dev"
    result = evaluate_task(task, scores)
    assert result.accuracy == pytest.approx((5 / 6 + 0.5 + 0.5) / 3)
    # a flat mean over pairs would give 4.5 / 7: the voice averaging matters
    assert result.accuracy != pytest.approx(4.5 / 7)
    assert result.by["in_vocab"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert result.num_pairs == 7 and result.num_items == 3
    assert result.unpaired == ["w4A"] and result.missing == []


def test_missing_scores_are_reported_and_left_out(lexical):
    folder, scores = lexical
    del scores["n2A"]
    result = evaluate_task(load_task(folder), scores)
    assert result.missing == ["n2A"]
    assert result.accuracy == pytest.approx((5 / 6 + 1.0 + 0.5) / 3)  # w2 keeps voice B only


def test_syntactic_pairs_by_type_and_subtype(tmp_path):
    rows = [  # filename, voice, type, subtype, id, correct, transcription
        ("a1", "A", "T1", "s1", 1, 1, "x"),
        ("a0", "A", "T1", "s1", 1, 0, "x"),
        ("b1", "B", "T1", "s1", 1, 1, "x"),
        ("b0", "B", "T1", "s1", 1, 0, "x"),
        # same id and voice, another subtype: a separate pair
        ("c1", "A", "T1", "s2", 1, 1, "x"),
        ("c0", "A", "T1", "s2", 1, 0, "x"),
        ("d1", "A", "T2", "s1", 1, 1, "x"),
        ("d0", "A", "T2", "s1", 1, 0, "x"),
        ("e1", "A", "T2", "s1", 2, 1, "x"),
        ("e0", "A", "T2", "s1", 2, 0, "x"),
        ("f0", "A", "T2", "s1", 3, 0, "x"),  # unpaired
    ]
    folder = _write(tmp_path / "syntactic" / "dev", SYNTACTIC_HEADER, rows)
    scores = {
        "a1": 1,
        "a0": 0,
        "b1": 0,
        "b0": 1,
        "c1": 1,
        "c0": 0,
        "d1": 0.25,
        "d0": 0.25,
        "e1": -2,
        "e0": -1,
        "f0": 0,
    }
    task = load_task(folder)
    assert task.kind == "syntactic"
    r = evaluate_task(task, scores)
    assert r.accuracy == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert r.by == {"T1": pytest.approx(0.75), "T2": pytest.approx(0.25)}
    assert r.by_subtype == {"T1/s1": 0.5, "T1/s2": 1.0, "T2/s1": 0.25}
    assert r.num_pairs == 5 and r.num_items == 4 and r.unpaired == ["f0"]


def test_storycloze_common_layouts(tmp_path):
    flat = tmp_path / "sSC"
    flat.mkdir()
    for name in ["s1_true", "s1_false", "s2_true", "s2_false", "s3_true"]:
        (flat / f"{name}.wav").write_bytes(b"")
    task = load_task(flat, "storycloze")
    assert task.name == "sSC" and len(task.items) == 5
    r = evaluate_task(
        task, {"s1_true": -1.0, "s1_false": -2.0, "s2_true": -3, "s2_false": -3, "s3_true": 0}
    )
    assert r.accuracy == 0.75 and r.unpaired == ["s3_true"]

    nested = tmp_path / "tSC"
    for label in ["correct", "incorrect"]:
        (nested / label).mkdir(parents=True)
        for i in range(2):
            (nested / label / f"story{i}.flac").write_bytes(b"")
    task = load_task(nested)
    assert {it.filename for it in task.items if it.correct} == {"correct/story0", "correct/story1"}
    r = evaluate_task(
        task,
        {"correct/story0": 1, "incorrect/story0": 0, "correct/story1": 0, "incorrect/story1": 1},
    )
    assert r.accuracy == 0.5 and r.num_pairs == 2

    (nested / "other.wav").write_bytes(b"")
    with pytest.raises(DataError, match="cannot tell the ending"):
        load_task(nested)


def test_storycloze_gold_csv(tmp_path):
    # the synthetic corpus's topic StoryCloze columns (spidrkit.synth), voices averaged per story
    header = "filename,voice,id,correct,topic,ending_topic,transcription\n"
    rows = [
        ("x1", "v1", 7, 1, "farm", "farm", "a. b."),
        ("x0", "v1", 7, 0, "farm", "sea", "a. c."),
        ("y1", "v2", 7, 1, "farm", "farm", "a. b."),
        ("y0", "v2", 7, 0, "farm", "sea", "a. c."),
        ("z1", "v1", 8, 1, "sea", "sea", "d. e."),
        ("z0", "v1", 8, 0, "sea", "farm", "d. f."),
    ]
    folder = _write(tmp_path / "storycloze" / "dev", header, rows)
    task = load_task(folder)
    assert task.kind == "storycloze" and task.name == "storycloze/dev"
    r = evaluate_task(task, {"x1": 1, "x0": 0, "y1": 0, "y0": 0, "z1": -5, "z0": -4})
    assert r.accuracy == pytest.approx((0.75 + 0.0) / 2) and r.num_items == 2 and r.num_pairs == 3


def test_bad_gold_files(tmp_path):
    folder = _write(
        tmp_path / "bad", "filename,voice,type,subtype,correct\n", [("a", "A", "t", "s", 1)]
    )
    with pytest.raises(DataError, match="missing \\['id'\\]"):
        load_task(folder)
    folder = _write(tmp_path / "bad2", LEXICAL_HEADER, [("a", 1, "A", "yes", "w", "p", 1, 1)])
    with pytest.raises(DataError, match="bad2/gold.csv:2: 'correct'"):
        load_task(folder)
    with pytest.raises(DataError, match="not found"):
        load_task(tmp_path / "nowhere")


def test_submission_format(tmp_path):
    scores = {"aAbc": -1.2345678901234567, "dev/xYz": -0.5, "q": 3.0}
    path = write_submission(tmp_path / "out" / "lexical" / "dev.txt", scores)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    back = {}
    for line in lines:
        name, value = line.split(" ")
        back[name] = float(value)
    assert back == scores  # every digit kept


def test_units_lookup_matches_by_path_suffix(tmp_path):
    records = tmp_path / "units.jsonl"
    lines = [
        {"audio": "aAbc", "units": [1, 1, 2]},
        {"audio": "sSC/s1_true.wav", "units": [3]},
        {"audio": "tSC/s1_true.wav", "units": [4]},
        {"audio": str(tmp_path / "lexical" / "dev" / "zz.wav"), "units": [5, 5]},
        {"audio": "dup", "units": [6]},
        {"audio": "dup.flac", "units": [7]},
    ]
    records.write_text("".join(json.dumps(x) + "\n" for x in lines))
    lookup = UnitsLookup.from_jsonl(records)
    assert lookup.find(tmp_path / "lexical" / "dev" / "aAbc.wav") == [1, 2]
    assert lookup.find(tmp_path / "data" / "tSC" / "s1_true") == [4]
    assert lookup.find(tmp_path / "lexical" / "dev" / "zz") == [5]
    assert lookup.find(tmp_path / "nothing") is None
    with pytest.raises(DataError, match="equally well"):
        lookup.find(tmp_path / "other" / "dup.wav")
    assert lookup.find(tmp_path / "other" / "s1_true.wav") is None
    with pytest.raises(DataError, match="no units for 1 task file"):
        lookup([tmp_path / "aAbc.wav", tmp_path / "missing.wav"])


def test_table_mentions_every_metric(lexical):
    folder, scores = lexical
    text = format_table([evaluate_task(load_task(folder), scores)])
    assert "sWUGGY all" in text and "sWUGGY in-vocab" in text and "61.11" in text
    assert "1 unpaired" in text
