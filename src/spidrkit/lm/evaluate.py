"""``spidrkit slm-eval`` as an API: tokenize task audio, score with the LM, compute accuracies.

Tokenizing is a callable ``tokenize(paths: list[Path]) -> list[LongTensor]`` (units per file, any
length, not yet deduplicated or already so). Two come with spidrkit: :class:`UnitsLookup` reads
precomputed units (a ``spidrkit units`` JSONL covering the task audio) and
:class:`spidrkit.units.Tokenizer` runs an encoder layer (+ k-means) on the audio
(``--model/--layer/--kmeans`` on the command line). Any other function works::

    tokenize = UnitsLookup.from_jsonl("units.jsonl")
    report = evaluate_slm(lm, [load_task("sLM21/lexical/dev")], tokenize)
    print(format_table(report.results))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from spidrkit.errors import DataError
from spidrkit.lm.data import UnitRecord, read_units_jsonl
from spidrkit.lm.model import UnitLM
from spidrkit.lm.score import LogLikelihood, score_sequences
from spidrkit.lm.zerospeech import Task, TaskResult, evaluate_task
from spidrkit.units.files import KeyIndex, dedup_list
from spidrkit.utils.files import atomic_write
from spidrkit.utils.progress import progress

Tokenizer = Callable[[list[Path]], list[torch.Tensor]]


class UnitsLookup:
    """Precomputed units as a tokenizer.

    A task file matches a JSONL entry whose ``audio`` (a path or a fileid, extension ignored) is a
    suffix of the file's path; among several, the longest match wins. So ``{"audio": "aAbc"}``,
    ``{"audio": "dev/aAbc"}`` and ``{"audio": "/data/lexical/dev/aAbc.wav"}`` all match
    ``/data/lexical/dev/aAbc.wav``; two different entries matching equally well are an error.
    """

    def __init__(self, records: Sequence[UnitRecord], source: str = "units") -> None:
        self.source = source
        self.units = {r.audio: r.units for r in records}
        self.index = KeyIndex(self.units, source)

    @classmethod
    def from_jsonl(cls, *paths: str | Path, dedup: bool = True) -> UnitsLookup:
        """Entries of one or more units JSONL files."""
        records = [r for p in paths for r in read_units_jsonl(p, dedup=dedup)]
        return cls(records, source=", ".join(map(str, paths)))

    def find(self, path: str | Path) -> list[int] | None:
        """Units of ``path``, or None when no entry matches."""
        key = self.index.find(os.path.abspath(path))
        return None if key is None else self.units[key]

    def __call__(self, paths: list[Path]) -> list[torch.Tensor]:
        out, missing = [], []
        for p in paths:
            units = self.find(p)
            if units is None:
                missing.append(str(p))
                units = []
            out.append(torch.tensor(units, dtype=torch.long))
        if missing:
            raise DataError(
                f"{self.source}: no units for {len(missing)} task file(s), e.g. {missing[:3]}; "
                "run `spidrkit units` on the task folders too"
            )
        return out


@dataclass(frozen=True)
class SLMReport:
    """Accuracies per task and every file's log-likelihood (``scores[task.name][filename]``)."""

    results: list[TaskResult]
    scores: dict[str, dict[str, LogLikelihood]]
    normalize: str

    def to_json(self) -> dict:
        return {
            "normalize": self.normalize,
            "results": [asdict(r) for r in self.results],
        }


