"""Unit quality against frame-level phone labels: PNMI, purities, perplexity, bitrate (docs/evaluation.md).

Units (usually 20 ms) are repeated to the label rate (usually 10 ms: each unit twice); a length
mismatch of up to ``tolerance`` label frames is cut off, a larger one is an error naming the
utterance. With the joint distribution ``p(y, z)`` of phone ``y`` and unit ``z`` over frames:

- PNMI = I(y; z) / H(y)
- phone purity = sum_z max_y p(y, z); cluster purity = sum_y max_z p(y, z)
- codebook perplexity = 2 ** H(p(z)) (bits); active codewords = number of units used
- bitrate = log2(V) * units per second after merging consecutive repeats (V: codebook size)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.errors import DataError
from spidrkit.units.files import frame_units_by_key, match_keys
from spidrkit.utils.files import atomic_write
from spidrkit.utils.textfiles import MAX_UNIT_ID, duplicate_error, iter_jsonl, read_json_file

log = logging.getLogger(__name__)


@dataclass
class UnitQuality:
    """Unit-quality metrics and the phone x unit frame counts they come from."""

    pnmi: float
    phone_purity: float
    cluster_purity: float
    perplexity: float
    active_codewords: int
    vocab_size: int
    bitrate: float
    """bits per second: log2(vocab_size) * units_per_second."""
    units_per_second: float
    """Units per second after merging consecutive repeats."""
    n_frames: int
    """Label-rate frames counted in the joint distribution."""
    n_utterances: int
    phones: list[str] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """``[len(phones), len(units)]`` frame counts (label rate)."""

    def phone_given_unit(self) -> np.ndarray:
        """``P(phone | unit)``: ``[len(phones), len(units)]``, each column sums to 1."""
        col = self.counts.sum(0, keepdims=True)
        return self.counts / np.maximum(col, 1)

    def metrics(self) -> dict[str, float]:
        return {
            "pnmi": self.pnmi,
            "phone_purity": self.phone_purity,
            "cluster_purity": self.cluster_purity,
            "perplexity": self.perplexity,
            "active_codewords": self.active_codewords,
            "vocab_size": self.vocab_size,
            "bitrate": self.bitrate,
            "units_per_second": self.units_per_second,
            "n_frames": self.n_frames,
            "n_utterances": self.n_utterances,
        }

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.metrics())
        d.update(phones=self.phones, units=self.units, counts=self.counts.astype(int).tolist())
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitQuality:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "counts"}
        return cls(**kw, counts=np.asarray(d.get("counts", []), dtype=np.int64))

    def write_json(self, path: str | Path) -> None:
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f)
            f.write("\n")

    @classmethod
    def read_json(cls, path: str | Path) -> UnitQuality:
        data = read_json_file(path, "unit-quality JSON (spidrkit unit-quality --json)")
        try:
            q = cls.from_dict(data)
            phones_ok = all(isinstance(p, str) for p in q.phones)
            units_ok = all(isinstance(u, int) and not isinstance(u, bool) for u in q.units)
            shape_ok = q.counts.shape == (len(q.phones), len(q.units))
            numbers_ok = all(
                isinstance(v, int | float) and math.isfinite(v)
                for v in (q.pnmi, q.phone_purity, q.cluster_purity, q.perplexity)
            )
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:
            raise DataError(f"{path}: not a unit-quality JSON ({str(exc)[:200]})") from None
        if not (phones_ok and units_ok and shape_ok and numbers_ok):
            raise DataError(
                f"{path}: not a unit-quality JSON (phones must be strings, units integers, counts "
                "[phones, units] and the metrics finite numbers)"
            )
        return q


def metrics_from_counts(counts: np.ndarray) -> tuple[float, float, float, float, int]:
    """PNMI, phone purity, cluster purity, perplexity, active codewords of ``[phones, units]``."""
    total = counts.sum()
    if total <= 0:
        raise DataError("no frame to evaluate (empty labels or units)")
    p = counts / total
    py, pz = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    hy = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    hz_bits = float(-(pz[pz > 0] * np.log2(pz[pz > 0])).sum())
    if hy <= 0:
        raise DataError(
            "PNMI is undefined: every labelled frame has the same phone (phone entropy 0); "
            "evaluate on labels with at least two phones"
        )
    out = (mi / hy, float(p.max(0).sum()), float(p.max(1).sum()), 2.0**hz_bits)
    bad = [
        n
        for n, v in zip(("PNMI", "phone purity", "cluster purity", "perplexity"), out)
        if not math.isfinite(v)
    ]
    if bad:  # one rule for every metric: finite, or an error
        raise DataError(f"{', '.join(bad)} came out non-finite; check the labels and units")
    return (*out, int((pz > 0).sum()))


def compute_unit_quality(
    labels: Mapping[str, Sequence[str]],
    units: Mapping[str, Sequence[int] | torch.Tensor],
    *,
    label_step: float = 0.01,
    unit_step: float = 0.02,
    vocab_size: int | None = None,
    tolerance: int = 2,
) -> UnitQuality:
    """Metrics over the utterances present in both ``labels`` and ``units``.

    Args:
        labels: ``{name: [phone per label frame]}``.
        units: ``{key: [unit per unit frame]}`` (durations already expanded); a key matches a name
            when equal or when it ends with ``/<name>`` (an audio path without extension).
        vocab_size: codebook size V for the bitrate (default: largest unit + 1).
        tolerance: largest accepted length mismatch, in label frames.
    """
    if (
        not (math.isfinite(unit_step) and math.isfinite(label_step))
        or min(unit_step, label_step) <= 0
    ):
        raise DataError(
            f"unit step {unit_step} and label step {label_step} must be positive seconds"
        )
    if tolerance < 0:
        raise DataError(f"tolerance {tolerance} must be >= 0 frames")
    ratio = unit_step / label_step
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise DataError(
            f"unit step {unit_step} s must be a multiple of the label step {label_step} s"
        )
    rep = round(ratio)
    match = match_keys(units.keys(), labels.keys())
    if not match:
        raise DataError("no utterance is in both the labels and the units (check names/paths)")
    if len(match) < len(labels):
        log.warning("%d labelled utterance(s) have no units: skipped", len(labels) - len(match))
    phones = sorted({p for name in match for p in labels[name]})
    phone_idx = {p: i for i, p in enumerate(phones)}
    y_all, z_all = [], []
    runs, unit_frames, max_unit = 0, 0, -1
    for name in sorted(match):
        z = torch.as_tensor(units[match[name]], dtype=torch.long).numpy()
        if z.size == 0:
            raise DataError(f"utterance {name!r}: no units")
        runs += 1 + int((z[1:] != z[:-1]).sum())
        unit_frames += z.size
        max_unit = max(max_unit, int(z.max()))
        zr = np.repeat(z, rep)
        y = np.asarray([phone_idx[p] for p in labels[name]], dtype=np.int64)
        if abs(len(y) - len(zr)) > tolerance:
            raise DataError(
                f"utterance {name!r}: {len(y)} label frames ({label_step * 1000:g} ms) but "
                f"{len(z)} units ({unit_step * 1000:g} ms) = {len(zr)} label frames; mismatch "
                f"over {tolerance} frames: are the labels and units from the same audio?"
            )
        n = min(len(y), len(zr))
        y_all.append(y[:n])
        z_all.append(zr[:n])
    y = np.concatenate(y_all)
    z = np.concatenate(z_all)
    used = np.unique(z)
    counts = np.zeros((len(phones), len(used)), dtype=np.int64)
    np.add.at(counts, (y, np.searchsorted(used, z)), 1)
    pnmi, phone_purity, cluster_purity, perplexity, active = metrics_from_counts(counts)
    if vocab_size is None:
        vocab_size = max_unit + 1
    elif not max_unit < vocab_size <= MAX_UNIT_ID + 1:
        raise DataError(
            f"vocab size {vocab_size} must be above the largest unit ({max_unit}) and at most "
            f"{MAX_UNIT_ID + 1}"
        )
    ups = runs / (unit_frames * unit_step)
    return UnitQuality(
        pnmi=pnmi,
        phone_purity=phone_purity,
        cluster_purity=cluster_purity,
        perplexity=perplexity,
        active_codewords=active,
        vocab_size=vocab_size,
        bitrate=math.log2(vocab_size) * ups if vocab_size > 1 else 0.0,
        units_per_second=ups,
        n_frames=int(len(y)),
        n_utterances=len(match),
        phones=phones,
        units=[int(u) for u in used],
        counts=counts,
    )


def read_phone_labels(path: str | Path) -> dict[str, list[str]]:
    """Phone labels JSONL ``{"name": fileid, "phones": [...]}`` (one phone per label frame)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for lineno, row in iter_jsonl(path, "phone label JSONL"):
        where = f"{path}:{lineno}"
        name, phones = row.get("name"), row.get("phones")
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: expected {{'name': fileid, 'phones': [...]}} (no 'name')")
        if not isinstance(phones, list) or not all(isinstance(p, str) and p for p in phones):
            raise DataError(f"{where}: 'phones' must be a list of non-empty strings")
        if name in first_line:
            raise duplicate_error(path, "utterance", name, first_line[name], lineno)
        first_line[name] = lineno
        out[name] = phones
    if not out:
        raise DataError(f"{path}: no utterances")
    return out


def unit_quality_from_files(
    labels_path: str | Path, units_path: str | Path, **kwargs: Any
) -> UnitQuality:
    """:func:`compute_unit_quality` on a phone-label JSONL and a units JSONL."""
    return compute_unit_quality(
        read_phone_labels(labels_path), frame_units_by_key(units_path), **kwargs
    )
