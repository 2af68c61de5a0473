"""Built-in checks of a synthetic corpus: files, alignments, inventory, splits, items, gold files.

:func:`check_corpus` reads a built corpus and reports every problem at once;
:func:`verify_determinism` rebuilds it from ``corpus.json`` into a temporary folder and compares the
checksums file by file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import wave
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.synth.minimal_pairs import LEXICAL_COLUMNS, STORYCLOZE_COLUMNS, SYNTACTIC_COLUMNS
from spidrkit.synth.phones import INVENTORY, PHONES, SILENCE

SPLITS = ("train", "dev", "test")
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
FRAME = 160
PAIR_KEYS = {
    "lexical": (LEXICAL_COLUMNS, ("id", "voice")),
    "syntactic": (SYNTACTIC_COLUMNS, ("id", "voice", "type", "subtype")),
    "storycloze": (STORYCLOZE_COLUMNS, ("id", "voice")),
}


@dataclass
class CheckReport:
    """Problems found (empty when the corpus is sound) and what was looked at."""

    problems: list[str] = field(default_factory=list)
    files: int = 0
    phones_used: dict[str, int] = field(default_factory=dict)  # label -> frames in train

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"corpus OK: {self.files} audio files, {len(self.phones_used)} labels used in train"
            )
        head = f"{len(self.problems)} problem(s):"
        return "\n".join([head] + [f"  - {p}" for p in self.problems[:50]])


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _wav_info(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def _check_split(root: Path, split: str, report: CheckReport) -> dict[str, str]:
    """Check one split; return fileid -> speaker."""
    folder = root / split
    bad = report.problems.append
    _, manifest = _read_csv(folder / "manifest.csv")
    _, utts = _read_csv(folder / "utterances.csv")
    speaker_of = {u["fileid"]: u["speaker"] for u in utts}
    length: dict[str, int] = {}
    for row in manifest:
        fid, n = row["fileid"], int(row["num_samples"])
        length[fid] = n
        wav = folder / row["path"]
        if not wav.exists():
            bad(f"{split}: {wav} listed in manifest.csv is missing")
            continue
        report.files += 1
        rate, ch, width, frames = _wav_info(wav)
        if (rate, ch, width) != (SAMPLE_RATE, 1, 2):
            bad(f"{wav}: {rate} Hz, {ch} channel(s), {8 * width} bit; expected 16 kHz mono 16 bit")
        if frames != n:
            bad(f"{wav}: {frames} samples, manifest.csv says {n}")
        if fid not in speaker_of:
            bad(f"{split}: {fid} is in manifest.csv but not in utterances.csv")
    # frame labels cover each file to within one frame
    seen = set()
    for line in open(folder / "phones.jsonl"):
        d = json.loads(line)
        seen.add(d["name"])
        expected = length.get(d["name"])
        if expected is None:
            bad(f"{split}/phones.jsonl: {d['name']} is not in manifest.csv")
            continue
        if abs(len(d["phones"]) * FRAME - expected) > FRAME:
            bad(
                f"{split}/phones.jsonl: {d['name']} has {len(d['phones'])} frames "
                f"for {expected} samples"
            )
        unknown = set(d["phones"]) - set(INVENTORY)
        if unknown:
            bad(f"{split}/phones.jsonl: {d['name']} uses labels outside the inventory: {unknown}")
        if split == "train":
            for lab in d["phones"]:
                report.phones_used[lab] = report.phones_used.get(lab, 0) + 1
    if seen != set(length):
        bad(f"{split}/phones.jsonl covers {len(seen)} files, manifest.csv lists {len(length)}")
    # segment alignments tile the file
    for line in open(folder / "alignments.jsonl"):
        d = json.loads(line)
        segs, dur = d["segments"], length.get(d["name"], 0) / SAMPLE_RATE
        if not segs or segs[0][1] != 0 or abs(segs[-1][2] - dur) > 0.01:
            bad(f"{split}/alignments.jsonl: {d['name']} does not cover [0, {dur:.3f}] s")
        if any(abs(a[2] - b[1]) > 1e-4 for a, b in zip(segs, segs[1:], strict=False)):
            bad(f"{split}/alignments.jsonl: {d['name']} has gaps or overlaps")
    # ABX items
    lines = (folder / "abx.item").read_text().splitlines()
    if not lines or lines[0] != ITEM_HEADER:
        bad(f"{split}/abx.item: header must be {ITEM_HEADER!r}")
    for k, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if len(parts) != 7:
            bad(f"{split}/abx.item line {k}: {len(parts)} fields, expected 7")
            continue
        fid, on, off, ph, prev, nxt, spk = parts
        if fid not in length:
            bad(f"{split}/abx.item line {k}: {fid} is not in manifest.csv")
            continue
        if not 0 <= float(on) < float(off) <= length[fid] / SAMPLE_RATE + 1e-4:
            bad(f"{split}/abx.item line {k}: bad times {on}-{off}")
        if SILENCE in (ph, prev, nxt) or not {ph, prev, nxt} <= set(PHONES):
            bad(f"{split}/abx.item line {k}: phones {ph} {prev} {nxt} not all speech phones")
        if spk != speaker_of.get(fid):
            bad(
                f"{split}/abx.item line {k}: speaker {spk}, utterances.csv says "
                f"{speaker_of.get(fid)}"
            )
    return speaker_of


def _check_pairs(root: Path, task: str, split: str, report: CheckReport) -> None:
    bad = report.problems.append
    folder = root / task / split
    columns, key = PAIR_KEYS[task]
    header, rows = _read_csv(folder / "gold.csv")
    if tuple(header) != columns:
        bad(f"{folder}/gold.csv: columns {header}, expected {list(columns)}")
        return
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if not (folder / f"{row['filename']}.wav").exists():
            bad(f"{folder}: {row['filename']}.wav listed in gold.csv is missing")
        else:
            report.files += 1
        groups[tuple(row[k] for k in key)].append(row)
    names = Counter(r["filename"] for r in rows)
    if any(c > 1 for c in names.values()):
        bad(f"{folder}/gold.csv: repeated file names")
    voices = defaultdict(set)
    for k, group in groups.items():
        if sorted(r["correct"] for r in group) != ["0", "1"]:
            bad(f"{folder}/gold.csv: group {k} is not one correct and one wrong item")
            continue
        voices[k[0]].add(k[1])
        if task == "lexical":
            a, b = group
            if a["length"] != b["length"] or len(a["phones"].split()) != int(a["length"]):
                bad(f"{folder}/gold.csv: pair {k} differs in length")
            if a["phones"] == b["phones"]:
                bad(f"{folder}/gold.csv: pair {k} has identical phones")
        elif task == "syntactic":
            wa, wb = (r["transcription"].split() for r in group)
            reordered = sorted(wa) == sorted(wb)
            one_word = len(wa) == len(wb) and sum(x != y for x, y in zip(wa, wb, strict=True)) == 1
            if wa == wb or not (reordered or one_word):
                bad(f"{folder}/gold.csv: pair {k} is not a minimal pair")
    if len({len(v) for v in voices.values()}) > 1:
        bad(f"{folder}/gold.csv: ids are not all spoken by the same number of voices")


def check_corpus(out_dir: str | Path, checksums: bool = True) -> CheckReport:
    """Check a built corpus; every problem is listed in the returned report."""
    root = Path(out_dir)
    report = CheckReport()
    if not (root / "corpus.json").exists():
        report.problems.append(f"{root}/corpus.json is missing: not a spidrkit synthetic corpus")
        return report
    speakers = {}
    for split in SPLITS:
        try:
            speakers[split] = set(_check_split(root, split, report).values())
        except FileNotFoundError as exc:
            report.problems.append(f"{split}: {exc.filename} is missing")
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        shared = speakers.get(a, set()) & speakers.get(b, set())
        if shared:
            report.problems.append(f"speakers {sorted(shared)} occur in both {a} and {b}")
    missing = set(INVENTORY) - set(report.phones_used)
    if missing:
        report.problems.append(f"phones never used in train: {sorted(missing)}")
    for task in PAIR_KEYS:
        for split in ("dev", "test"):
            try:
                _check_pairs(root, task, split, report)
            except FileNotFoundError as exc:
                report.problems.append(f"{task}/{split}: {exc.filename} is missing")
    if checksums:
        sums = root / "SHA256SUMS"
        for line in sums.read_text().splitlines() if sums.exists() else []:
            digest, rel = line.split("  ", 1)
            path = root / rel
            if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                report.problems.append(f"{rel} does not match SHA256SUMS")
    return report


def verify_determinism(out_dir: str | Path, workers: int | None = None) -> list[str]:
    """Rebuild the corpus of ``out_dir`` (same preset and seed) and list the files that differ."""
    from spidrkit.synth.corpus import load_corpus_info, make_corpus

    root = Path(out_dir)
    info = load_corpus_info(root)
    preset = info["preset"]
    base = preset["name"].split("-")[0]
    hours = preset["hours"] if preset["name"] != base else None
    with tempfile.TemporaryDirectory(prefix="spidrkit-synth-") as tmp:
        make_corpus(
            tmp, preset=base, seed=info["seed"], hours=hours, workers=workers, show_progress=False
        )
        mine = (root / "SHA256SUMS").read_text().splitlines()
        again = (Path(tmp) / "SHA256SUMS").read_text().splitlines()
    a = {line.split("  ", 1)[1]: line for line in mine}
    b = {line.split("  ", 1)[1]: line for line in again}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
