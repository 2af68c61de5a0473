"""The tiny synthetic corpus: determinism, alignments vs audio, splits, items, gold files, CLI."""

from __future__ import annotations

import csv
import json
import wave
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="needs the synth extra")
pytest.importorskip("soxr", reason="needs the synth extra")

from spidrkit.cli.main import main  # noqa: E402
from spidrkit.errors import DataError  # noqa: E402
from spidrkit.synth import INVENTORY, check_corpus, load_corpus_info, make_corpus  # noqa: E402
from spidrkit.synth.espeak import ESpeak  # noqa: E402
from spidrkit.synth.phones import VOWELS  # noqa: E402
from spidrkit.synth.speakers import make_speakers  # noqa: E402

SPLITS = ("train", "dev", "test")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> dict[str, dict]:
    return {d["name"]: d for d in map(json.loads, path.read_text().splitlines())}


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)


def test_espeak_calls_do_not_depend_on_history():
    es = ESpeak()
    a, b = make_speakers(1, 1, 1, seed=0)[:2]
    va, vb = es.add_voice("a", a.voice_file_text()), es.add_voice("b", b.voice_file_text())
    first = es.synthesize("the farmer feeds the goats", va, 170)
    es.synthesize("a completely different sentence", vb, 140)
    again = es.synthesize("the farmer feeds the goats", va, 170)
    assert np.array_equal(first.samples, again.samples) and first.phonemes == again.phonemes
    assert len(first.samples) > 22050 * 0.8 and len(first.phonemes) >= 12


def test_tiny_corpus_passes_its_checks(tiny_corpus):
    report = check_corpus(tiny_corpus.out_dir)
    assert report.ok, report.summary()
    assert set(report.phones_used) == set(INVENTORY)  # every phone is spoken in train
    total = sum(s.utterances for s in tiny_corpus.splits.values())
    assert 45 <= total <= 60


def test_same_seed_gives_byte_identical_files(tiny_corpus, tmp_path):
    again = make_corpus(tmp_path / "again", preset="tiny", seed=0, workers=1, show_progress=False)
    ours = (tiny_corpus.out_dir / "SHA256SUMS").read_text()
    assert (again.out_dir / "SHA256SUMS").read_text() == ours
    for rel in ("train/abx.item", "corpus.json", "lexical/dev/gold.csv"):
        assert (again.out_dir / rel).read_bytes() == (tiny_corpus.out_dir / rel).read_bytes()
    # and the checksums are those of the files
    assert check_corpus(again.out_dir).ok


def test_alignments_match_the_audio(tiny_corpus):
    sil, vowel = [], []
    for split in SPLITS:
        folder = tiny_corpus.out_dir / split
        labels = _jsonl(folder / "phones.jsonl")
        aligns = _jsonl(folder / "alignments.jsonl")
        for row in _csv(folder / "manifest.csv"):
            x = _wav(folder / row["path"])
            n = int(row["num_samples"])
            assert len(x) == n and n % 320 == 0
            frames = labels[row["fileid"]]["phones"]
            assert abs(len(frames) * 160 - n) <= 160
            segs = aligns[row["fileid"]]["segments"]
            assert segs[0][1] == 0 and abs(segs[-1][2] - n / 16000) < 1e-4
            for i, lab in enumerate(frames):
                t = (i * 160 + 80) / 16000
                seg = next(s for s in segs if s[1] <= t < s[2])
                assert seg[0] == lab
                rms = float(np.sqrt(np.mean(x[i * 160 : (i + 1) * 160] ** 2)))
                (sil if lab == "SIL" else vowel if lab in VOWELS else []).append(rms)
    # silence frames hold only the noise floor; vowel frames are loud
    assert np.median(sil) < 40 and np.percentile(vowel, 2) > 10 * np.median(sil)


def test_splits_have_disjoint_speakers(tiny_corpus):
    info = load_corpus_info(tiny_corpus.out_dir)
    spk = {s["id"]: s for s in info["speakers"]}
    assert len(spk) >= 8
    assert len({(s["timbre"], s["pitch_base"], s["rate"]) for s in spk.values()}) == len(spk)
    used = {}
    for split in SPLITS:
        rows = _csv(tiny_corpus.out_dir / split / "utterances.csv")
        used[split] = {r["speaker"] for r in rows}
        assert all(spk[s]["split"] == split for s in used[split])
        assert all(r["fileid"].startswith(r["speaker"] + "_") for r in rows)
    assert not used["train"] & used["dev"] and not used["train"] & used["test"]
    assert not used["dev"] & used["test"]
    assert len(used["train"]) >= 4 and len(used["dev"]) >= 2 and len(used["test"]) >= 2


