"""Typed ABX configuration and results, with JSON / CSV / table output."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from spidrkit.config import SEED, Range, count, field_problems
from spidrkit.errors import DataError
from spidrkit.utils.files import atomic_write
from spidrkit.utils.textfiles import read_json_file


@dataclass(frozen=True)
class ABXConfig:
    """How to build and score the ABX triplets (defaults = ZeroSpeech 2021 triphone ABX)."""

    RANGES: ClassVar[dict[str, Range]] = {
        "step": Range(0.0, 10.0, lo_open=True),
        "max_size_group": count(1, 1 << 30),
        "max_x_across": count(1, 1 << 30),
        "seed": SEED,
    }

    speaker: Literal["within", "across"] = "within"
    """``within``: A, B, X from one speaker; ``across``: A, B from one speaker, X from another."""
    context: Literal["within", "any"] = "within"
    """``within``: A, B, X share (prev-phone, next-phone); ``any``: contexts are ignored."""
    distance: Literal["angular", "euclidean", "kl_symmetric", "identical"] = "angular"
    """Frame distance; ``identical`` (0/1) is the natural choice for discrete units."""
    step: float = 0.02
    """Feature frame step in seconds (20 ms for SpidR / HuBERT-style encoders)."""
    drop_last: bool = False
    """Libri-Light variant: drop the last frame of every item."""
    max_size_group: int | None = 10
    """Keep at most this many items per (phone, context, speaker) group (None: keep all)."""
    max_x_across: int | None = 5
    """Across speaker: at most this many X speakers per (A, B, context, speaker) (None: all)."""
    seed: int = 0
    """Seed of the subsampling."""

    def validate(self) -> list[str]:
        errors = field_problems(self)
        if self.speaker not in ("within", "across"):
            errors.append(f"speaker must be 'within' or 'across', got {self.speaker!r}")
        if self.context not in ("within", "any"):
            errors.append(f"context must be 'within' or 'any', got {self.context!r}")
        if self.distance not in ("angular", "euclidean", "kl_symmetric", "identical"):
            errors.append(f"unknown distance {self.distance!r}")
        return errors


@dataclass(frozen=True)
class ABXCell:
    """One cell: X and A have phone ``phone_a``, B has ``phone_b``."""

    phone_a: str
    phone_b: str
    context: str
    """``prev-phone|next-phone`` (empty with context ``any``)."""
    speaker: str
    """Speaker of A and B (and of X within speaker)."""
    speaker_x: str | None
    """Speaker of X (across speaker only)."""
    n_triplets: int
    error: float


@dataclass
class ABXResult:
    """ABX error rate (0..1, lower is better, chance 0.5) with its cells and aggregates."""

    error: float
    config: ABXConfig
    n_items: int
    n_cells: int
    n_triplets: int
    by_phone_pair: dict[str, float] = field(default_factory=dict)
    """Error of each ``A|B`` phone pair (after the context and speaker means)."""
    by_speaker: dict[str, float] = field(default_factory=dict)
    """Mean over contexts then phone pairs, per speaker of A/B (a diagnostic, not the score)."""
    cells: list[ABXCell] = field(default_factory=list)
    label: str = ""
    """Model or features name (used by plots)."""
    layer: int | None = None
    """Layer the features come from (used by plots)."""
    seconds: float = 0.0

    @property
    def mode(self) -> str:
        return f"{self.config.speaker} speaker, {self.config.context} context"

    def to_dict(self, with_cells: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "layer": self.layer,
            "speaker": self.config.speaker,
            "context": self.config.context,
            "error": self.error,
            "error_percent": 100 * self.error,
            "n_items": self.n_items,
            "n_cells": self.n_cells,
            "n_triplets": self.n_triplets,
            "seconds": self.seconds,
            "config": asdict(self.config),
            "by_phone_pair": self.by_phone_pair,
            "by_speaker": self.by_speaker,
        }
        if with_cells:
            d["cells"] = [asdict(c) for c in self.cells]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ABXResult:
        names = {f.name for f in fields(ABXConfig)}
        cfg = ABXConfig(**{k: v for k, v in d.get("config", {}).items() if k in names})
        return cls(
            error=float(d["error"]),
            config=cfg,
            n_items=int(d.get("n_items", 0)),
            n_cells=int(d.get("n_cells", 0)),
            n_triplets=int(d.get("n_triplets", 0)),
            by_phone_pair=dict(d.get("by_phone_pair", {})),
            by_speaker=dict(d.get("by_speaker", {})),
            cells=[ABXCell(**c) for c in d.get("cells", [])],
            label=str(d.get("label", "")),
            layer=d.get("layer"),
            seconds=float(d.get("seconds", 0.0)),
        )


def write_results_json(
    results: list[ABXResult], path: str | Path, with_cells: bool = False
) -> None:
    """Write ``{"results": [...]}``; read back with :func:`read_results_json`."""
    payload = {"results": [r.to_dict(with_cells) for r in results]}
    with atomic_write(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


def read_results_json(path: str | Path) -> list[ABXResult]:
    """Results written by :func:`write_results_json` (or a bare list / a single result)."""
    path = Path(path)
    data = read_json_file(path, "ABX results JSON (spidrkit abx --json)")
    rows = data.get("results", [data]) if isinstance(data, dict) else data
    try:
        out = [ABXResult.from_dict(r) for r in rows]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not an ABX results file ({str(exc)[:200]})") from None
    for r in out:
        if not 0.0 <= r.error <= 1.0 or (r.layer is not None and not isinstance(r.layer, int)):
            raise DataError(
                f"{path}: not an ABX results file (error {r.error} outside [0, 1], or a "
                f"layer {r.layer!r} that is not an integer)"
            )
    return out


def write_cells_csv(results: list[ABXResult], path: str | Path) -> None:
    """One CSV row per cell of every result (label, layer, mode columns first)."""
    cols = ["label", "layer", "speaker_mode", "context_mode"] + [f.name for f in fields(ABXCell)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in results:
        for c in r.cells:
            w.writerow(
                [r.label, "" if r.layer is None else r.layer, r.config.speaker, r.config.context]
                + [getattr(c, f.name) if getattr(c, f.name) is not None else "" for f in fields(c)]
            )
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def format_table(results: list[ABXResult]) -> str:
    """A plain-text table: one line per result."""
    head = f"{'label':<20} {'layer':>5} {'speaker':<7} {'context':<7} {'distance':<12} "
    head += f"{'ABX %':>7} {'cells':>8} {'triplets':>12} {'s':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        layer = "" if r.layer is None else str(r.layer)
        lines.append(
            f"{r.label[:20]:<20} {layer:>5} {r.config.speaker:<7} {r.config.context:<7} "
            f"{r.config.distance:<12} {100 * r.error:>7.3f} {r.n_cells:>8} {r.n_triplets:>12} "
            f"{r.seconds:>7.1f}"
        )
    return "\n".join(lines)
