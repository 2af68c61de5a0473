"""Build the synthetic corpus: plan (deterministic from the seed), render in worker processes, write.

Layout of ``<out>`` (see docs/synth.md)::

    corpus.json                    summary, speakers, phone inventory, sizes
    SHA256SUMS                     checksum of every other file
    {train,dev,test}/
        wav/<fileid>.wav           16 kHz mono int16; fileid = "<speaker>_<index>"
        manifest.csv               fileid,path,num_samples (path relative to this folder)
        phones.jsonl               {"name", "phones"}: one label per 10 ms frame
        alignments.jsonl           {"name", "segments": [[label, onset_s, offset_s], ...]}
        words.jsonl                {"name", "words": [[word, onset_s, offset_s], ...]}
        utterances.csv             fileid,speaker,topic,num_samples,text
        abx.item                   #file onset offset #phone prev-phone next-phone speaker
    lexical/{dev,test}/*.wav + gold.csv
    syntactic/{dev,test}/*.wav + gold.csv
    storycloze/{dev,test}/*.wav + gold.csv
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
import wave
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from spidrkit.errors import ConfigError, DataError, SpidrkitError
from spidrkit.synth import minimal_pairs as mp
from spidrkit.synth.alignment import abx_items, frame_labels, word_timings
from spidrkit.synth.conditions import Conditions, conditions_by_name
from spidrkit.synth.espeak import ESpeak
from spidrkit.synth.grammar import Grammar
from spidrkit.synth.lexicon import load_lexicon
from spidrkit.synth.phones import INVENTORY, PHONES, mnemonics_to_phones, tokenize_mnemonics
from spidrkit.synth.render import SAMPLE_RATE, Job, Rendered, init_worker, phonemize, render
from spidrkit.synth.speakers import Speaker, make_speakers
from spidrkit.utils.files import atomic_write
from spidrkit.utils.progress import progress

SPLITS = ("train", "dev", "test")
FORMAT = "spidrkit-synth/1"


@dataclass(frozen=True)
class Preset:
    """Sizes of one corpus. Either ``hours`` (all splits together) or ``utterances`` is set."""

    name: str
    hours: float | None
    utterances: tuple[int, int, int] | None  # train, dev, test
    speakers: tuple[int, int, int]  # train, dev, test
    lexical_pairs: int  # per held-out split
    syntactic_pairs: int  # per test type, per held-out split
    stories: int  # per held-out split
    pair_voices: int  # voices of each minimal pair (taken from the split's speakers)
    heldout_share: float = 0.075  # share of the hours given to dev, and again to test
    conditions: str = "clean"  # voices and recording conditions (synth/conditions.py)


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", None, (34, 8, 8), (6, 2, 2), 8, 2, 3, 2),
    "demo": Preset("demo", 2.0, None, (24, 4, 4), 150, 20, 40, 3, conditions="realistic"),
    "clean": Preset("clean", 2.0, None, (24, 4, 4), 150, 20, 40, 3),
}
BABBLE_UTTERANCES = 24  # dry utterances of train speakers that babble noise is cut from


@dataclass(frozen=True)
class SplitInfo:
    name: str
    utterances: int
    hours: float
    speakers: tuple[str, ...]
    abx_items: int


@dataclass(frozen=True)
class CorpusInfo:
    """What :func:`make_corpus` built; ``corpus.json`` holds the same plus the speaker table."""

    out_dir: Path
    preset: str
    seed: int
    splits: dict[str, SplitInfo]
    minimal_pairs: dict[str, dict[str, int]]  # task -> split -> number of pairs
    phones: tuple[str, ...]
    seconds: float = field(default=0.0, compare=False)  # wall-clock time to build

    @property
    def hours(self) -> float:
        return sum(s.hours for s in self.splits.values())

    def manifest(self, split: str) -> Path:
        return self.out_dir / split / "manifest.csv"

    def labels(self, split: str) -> Path:
        return self.out_dir / split / "phones.jsonl"

    def item_file(self, split: str) -> Path:
        return self.out_dir / split / "abx.item"

    def summary(self) -> str:
        lines = [
            f"synthetic corpus at {self.out_dir} (preset {self.preset}, seed {self.seed}): "
            f"{self.hours:.3f} h in {self.seconds:.1f} s"
        ]
        for s in self.splits.values():
            lines.append(
                f"  {s.name:<5} {s.utterances:>5} utterances {s.hours:7.3f} h "
                f"{len(s.speakers):>2} speakers {s.abx_items:>6} ABX items"
            )
        for task, counts in self.minimal_pairs.items():
            lines.append(f"  {task:<10} " + ", ".join(f"{k}: {v} pairs" for k, v in counts.items()))
        return "\n".join(lines)


def resolve_preset(preset: str, hours: float | None, conditions: str | None = None) -> Preset:
    if preset not in PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if conditions is not None and conditions != p.conditions:
        conditions_by_name(conditions)  # refuse unknown names here
        p = replace(p, conditions=conditions, name=f"{p.name}-{conditions}")
    if hours is not None:
        if not hours > 0:
            raise ConfigError(f"--hours must be positive, got {hours}")
        p = Preset(
            **{
                **asdict(p),
                "hours": float(hours),
                "utterances": None,
                "speakers": tuple(p.speakers),
                "name": f"{preset}-{hours:g}h",
            }
        )
    return p


def _check_dependencies() -> None:
    """Fail here, with a clear message, rather than in every pool worker (which would respawn)."""
    try:
        import soxr  # noqa: F401
    except ImportError as exc:
        raise SpidrkitError(
            "the synthetic corpus needs soxr: pip install 'spidrkit[synth]'"
        ) from exc
    ESpeak()  # loads and initialises eSpeak NG once; workers are spawned, so they start clean


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------- planning
def _utterance_jobs(
    split: str,
    speakers: list[Speaker],
    seed: int,
    root: Path,
    grammar: Grammar,
    clean_view: bool = False,
    bank: str | None = None,
) -> Iterator[tuple[Job, str]]:
    """The endless, seed-determined stream of (job, topic) of one split."""
    rng = random.Random(f"spidrkit-synth-{seed}-{split}")
    i = 0
    while True:
        spk = speakers[i % len(speakers)]
        sentences = grammar.utterance(rng)
        text = ". ".join(s.text for s in sentences) + "."
        words = tuple(w for s in sentences for w in s.words)
        fileid = f"{spk.id}_{i:05d}"
        yield (
            Job(
                path=str(root / split / "wav" / f"{fileid}.wav"),
                text=text,
                words=words,
                speaker=spk,
                key=f"{seed}/{split}/{fileid}",
                clean_path=str(root / split / "clean" / f"{fileid}.wav") if clean_view else None,
                bank=bank,
            ),
            sentences[0].topic,
        )
        i += 1


def _render_split(
    pool,
    split: str,
    stream: Iterator[tuple[Job, str]],
    count: int | None,
    seconds: float | None,
    bar,
) -> list[tuple[Job, str, Rendered]]:
    """Render the first ``count`` utterances, or as many as reach ``seconds`` of audio."""
    done: list[tuple[Job, str, Rendered]] = []
    total = 0.0
    batch = 64
    while True:
        want = batch if count is None else min(batch, count - len(done))
        if want <= 0:
            break
        planned = [next(stream) for _ in range(want)]
        results = pool.map(render, [j for j, _ in planned], chunksize=4)
        for (job, topic), res in zip(planned, results, strict=True):
            if seconds is not None and total >= seconds:
                Path(res.path).unlink()  # beyond the target: drop, deterministic cut
                if job.clean_path:
                    Path(job.clean_path).unlink()
                continue
            done.append((job, topic, res))
            total += res.num_samples / SAMPLE_RATE
            bar.update(1)
        if seconds is not None and total >= seconds:
            break
    return done


def _used_phones(done: list[tuple[Job, str, Rendered]]) -> set[str]:
    return {seg.label for _, _, r in done for seg in r.segments}


def _cover_phones(
    pool,
    done: list[tuple[Job, str, Rendered]],
    stream: Iterator[tuple[Job, str]],
    lex,
    rounds: int = 3,
) -> list[tuple[Job, str, Rendered]]:
    """Extra utterances (from the same stream) holding a word with each phone not yet spoken.

    Small corpora may miss rare phones (``zh`` of "television", ``th`` of "math"); the next
    utterances of the stream that contain such a word (by eSpeak's dictionary pronunciation) are
    rendered and added, so that every phone of the inventory occurs in train.
    """
    forms = lex.word_forms()
    prons = dict(zip(forms, pool.apply(phonemize, (forms,)), strict=True))
    phones_of = {}
    for w, m in prons.items():
        tokens = tokenize_mnemonics(m)
        phones_of[w] = set(mnemonics_to_phones(tokens)) if tokens else set()
    extra: list[tuple[Job, str, Rendered]] = []
    for _ in range(rounds):
        missing = set(PHONES) - _used_phones(done + extra)
        if not missing:
            break
        chosen: list[tuple[Job, str]] = []
        for ph in sorted(missing):
            for _ in range(50000):
                job, topic = next(stream)
                if any(ph in phones_of.get(w, ()) for w in job.words):
                    chosen.append((job, topic))
                    break
        results = pool.map(render, [j for j, _ in chosen])
        extra += [(j, t, r) for (j, t), r in zip(chosen, results, strict=True)]
    return extra


# ---------------------------------------------------------------------- writing
def _csv_text(columns: tuple[str, ...] | list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _write(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _write_split(root: Path, split: str, done: list[tuple[Job, str, Rendered]]) -> SplitInfo:
    folder = root / split
    manifest, labels, aligns, words, utts, items = [], [], [], [], [], []
    for job, topic, res in done:
        fileid = Path(res.path).stem
        segs = list(res.segments)
        manifest.append(
            {"fileid": fileid, "path": f"wav/{fileid}.wav", "num_samples": res.num_samples}
        )
        labels.append(json.dumps({"name": fileid, "phones": frame_labels(segs, res.num_samples)}))
        aligns.append(
            json.dumps(
                {
                    "name": fileid,
                    "segments": [
                        [s.label, round(s.start / SAMPLE_RATE, 5), round(s.end / SAMPLE_RATE, 5)]
                        for s in segs
                    ],
                }
            )
        )
        words.append(
            json.dumps(
                {
                    "name": fileid,
                    "words": [
                        [w.word, round(w.start / SAMPLE_RATE, 5), round(w.end / SAMPLE_RATE, 5)]
                        for w in word_timings(segs, list(job.words))
                    ],
                }
            )
        )
        utts.append(
            {
                "fileid": fileid,
                "speaker": job.speaker.id,
                "topic": topic,
                "num_samples": res.num_samples,
                "text": job.text,
            }
        )
        items += abx_items(segs, fileid, job.speaker.id)
    _write(folder / "manifest.csv", _csv_text(("fileid", "path", "num_samples"), manifest))
    if any(job.clean_path for job, _, _ in done):
        clean = [{**row, "path": f"clean/{row['fileid']}.wav"} for row in manifest]
        _write(folder / "clean_manifest.csv", _csv_text(("fileid", "path", "num_samples"), clean))
    _write(folder / "phones.jsonl", "\n".join(labels) + "\n")
    _write(folder / "alignments.jsonl", "\n".join(aligns) + "\n")
    _write(folder / "words.jsonl", "\n".join(words) + "\n")
    _write(
        folder / "utterances.csv",
        _csv_text(("fileid", "speaker", "topic", "num_samples", "text"), utts),
    )
    header = "#file onset offset #phone prev-phone next-phone speaker"
    _write(folder / "abx.item", "\n".join([header] + items) + "\n")
    hours = sum(r.num_samples for _, _, r in done) / SAMPLE_RATE / 3600
    spk = tuple(sorted({j.speaker.id for j, _, _ in done}))
    return SplitInfo(split, len(done), round(hours, 4), spk, len(items))


def write_checksums(root: Path) -> str:
    """Write ``SHA256SUMS`` (every file under ``root`` but itself, sorted); return its text."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}")
    text = "\n".join(lines) + "\n"
    _write(root / "SHA256SUMS", text)
    return text


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} is not empty; choose another --out or pass --overwrite")
        if not (out / "corpus.json").exists():
            raise DataError(f"{out} is not empty and holds no corpus.json: refusing to delete it")
        for name in (*SPLITS, "lexical", "syntactic", "storycloze", "corpus.json", "SHA256SUMS"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------- entry point
def _babble_bank(pool, speakers: list[Speaker], seed: int, grammar: Grammar, folder: Path) -> str:
    """Render dry utterances of the train speakers, concatenate them into ``folder/bank.npy``."""
    rng = random.Random(f"spidrkit-babble-{seed}")
    jobs = []
    for i in range(BABBLE_UTTERANCES):
        sentences = grammar.utterance(rng)
        jobs.append(
            Job(
                path=str(folder / f"b{i:03d}.wav"),
                text=". ".join(s.text for s in sentences) + ".",
                words=tuple(w for s in sentences for w in s.words),
                speaker=speakers[i % len(speakers)],
                key=f"{seed}/babble/{i}",
                align=False,
                recorded=False,
            )
        )
    parts = []
    for res in pool.map(render, jobs):
        with wave.open(res.path, "rb") as w:
            parts.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32))
        Path(res.path).unlink()
    path = folder / "bank.npy"
    np.save(path, np.concatenate(parts))
    return str(path)


