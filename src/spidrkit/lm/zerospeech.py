"""Zero-shot spoken-LM tasks: sWUGGY (lexical), sBLIMP (syntactic), spoken/topic StoryCloze.

A task folder holds audio files and (usually) a ``gold.csv``; :func:`load_task` reads it into a
:class:`Task`, :func:`evaluate_task` turns per-file scores into accuracies (docs/lm.md, "Scores and accuracies"):

- each pair is (real, fake) in one pairing group; it scores 1 if real > fake, 0.5 if equal, 0
  otherwise (a group with several fakes, or several reals, contributes every real x fake pair,
  averaged);
- lexical groups share (id, voice), syntactic ones (id, voice, type, subtype), StoryCloze ones
  (id, voice); group scores are averaged over voices per item, then over items;
- lexical "in-vocab" keeps items whose real word has frequency > 0; syntactic accuracies are also
  given by type (mean over that type's items) and by subtype;
- a group lacking a real or a fake is reported as unpaired and left out; so is a file with no score.

Gold layouts (``docs/lm.md``): ZeroSpeech 2021 lexical ``filename,id,voice,correct,word,phones,
frequency,length``; syntactic ``filename,voice,type,subtype,id,correct,transcription``; StoryCloze
``gold.csv`` with at least ``filename,id,correct`` (optional ``voice``, others ignored), or, without
a ``gold.csv``, the common layout of files ``<id>_<label>.wav`` / ``<label>/<id>.wav`` with label
true / false (also correct / incorrect, pos / neg).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spidrkit.audio.io import AUDIO_EXTENSIONS
from spidrkit.errors import DataError
from spidrkit.utils.textfiles import duplicate_error, iter_lines

TaskKind = Literal["lexical", "syntactic", "storycloze"]
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "lexical": ("filename", "id", "voice", "correct"),
    "syntactic": ("filename", "voice", "type", "subtype", "id", "correct"),
    "storycloze": ("filename", "id", "correct"),
}
_TRUE_LABELS = {"true", "correct", "pos", "positive", "1"}
_FALSE_LABELS = {"false", "incorrect", "wrong", "neg", "negative", "0"}
_SUFFIX = re.compile(
    r"^(?P<id>.+?)[_\-.](?P<label>true|false|correct|incorrect|pos|neg|positive|negative)$", re.I
)


@dataclass(frozen=True)
class GoldItem:
    """One audio file of a task. ``correct``: real word / grammatical sentence / true ending."""

    filename: str
    correct: bool
    id: str
    voice: str = ""
    type: str = ""
    subtype: str = ""
    frequency: float | None = None


@dataclass(frozen=True)
class Task:
    """A loaded task folder. ``audio[filename]`` is the file's path (a stem path if not on disk)."""

    kind: TaskKind
    name: str
    folder: Path
    items: list[GoldItem]
    audio: dict[str, Path]