def test_item_files_list_inner_phones(tiny_corpus):
    for split in SPLITS:
        folder = tiny_corpus.out_dir / split
        aligns = _jsonl(folder / "alignments.jsonl")
        speaker = {r["fileid"]: r["speaker"] for r in _csv(folder / "utterances.csv")}
        lines = (folder / "abx.item").read_text().splitlines()
        assert lines[0] == "#file onset offset #phone prev-phone next-phone speaker"
        expected = []
        for name, d in aligns.items():
            segs = d["segments"]
            for k in range(1, len(segs) - 1):
                if "SIL" not in (segs[k - 1][0], segs[k][0], segs[k + 1][0]):
                    expected.append(
                        (name, segs[k][1], segs[k][2], segs[k][0], segs[k - 1][0],
                         segs[k + 1][0], speaker[name])
                    )  # fmt: skip
        rows = [line.split() for line in lines[1:]]
        assert len(rows) == len(expected) > 100
        for row, exp in zip(sorted(rows), sorted(expected), strict=True):
            assert row[0] == exp[0] and row[3:] == list(exp[3:])
            assert abs(float(row[1]) - exp[1]) <= 1e-4 and abs(float(row[2]) - exp[2]) <= 1e-4


def test_gold_files_columns_and_pairing(tiny_corpus):
    root = tiny_corpus.out_dir
    train_words = Counter(
        w
        for r in _csv(root / "train" / "utterances.csv")
        for w in r["text"].replace(".", "").split()
    )
    speakers = {s: {r["speaker"] for r in _csv(root / s / "utterances.csv")} for s in SPLITS}
    columns = {
        "lexical": ["filename", "id", "voice", "correct", "word", "phones", "frequency", "length"],
        "syntactic": ["filename", "voice", "type", "subtype", "id", "correct", "transcription"],
        "storycloze": ["filename", "voice", "id", "correct", "topic", "ending_topic",
                       "transcription"],
    }  # fmt: skip
    for task, cols in columns.items():
        for split in ("dev", "test"):
            folder = root / task / split
            with open(folder / "gold.csv", newline="") as f:
                reader = csv.DictReader(f)
                assert reader.fieldnames == cols
                rows = list(reader)
            assert rows and all((folder / f"{r['filename']}.wav").exists() for r in rows)
            assert {r["voice"] for r in rows} <= speakers[split] and len(
                {r["voice"] for r in rows}
            ) >= 2
            groups = defaultdict(list)
            for r in rows:
                key = (r["id"], r["voice"]) + (
                    (r["type"], r["subtype"]) if task == "syntactic" else ()
                )
                groups[key].append(r)
            for group in groups.values():
                good, bad = sorted(group, key=lambda r: r["correct"], reverse=True)
                assert (good["correct"], bad["correct"]) == ("1", "0")
                if task == "lexical":
                    assert good["length"] == bad["length"] == str(len(good["phones"].split()))
                    assert good["phones"] != bad["phones"]
                    assert int(good["frequency"]) == train_words[good["word"]]
                elif task == "syntactic":
                    a, b = good["transcription"].split(), bad["transcription"].split()
                    assert a != b and (sorted(a) == sorted(b) or len(a) == len(b))
                else:
                    assert good["ending_topic"] == good["topic"] != bad["ending_topic"]
                    assert (
                        good["transcription"].split(". ")[:3]
                        == bad["transcription"].split(". ")[:3]
                    )
    syn = _csv(root / "syntactic" / "dev" / "gold.csv")
    assert {r["type"] for r in syn} == {"agreement", "word_order"}


def test_cli_check_and_errors(tiny_corpus, tmp_path, capsys):
    assert main(["synth", "--out", str(tiny_corpus.out_dir), "--check-only"]) == 0
    assert "corpus OK" in capsys.readouterr().out
    (tmp_path / "junk.txt").write_text("x")
    assert main(["synth", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and err.count("\n") == 1
    with pytest.raises(DataError):
        make_corpus(tmp_path, preset="tiny", overwrite=True)  # no corpus.json: never deleted
    assert (tmp_path / "junk.txt").exists()


def test_word_timings_follow_the_text(tiny_corpus):
    for split in SPLITS:
        folder = tiny_corpus.out_dir / split
        words = _jsonl(folder / "words.jsonl")
        aligns = _jsonl(folder / "alignments.jsonl")
        for row in _csv(folder / "utterances.csv"):
            timed = words[row["fileid"]]["words"]
            assert [w[0] for w in timed] == row["text"].replace(".", "").split()
            end = aligns[row["fileid"]]["segments"][-1][2]
            for a, b in zip(timed, timed[1:], strict=False):
                assert a[1] < a[2] <= b[1] + 1e-6
            assert 0 < timed[0][1] and timed[-1][2] < end
