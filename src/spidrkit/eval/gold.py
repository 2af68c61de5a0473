"""Gold phones as units: the topline a unit LM reaches when its units are the phones themselves.

A corpus with phone alignments (``phones.jsonl``: ``{"name", "phones": [one label per 20 ms
frame]}``, as ``spidrkit synth`` writes) becomes a units JSONL of phone ids, deduplicated like
encoder units; a lexical task whose ``gold.csv`` has a ``phones`` column (``spidrkit synth``'s
sWUGGY-like task) becomes the units of its files, the word framed by silence as it is spoken. Train
a unit LM on the first, score the second with ``spidrkit slm-eval --units``: the lexical accuracy of
an LM that is given perfect phone-like units, the ceiling for units made from audio::

    vocab = write_gold_phone_units("corpus/train/phones.jsonl", "gold/train.jsonl")
    write_gold_task_units("corpus/lexical/dev", "gold/lexical.jsonl", vocab)
"""

from __future__ import annotations

import csv
from pathlib import Path

from spidrkit.errors import DataError
from spidrkit.eval.unit_quality import read_phone_labels
from spidrkit.units.files import Units, dedup_list, write_units
from spidrkit.utils.textfiles import iter_lines

SILENCE = "SIL"


def write_gold_phone_units(phones_jsonl: str | Path, out: str | Path) -> dict[str, int]:
    """Write the deduplicated phone sequence of every utterance as units (ids in sorted label
    order, silence included); returns the vocabulary ``{label: id}`` for the task files."""
    rows = read_phone_labels(phones_jsonl).items()
    vocab = {p: i for i, p in enumerate(sorted({p for _, ps in rows for p in ps} | {SILENCE}))}
    write_units((Units(name, dedup_list([vocab[p] for p in phones])) for name, phones in rows), out)
    return vocab


def write_gold_task_units(task_folder: str | Path, out: str | Path, vocab: dict[str, int]) -> int:
    """Units of a lexical task's files from its ``gold.csv`` ``phones`` column (space-separated
    labels), each word framed by silence; returns the number of files."""
    gold = Path(task_folder) / "gold.csv"
    if not gold.is_file():
        raise DataError(f"{task_folder}: no gold.csv")
    records = []
    reader = csv.DictReader(text for _, text in iter_lines(gold, "gold.csv"))
    if not reader.fieldnames or not {"filename", "phones"} <= set(reader.fieldnames):
        raise DataError(f"{gold}: needs columns 'filename' and 'phones' for gold-phone units")
    for lineno, row in enumerate(reader, start=2):
        labels = (row["phones"] or "").split()
        unknown = sorted({p for p in labels if p not in vocab})
        if not labels or unknown:
            why = f"phones {unknown} not in the training phones" if unknown else "no phones"
            raise DataError(f"{gold}:{lineno}: {why}")
        ids = [vocab[SILENCE], *(vocab[p] for p in labels), vocab[SILENCE]]
        records.append(Units(row["filename"], dedup_list(ids)))
    if not records:
        raise DataError(f"{gold}: no rows")
    return write_units(records, out)