def evaluate_slm(
    model: UnitLM,
    tasks: Sequence[Task],
    tokenize: Tokenizer,
    *,
    normalize: Literal["mean", "sum"] = "mean",
    include_eos: bool = True,
    dedup: bool = True,
    max_tokens: int = 32768,
    tokenize_chunk: int = 256,
    show_progress: bool = False,
) -> SLMReport:
    """Score every file of ``tasks`` and compute their accuracies.

    ``normalize``: ``mean`` (log-likelihood per token, the SpidR paper) or ``sum`` decides the pair
    comparisons; both are kept in ``scores``. ``dedup`` merges repeated units as in LM training.
    ``tokenize`` is called on ``tokenize_chunk`` files at a time (bounded memory for audio).
    """
    results, all_scores = [], {}
    for task in tasks:
        names = [it.filename for it in task.items]
        paths = [task.audio[n] for n in names]
        units: list[torch.Tensor] = []
        chunks = range(0, len(paths), tokenize_chunk)
        for i in progress(chunks, enabled=show_progress, desc=f"units {task.name}", unit="chunk"):
            chunk = paths[i : i + tokenize_chunk]
            got = tokenize(chunk)
            if len(got) != len(chunk):
                raise DataError(f"tokenizer gave {len(got)} unit sequences for {len(chunk)} files")
            units.extend(torch.as_tensor(u).reshape(-1) for u in got)
        seqs = [dedup_list(u) if dedup else u.tolist() for u in units]
        lls = score_sequences(
            model,
            seqs,
            max_tokens=max_tokens,
            include_eos=include_eos,
            names=[str(task.audio[n]) for n in names],
            show_progress=show_progress,
        )
        per_file = dict(zip(names, lls, strict=True))
        chosen = {n: (ll.mean if normalize == "mean" else ll.total) for n, ll in per_file.items()}
        results.append(evaluate_task(task, chosen))
        all_scores[task.name] = per_file
    return SLMReport(results, all_scores, normalize)


def write_submission(path: str | Path, scores: dict[str, float]) -> Path:
    """One line per file, ``<filename> <score>`` (the ZeroSpeech 2021 submission format)."""
    with atomic_write(path, "w") as f:
        for name, value in scores.items():
            f.write(f"{name} {value!r}\n")
    return Path(path)


def write_report(report: SLMReport, out_dir: str | Path) -> list[Path]:
    """``<out>/<task name>.txt`` submissions (e.g. ``lexical/dev.txt``), ``<task>.loglik.tsv`` with
    both scores, and ``scores.json``; returns the written paths."""
    out_dir = Path(out_dir)
    written = []
    for name, per_file in report.scores.items():
        pick = {
            n: (ll.mean if report.normalize == "mean" else ll.total) for n, ll in per_file.items()
        }
        written.append(write_submission(out_dir / f"{name}.txt", pick))
        tsv = out_dir / f"{name}.loglik.tsv"
        with atomic_write(tsv, "w") as f:
            f.write("filename\tlogprob_sum\tlogprob_mean\tnum_tokens\n")
            for n, ll in per_file.items():
                f.write(f"{n}\t{ll.total!r}\t{ll.mean!r}\t{ll.num_tokens}\n")
        written.append(tsv)
    with atomic_write(out_dir / "scores.json", "w") as f:
        json.dump(report.to_json(), f, indent=2, allow_nan=True)
        f.write("\n")
    written.append(out_dir / "scores.json")
    return written


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}"


def format_table(results: Sequence[TaskResult]) -> str:
    """Accuracies in % as a plain-text table (sWUGGY all + in-vocab, sBLIMP + types, sSC, tSC)."""
    rows = [("task", "metric", "accuracy %", "pairs", "items")]
    for r in results:
        label = {"lexical": "sWUGGY", "syntactic": "sBLIMP"}.get(r.kind, "StoryCloze")
        rows.append((r.name, f"{label} all", _pct(r.accuracy), str(r.num_pairs), str(r.num_items)))
        for key, value in r.by.items():
            metric = f"{label} in-vocab" if key == "in_vocab" else f"  {key}"
            rows.append((r.name, metric, _pct(value), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.unpaired:
            lines.append(
                f"warning: {r.name}: {len(r.unpaired)} unpaired file(s) left out, e.g. "
                f"{r.unpaired[:3]}"
            )
        if r.missing:
            lines.append(
                f"warning: {r.name}: {len(r.missing)} file(s) without a score, e.g. {r.missing[:3]}"
            )
    return "\n".join(lines)