@dataclass(frozen=True)
class TaskResult:
    """Accuracies of one task, in [0, 1].

    ``accuracy``: all items; ``by``: lexical ``{"in_vocab": ...}``, syntactic ``{type: ...}``;
    ``by_subtype``: syntactic ``{"type/subtype": ...}``. ``num_pairs``: real/fake pairs scored;
    ``num_items``: items after averaging over voices. ``unpaired`` and ``missing`` list the files
    left out (no partner in their group / no score).
    """

    kind: TaskKind
    name: str
    accuracy: float
    num_pairs: int
    num_items: int
    by: dict[str, float] = field(default_factory=dict)
    by_subtype: dict[str, float] = field(default_factory=dict)
    unpaired: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _parse_correct(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE_LABELS:
        return True
    if v in _FALSE_LABELS:
        return False
    raise DataError(f"{where}: 'correct' must be 1/0 or true/false, got {value!r}")


def _parse_frequency(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        return None


def detect_kind(columns: list[str]) -> TaskKind:
    """Guess the task from a gold.csv header (syntactic has type/subtype, lexical has word)."""
    cols = set(columns)
    if {"type", "subtype"} <= cols:
        return "syntactic"
    if "word" in cols or "phones" in cols or "frequency" in cols:
        return "lexical"
    return "storycloze"


def _audio_index(folder: Path) -> dict[str, Path]:
    """Audio files under ``folder`` by path relative to it, without extension (posix)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
            out[p.relative_to(folder).with_suffix("").as_posix()] = p
    return out


def _read_gold(path: Path, kind: TaskKind | None) -> tuple[TaskKind, list[GoldItem]]:
    """Rows of a gold.csv; bounded lines, UTF-8, one row per filename (errors name the line)."""
    lines = (text for _, text in iter_lines(path, "gold.csv", max_line_bytes=1 << 20))
    reader = csv.DictReader(lines)
    try:
        columns = [c.strip() for c in reader.fieldnames or []]
        kind = kind or detect_kind(columns)
        missing = [c for c in REQUIRED_COLUMNS[kind] if c not in columns]
        if missing:
            raise DataError(
                f"{path}: a {kind} gold.csv needs columns {list(REQUIRED_COLUMNS[kind])}; "
                f"missing {missing}"
            )
        items = []
        first_line: dict[str, int] = {}
        for row in reader:
            lineno = reader.line_num
            where = f"{path}:{lineno}"
            if None in row or any(v is None for v in row.values()):
                raise DataError(f"{where}: expected {len(reader.fieldnames or [])} columns")
            row = {k.strip(): v.strip() for k, v in row.items()}
            name = row["filename"]
            if not name or not row["id"]:
                raise DataError(f"{where}: empty 'filename' or 'id'")
            if Path(name).suffix.lower() in AUDIO_EXTENSIONS:
                name = Path(name).with_suffix("").as_posix()
            if name in first_line:
                raise duplicate_error(path, "filename", name, first_line[name], lineno)
            first_line[name] = lineno
            items.append(
                GoldItem(
                    filename=name,
                    correct=_parse_correct(row["correct"], where),
                    id=row["id"],
                    voice=row.get("voice", ""),
                    type=row.get("type", ""),
                    subtype=row.get("subtype", ""),
                    frequency=_parse_frequency(row.get("frequency")),
                )
            )
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num + 1}: not a valid CSV line ({exc})") from None
    if not items:
        raise DataError(f"{path}: gold.csv has no rows")
    return kind, items


def _items_from_names(folder: Path, names: list[str]) -> list[GoldItem]:
    """StoryCloze without gold.csv: ``<id>_<label>`` files or ``<label>/<id>`` folders."""
    items = []
    for name in names:
        parts = name.split("/")
        m = _SUFFIX.match(parts[-1])
        if m:
            label, ident = m["label"].lower(), "/".join([*parts[:-1], m["id"]])
        elif len(parts) >= 2 and parts[-2].lower() in _TRUE_LABELS | _FALSE_LABELS:
            label, ident = parts[-2].lower(), "/".join([*parts[:-2], parts[-1]])
        else:
            raise DataError(
                f"{folder}: cannot tell the ending of {name!r}: without a gold.csv, StoryCloze "
                "files must be named <id>_true / <id>_false (or sit in true/ and false/ folders)"
            )
        items.append(GoldItem(filename=name, correct=label in _TRUE_LABELS, id=ident))
    return items


def load_task(folder: str | Path, kind: TaskKind | None = None, name: str | None = None) -> Task:
    """Read a task folder (``gold.csv`` + audio, or a StoryCloze folder of labelled files)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found")
    audio = _audio_index(folder)
    gold = folder / "gold.csv"
    if gold.is_file():
        kind, items = _read_gold(gold, kind)
    else:
        if kind not in (None, "storycloze"):
            raise DataError(f"{folder}: no gold.csv (a {kind} task needs one)")
        if not audio:
            raise DataError(f"{folder}: neither a gold.csv nor audio files found")
        kind, items = "storycloze", _items_from_names(folder, sorted(audio))
    seen: set[str] = set()
    for it in items:
        if it.filename in seen:
            raise DataError(f"{folder}: file {it.filename!r} is listed twice")
        seen.add(it.filename)
    paths = {it.filename: audio.get(it.filename, folder / it.filename) for it in items}
    return Task(kind, name or _default_name(folder, kind), folder, items, paths)


def _default_name(folder: Path, kind: TaskKind) -> str:
    """``lexical/dev``, ``syntactic/test`` (ZeroSpeech submission names); a StoryCloze folder keeps
    its own name, with its parent's when it is a split (``storycloze/dev``)."""
    if kind != "storycloze":
        return f"{kind}/{folder.name}"
    if folder.name in ("dev", "test", "train", "valid") and folder.parent.name:
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def pair_score(real: float, fake: float) -> float:
    """1 if ``real > fake``, 0.5 if equal, 0 otherwise."""
    return 1.0 if real > fake else 0.5 if real == fake else 0.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def evaluate_task(task: Task, scores: Mapping[str, float]) -> TaskResult:
    """Accuracies of ``task`` given one score per filename (higher = more likely real)."""
    groups: dict[tuple[Any, ...], list[GoldItem]] = defaultdict(list)
    for it in task.items:
        key: tuple[Any, ...] = (
            (it.id, it.voice, it.type, it.subtype)
            if task.kind == "syntactic"
            else (it.id, it.voice)
        )
        groups[key].append(it)
    missing = sorted(it.filename for it in task.items if it.filename not in scores)
    unpaired: list[str] = []
    per_item: dict[tuple, list[float]] = defaultdict(list)  # voices of one item
    item_info: dict[tuple, GoldItem] = {}
    num_pairs = 0
    for key, members in groups.items():
        present = [it for it in members if it.filename in scores]
        reals = [it for it in present if it.correct]
        fakes = [it for it in present if not it.correct]
        if not reals or not fakes:
            if len(present) == len(members):  # not a consequence of missing scores
                unpaired.extend(it.filename for it in members)
            continue
        pairs = [pair_score(scores[r.filename], scores[f.filename]) for r in reals for f in fakes]
        num_pairs += len(pairs)
        item_key = (key[2], key[3], key[0]) if task.kind == "syntactic" else (key[0],)
        per_item[item_key].append(_mean(pairs))
        item_info.setdefault(item_key, reals[0])
    item_scores = {k: _mean(v) for k, v in per_item.items()}
    by: dict[str, float] = {}
    by_subtype: dict[str, float] = {}
    if task.kind == "lexical":
        in_vocab = [s for k, s in item_scores.items() if (item_info[k].frequency or 0.0) > 0]
        by["in_vocab"] = _mean(in_vocab)
    elif task.kind == "syntactic":
        per_type: dict[str, list[float]] = defaultdict(list)
        per_subtype: dict[str, list[float]] = defaultdict(list)
        for (typ, sub, _), s in item_scores.items():
            per_type[typ].append(s)
            per_subtype[f"{typ}/{sub}" if sub else typ].append(s)
        by = {t: _mean(v) for t, v in sorted(per_type.items())}
        by_subtype = {t: _mean(v) for t, v in sorted(per_subtype.items())}
    return TaskResult(
        kind=task.kind,
        name=task.name,
        accuracy=_mean(list(item_scores.values())),
        num_pairs=num_pairs,
        num_items=len(item_scores),
        by=by,
        by_subtype=by_subtype,
        unpaired=sorted(unpaired),
        missing=missing,
    )
