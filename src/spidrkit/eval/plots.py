"""PNG plots (matplotlib, Agg backend; the ``plot`` extra): ABX per layer, P(phone | unit)."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from spidrkit.errors import DataError, OutputError, SpidrkitError
from spidrkit.eval.abx.result import ABXResult
from spidrkit.eval.unit_quality import UnitQuality
from spidrkit.utils.files import atomic_write


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise SpidrkitError("plots need matplotlib: pip install 'spidrkit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_abx_layers(results: Sequence[ABXResult], out: str | Path, title: str = "") -> Path:
    """ABX error (%) against layer: one line per (label, speaker mode, context mode)."""
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for r in results:
        if r.layer is None:
            continue
        lines[(r.label or "features", r.config.speaker, r.config.context)].append(
            (int(r.layer), 100 * r.error)
        )
    if not lines:
        raise DataError(
            "no ABX result has a layer: run `spidrkit abx --model ... --layers ...` or pass --layer"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    multi_mode = len({k[1:] for k in lines}) > 1
    for key, pts in sorted(lines.items()):
        pts.sort()
        xs, ys = zip(*pts, strict=True)
        name = key[0] + (f" ({key[1]} spk, {key[2]} ctx)" if multi_mode else "")
        ax.plot(xs, ys, marker="o", label=name)
        best = int(np.argmin(ys))
        ax.annotate(
            f"{ys[best]:.2f}",
            (xs[best], ys[best]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    ax.margins(y=0.12)
    ax.set_xlabel("layer")
    ax.set_ylabel("ABX error (%)")
    all_layers = sorted({x for pts in lines.values() for x, _ in pts})
    ax.set_xticks(all_layers)
    ax.grid(alpha=0.3)
    if not multi_mode:
        _, spk, ctx = next(iter(lines))
        title = title or f"ABX, {spk} speaker, {ctx} context (lower is better)"
    ax.set_title(title or "ABX error per layer (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, plt, Path(out))


def _save(fig: Any, plt: Any, out: Path) -> Path:
    """Write the figure atomically (a full disk keeps the previous image), in the format of the
    file's extension."""
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_write(out, "wb") as f:
            fig.savefig(f, format=fmt)
    except ValueError as exc:  # an image format matplotlib does not write
        raise OutputError(f"{out}: {str(exc).splitlines()[0]}") from None
    finally:
        plt.close(fig)
    return out


def phone_unit_order(q: UnitQuality) -> tuple[list[int], list[int]]:
    """Row order (phones by frequency, most frequent first) and column order (units grouped by their
    most likely phone in that row order, most confident first)."""
    freq = q.counts.sum(1)
    rows = sorted(range(len(q.phones)), key=lambda i: (-freq[i], q.phones[i]))
    rank = {r: k for k, r in enumerate(rows)}
    p = q.phone_given_unit()
    best = p.argmax(0) if p.size else np.zeros(0, dtype=int)
    cols = sorted(range(len(q.units)), key=lambda j: (rank[int(best[j])], -p[best[j], j], j))
    return rows, cols


def plot_phone_unit(q: UnitQuality, out: Any, title: str = "") -> Any:
    """Heatmap of P(phone | unit): phones by frequency (rows), units by most likely phone (columns).

    ``out``: a PNG path, or a binary file object (then returned as is)."""
    if q.counts.size == 0:
        raise DataError("empty phone x unit counts: nothing to plot")
    rows, cols = phone_unit_order(q)
    p = q.phone_given_unit()[np.ix_(rows, cols)]
    plt = _pyplot()
    n_ph, n_u = p.shape
    fig, ax = plt.subplots(figsize=(min(4 + 0.06 * n_u, 24), min(2 + 0.22 * n_ph, 16)), dpi=120)
    im = ax.imshow(p, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(n_ph))
    ax.set_yticklabels([q.phones[i] for i in rows], fontsize=7 if n_ph > 30 else 9)
    ax.set_ylabel("phone (most frequent first)")
    if n_u <= 64:
        ax.set_xticks(range(n_u))
        ax.set_xticklabels([str(q.units[j]) for j in cols], fontsize=6, rotation=90)
    ax.set_xlabel(f"unit ({n_u} active, ordered by most likely phone)")
    ax.set_title(title or f"P(phone | unit), PNMI {q.pnmi:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="P(phone | unit)")
    fig.tight_layout()
    if isinstance(out, BinaryIO | io.IOBase):  # an in-memory PNG (spidrkit report)
        fig.savefig(out, format="png")
        plt.close(fig)
        return out
    return _save(fig, plt, Path(out))