def make_corpus(
    out_dir: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    hours: float | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    conditions: str | Conditions | None = None,
) -> CorpusInfo:
    """Synthesise a corpus into ``out_dir`` and return its summary (also in ``corpus.json``).

    ``preset``: "tiny" (about 50 utterances, seconds, clean), "demo" (about 2 h, realistic voices and
    recording conditions) or "clean" (the demo's size, clean); ``hours`` overrides the preset's size
    (all splits together), ``conditions`` ("clean", "realistic" or a :class:`Conditions` of your
    own) its voices and recording conditions. The same ``seed``
    gives byte-identical files whatever ``workers`` is (default: every usable core).
    """
    t0 = time.perf_counter()
    if isinstance(conditions, Conditions):
        conditions.validate()
        p = replace(resolve_preset(preset, hours), conditions=conditions.name)
        cond = conditions
    else:
        p = resolve_preset(preset, hours, conditions)
        cond = conditions_by_name(p.conditions)
    _check_dependencies()
    out = Path(out_dir).resolve()
    _prepare_out(out, overwrite)
    speakers = make_speakers(*p.speakers, seed=seed, conditions=cond)
    by_split = {s: [x for x in speakers if x.split == s] for s in SPLITS}
    workers = workers or default_workers()
    ctx = multiprocessing.get_context("spawn")
    scratch = Path(tempfile.mkdtemp(prefix="spidrkit-synth-"))
    try:
        infos, pair_counts = _render_all(
            p, cond, seed, out, speakers, by_split, workers, ctx, scratch, show_progress
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info = CorpusInfo(
        out, p.name, seed, infos, pair_counts, INVENTORY, seconds=time.perf_counter() - t0
    )
    _write(out / "corpus.json", json.dumps(_corpus_json(info, p, cond, speakers), indent=2) + "\n")
    write_checksums(out)
    return info


def _render_all(
    p: Preset,
    cond: Conditions,
    seed: int,
    out: Path,
    speakers: list[Speaker],
    by_split: dict[str, list[Speaker]],
    workers: int,
    ctx,
    scratch: Path,
    show_progress: bool,
) -> tuple[dict[str, SplitInfo], dict[str, dict[str, int]]]:
    grammar, lex = Grammar(), load_lexicon()
    infos: dict[str, SplitInfo] = {}
    pair_counts: dict[str, dict[str, int]] = {}
    with ctx.Pool(workers, initializer=init_worker, initargs=(speakers, cond)) as pool:
        bank = None
        if not cond.is_clean and cond.babble_share > 0:
            bank = _babble_bank(pool, by_split["train"], seed, grammar, scratch)
        train_words: Counter = Counter()
        if p.utterances:
            planned = sum(p.utterances)
        else:
            planned = None
        with progress(
            total=planned, desc="synth utterances", unit="utt", enabled=show_progress
        ) as bar:
            for k, split in enumerate(SPLITS):
                view = cond.clean_view and split == "train"
                stream = _utterance_jobs(split, by_split[split], seed, out, grammar, view, bank)
                if p.utterances:
                    done = _render_split(pool, split, stream, p.utterances[k], None, bar)
                else:
                    assert p.hours is not None  # a preset gives utterances or hours
                    share = p.heldout_share if split != "train" else 1 - 2 * p.heldout_share
                    done = _render_split(pool, split, stream, None, p.hours * 3600 * share, bar)
                if split == "train":
                    done += _cover_phones(pool, done, stream, lex)
                infos[split] = _write_split(out, split, done)
                if split == "train":
                    train_words.update(w for job, _, _ in done for w in job.words)

        # minimal pairs
        candidates = mp.lexical_candidates(lex)
        prons = mp.usable_pronunciations(candidates, pool.apply(phonemize, (candidates,)))
        order = sorted(prons)
        random.Random(f"spidrkit-lexical-{seed}").shuffle(order)
        half = len(order) // 2
        jobs: list[Job] = []
        golds: list[tuple[Path, tuple[str, ...], list[dict]]] = []
        for split in ("dev", "test"):
            voices = by_split[split][: p.pair_voices]
            rng = random.Random(f"spidrkit-pairs-{seed}-{split}")
            words = order[:half] if split == "dev" else order[half:]
            tasks = [
                (
                    "lexical",
                    mp.LEXICAL_COLUMNS,
                    mp.lexical_items(prons, words, train_words, p.lexical_pairs, rng),
                ),
                (
                    "syntactic",
                    mp.SYNTACTIC_COLUMNS,
                    mp.syntactic_items(grammar, p.syntactic_pairs, rng),
                ),
                ("storycloze", mp.STORYCLOZE_COLUMNS, mp.story_items(grammar, lex, p.stories, rng)),
            ]
            for task, columns, pairs in tasks:
                folder = out / task / split
                task_jobs, rows = mp.expand(pairs, voices, folder, task, seed)
                # minimal pairs are dry and in the speaker's own prosody, as the ZeroSpeech
                # sWUGGY/sBLIMP stimuli are clean synthetic speech
                jobs += [replace(j, recorded=False, prosody=False) for j in task_jobs]
                golds.append((folder / "gold.csv", columns, rows))
                pair_counts.setdefault(task, {})[split] = len(pairs)
        with progress(
            total=len(jobs), desc="synth minimal pairs", unit="file", enabled=show_progress
        ) as bar:
            for _ in pool.imap(render, jobs, chunksize=8):
                bar.update(1)
        for path, columns, rows in golds:
            _write(path, _csv_text(columns, rows))
    return infos, pair_counts


def _corpus_json(info: CorpusInfo, p: Preset, cond: Conditions, speakers: list[Speaker]) -> dict:
    import importlib.metadata as md

    try:
        loader_version = md.version("espeakng-loader")
    except md.PackageNotFoundError:  # pragma: no cover - import worked from a source tree
        loader_version = "unknown"
    return {
        "format": FORMAT,
        "preset": asdict(p),
        "conditions": cond.to_dict(),
        "seed": info.seed,
        "sample_rate": SAMPLE_RATE,
        "label_frame_seconds": 0.01,
        "hours": round(info.hours, 4),
        "splits": {k: asdict(v) for k, v in info.splits.items()},
        "minimal_pairs": info.minimal_pairs,
        "phones": list(info.phones),
        "speakers": [s.to_dict() for s in speakers],
        "espeakng_loader": loader_version,
    }


def load_corpus_info(out_dir: str | Path) -> dict:
    """The parsed ``corpus.json`` of a built corpus."""
    path = Path(out_dir) / "corpus.json"
    if not path.exists():
        raise DataError(f"{path} not found: build the corpus first with `spidrkit synth --out ...`")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise DataError(f"{path} has format {data.get('format')!r}, expected {FORMAT!r}")
    return data
