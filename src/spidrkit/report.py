"""One self-contained HTML page for a run (``spidrkit report RUN_DIR``), images embedded.

It reads only files a run writes, so it works on a demo folder, a training ``output_dir`` copied back
from a cluster, or anything in between:

- ``metrics.jsonl`` (``RUN_DIR`` or ``RUN_DIR/pretrain``): loss, target perplexity and active codewords
  per codebook over steps, the picture that shows codebook health or collapse;
- ABX results JSON files (``spidrkit abx --json``) anywhere below ``RUN_DIR``: ABX per layer against
  the untrained model and baselines;
- a ``spidrkit unit-quality --json`` file: PNMI etc. and the P(phone | unit) heatmap;
- a ``spidrkit slm-eval`` ``scores.json``: spoken-LM accuracies against chance (50 %);
- ``summary.json`` (the demo's) and the run's ``config.json`` when present.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidrkit.errors import DataError
from spidrkit.eval.abx import read_results_json
from spidrkit.eval.plots import _pyplot, plot_phone_unit
from spidrkit.eval.unit_quality import UnitQuality
from spidrkit.train.monitor import read_metrics
from spidrkit.utils.files import atomic_write

_SKIP_DIRS = {"checkpoints", "tb", "feats_mfcc", "corpus"}


@dataclass
class RunFiles:
    """What :func:`find_run_files` found below a run folder."""

    root: Path
    metrics: Path | None = None
    abx: list[Path] = field(default_factory=list)
    unit_quality: Path | None = None
    slm_scores: Path | None = None
    summary: Path | None = None


def _json_files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*.json")):
        if not _SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            out.append(path)
    return out


def _kind(path: Path) -> str:
    """ "abx", "unit_quality", "slm", "summary", "config" or "" from a JSON file's content."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    if path.name == "summary.json":
        return "summary"
    rows = data.get("results")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        if "error" in rows[0] and "config" in rows[0]:
            return "abx"
        if "accuracy" in rows[0]:
            return "slm"
    if "counts" in data and "phones" in data:
        return "unit_quality"
    return ""


REFERENCES = "references"
"""The folder of a demo run that holds the LM baseline and topline (not the run's own results)."""


def find_run_files(root: str | Path) -> RunFiles:
    """Locate the files a report is made of (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (spidrkit report takes a run folder)")
    found = RunFiles(root=root)
    for candidate in (root / "metrics.jsonl", root / "pretrain" / "metrics.jsonl"):
        if candidate.is_file():
            found.metrics = candidate
            break
    if found.metrics is None:
        found.metrics = next(iter(sorted(root.rglob("metrics.jsonl"))), None)
    for path in _json_files(root):
        if REFERENCES in path.relative_to(root).parts[:-1]:
            continue  # the demo's reference LMs: read through summary.json's slm_references
        kind = _kind(path)
        if kind == "abx":
            found.abx.append(path)
        elif kind == "unit_quality" and found.unit_quality is None:
            found.unit_quality = path
        elif kind == "slm" and found.slm_scores is None:
            found.slm_scores = path
        elif kind == "summary":
            found.summary = path
    if not (found.metrics or found.abx or found.unit_quality or found.slm_scores):
        raise DataError(
            f"{root}: no metrics.jsonl and no evaluation JSON (abx, unit-quality, slm-eval) found"
        )
    return found


# ------------------------------------------------------------------------------------- figures


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _codebook_series(rows: list[dict[str, Any]], prefix: str) -> dict[int, list[tuple[int, float]]]:
    series: dict[int, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                series.setdefault(int(key[len(prefix) :]), []).append((row["step"], float(value)))
    return series


def training_curves_png(
    rows: list[dict[str, Any]], codebook_size: int | None, regression_weight: float = 0.0
) -> str:
    """Loss, target perplexity and active codewords per codebook against step (base64 PNG).

    ``regression_weight``: the run's ``model.warmup_regression_weight``; when it is above 0 the loss
    also holds the MFCC regression term, so ln V (a uniform guess of the codes) is no floor to show."""
    return _png(training_curves_figure(rows, codebook_size, regression_weight))


def training_curves_figure(
    rows: list[dict[str, Any]], codebook_size: int | None, regression_weight: float = 0.0
) -> Any:
    """The matplotlib figure of :func:`training_curves_png`."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    steps = [r["step"] for r in rows]
    axes[0].plot(steps, [r.get("loss", math.nan) for r in rows], color="C0")
    if regression_weight > 0:
        axes[0].set_title("training loss (code cross-entropy + MFCC regression)")
    else:
        axes[0].set_title("training loss (nats per masked frame)")
    if codebook_size and regression_weight <= 0:
        axes[0].axhline(math.log(codebook_size), ls=":", color="grey", label="uniform guess")
        axes[0].legend(fontsize=8)
    for ax, prefix, mean_key, title in (
        (axes[1], "target_ppl_", "target_ppl", "target perplexity per codebook"),
        (axes[2], "active_codewords_", "active_codewords", "active codewords per codebook"),
    ):
        series = _codebook_series(rows, prefix)
        if not series:  # older logs: the mean over codebooks only
            pts = [(r["step"], r[mean_key]) for r in rows if mean_key in r]
            series = {-1: pts} if pts else {}
        for i, pts in sorted(series.items()):
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label="mean" if i < 0 else f"codebook {i}")
        if not series and prefix == "active_codewords_":
            ax.text(
                0.5,
                0.5,
                "teacher codebooks idle\n(MFCC targets throughout)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
        if codebook_size:
            ax.axhline(codebook_size, ls=":", color="grey", label=f"V = {codebook_size}")
            ax.axhline(codebook_size / 4, ls="--", color="C3", lw=0.8, label="25 % of V")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def abx_png(results: list[Any]) -> str:
    """ABX per layer, one panel per speaker mode, one line per labelled model, baselines without
    layers as horizontal lines."""

    plt = _pyplot()
    modes = list(dict.fromkeys(r.config.speaker for r in results))
    fig, axes = plt.subplots(
        1, len(modes), figsize=(6 * len(modes), 4.2), dpi=110, sharey=True, squeeze=False
    )
    for ax, mode in zip(axes[0], modes, strict=True):
        _abx_panel(ax, [r for r in results if r.config.speaker == mode])
        ax.set_title(f"{mode} speaker")
    fig.tight_layout()
    return _png(fig)


def _abx_panel(ax: Any, results: list[Any]) -> None:
    lines: dict[str, list[tuple[int, float]]] = {}
    flat: dict[str, float] = {}
    for r in results:
        name = r.label or "features"
        if r.layer is None or r.layer == 0:
            flat[name] = 100 * r.error
        else:
            lines.setdefault(name, []).append((int(r.layer), 100 * r.error))
    for k, (name, pts) in enumerate(sorted(lines.items())):
        pts.sort()
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", label=name, color=f"C{k}")
    for k, (name, value) in enumerate(sorted(flat.items())):
        ax.axhline(value, ls="--", color=f"C{k + len(lines)}", label=f"{name} ({value:.1f} %)")
    ax.axhline(50, ls=":", color="grey", label="chance")
    ax.set_xlabel("layer")
    ax.set_ylabel("ABX error (%), lower is better")
    ax.set_ylim(bottom=0)
    if lines:
        ax.set_xticks(sorted({x for pts in lines.values() for x, _ in pts}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def slm_png(results: list[dict[str, Any]]) -> str:
    """Spoken-LM accuracies (%) as bars against the 50 % chance line."""

    plt = _pyplot()
    names = [r["name"] for r in results]
    values = [100 * float(r["accuracy"]) for r in results]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    bars = ax.bar(names, values, color="C2")
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.axhline(50, ls="--", color="C3", label="chance (50 %)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:.9em}.bad{color:#b00}
.good{color:#070}code{background:#f6f6f6;padding:0 .2em}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _model_config(files: RunFiles) -> dict[str, Any]:
    """The model section of the config a training output_dir keeps beside its metrics
    (config.json, checkpoints/config.json); empty when there is none."""
    if files.metrics is None:
        return {}
    folder = files.metrics.parent
    for path in (folder / "config.json", folder / "checkpoints" / "config.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        model = data.get("model", data) if isinstance(data, dict) else {}
        if isinstance(model, dict):
            return model
    return {}


def _codebook_size(model: dict[str, Any], summary: dict[str, Any]) -> int | None:
    """V of the run: what the demo recorded in summary.json (``training.codebook_size``), else the
    run's model config (:func:`_model_config`)."""
    recorded = (summary.get("training") or {}).get("codebook_size")
    if recorded:
        return int(recorded)
    size = model.get("codebook_size")
    return int(size) if isinstance(size, int) else None


def _regression_weight(model: dict[str, Any]) -> float:
    """The run's ``model.warmup_regression_weight`` (0 when unknown)."""
    weight = model.get("warmup_regression_weight", 0.0)
    return float(weight) if isinstance(weight, (int, float)) else 0.0


def _health(rows: list[dict[str, Any]], size: int | None) -> str:
    last = rows[-1]
    ppl = float(last.get("target_ppl", math.nan))
    text = f"final target perplexity {ppl:.1f}"
    if size:
        share = ppl / size
        verdict = (
            '<span class="good">healthy</span>'
            if share >= 0.25
            else '<span class="bad">collapsed (below 25 % of V)</span>'
        )
        text += f" of V = {size} ({100 * share:.0f} %): {verdict}"
    if "active_codewords" in last:
        text += f"; active codewords {last['active_codewords']:.0f} (mean over codebooks)"
    return text


def _abx_tables(results: list[Any]) -> tuple[dict[str, dict[str, dict[int, float]]], list[int]]:
    """{speaker mode: {label: {layer: error %}}} (layer 0: features without layers) and the layers."""
    tables: dict[str, dict[str, dict[int, float]]] = {}
    for r in results:
        mode = r.config.speaker
        tables.setdefault(mode, {}).setdefault(r.label or "features", {})[int(r.layer or 0)] = (
            100 * r.error
        )
    layers = sorted({int(r.layer) for r in results if r.layer})
    return tables, layers


def _best(errs: dict[int, float]) -> tuple[float, int]:
    layered = {k: v for k, v in errs.items() if k}
    pool = layered or errs
    k = min(pool, key=pool.__getitem__)
    return pool[k], k


def _glance(tables: dict[str, dict[str, dict[int, float]]]) -> str:
    """The corpus difficulty at a glance: best error of each model, within and across speakers,
    and whether the trained model beats every reference (MFCC, untrained) in each mode."""
    modes = [m for m in ("within", "across") if m in tables]
    labels = list(dict.fromkeys(label for m in modes for label in tables[m]))
    rows = []
    for label in labels:
        row: list[Any] = [label]
        for m in modes:
            errs = tables[m].get(label)
            if errs:
                value, layer = _best(errs)
                row.append(f"{value:.2f}" + (f" (layer {layer})" if layer else ""))
            else:
                row.append("")
        rows.append(row)
    head = ["best ABX error %"] + [f"{m} speaker" for m in modes]
    verdicts = []
    for m in modes:
        trained = {k: v for k, v in tables[m].items() if _is_trained(k)}
        refs = {k: v for k, v in tables[m].items() if not _is_trained(k)}
        if trained and refs:
            name, errs = next(iter(trained.items()))
            mine = _best(errs)[0]
            ref_name, ref = min(((k, _best(v)[0]) for k, v in refs.items()), key=lambda x: x[1])
            good = mine < ref
            verdicts.append(
                f"{m} speaker: <b>{html.escape(name)}</b> {mine:.2f} % vs {html.escape(ref_name)} "
                f"{ref:.2f} %: "
                + (
                    '<span class="good">beats every reference</span>'
                    if good
                    else '<span class="bad">does not beat the best reference</span>'
                )
            )
    out = _table(head, rows)
    if verdicts:
        out = "<p>" + "<br>".join(verdicts) + " (chance 50 %).</p>" + out
    return out


def _is_trained(label: str) -> bool:
    low = label.lower()
    refs = ("mfcc", "untrained", "init", "log-mel", "logmel")
    return not any(word in low for word in refs)


def _slm_compare(rows: list[dict[str, Any]], references: dict[str, Any]) -> str:
    """Accuracy % per task: the run's units beside the same LM on reference units (MFCC k-means
    units: the baseline to beat; gold phones: the topline)."""
    pairs = {r["name"]: r["num_pairs"] for r in rows}
    columns = {"the model's units": {r["name"]: r["accuracy"] for r in rows}}
    for label, scores in references.items():
        columns[label] = {r["name"]: r["accuracy"] for r in scores.get("results", [])}
    body = [
        [name, n] + [f"{100 * col[name]:.1f}" if name in col else "" for col in columns.values()]
        for name, n in pairs.items()
    ]
    return _table(["spoken-LM task, accuracy % (chance 50)", "pairs", *columns], body)


def render_report(files: RunFiles, codebook_size: int | None = None) -> str:
    """The HTML page (a string) for the files found by :func:`find_run_files`; ``codebook_size``:
    the pretrained model's V (default: what the run recorded, see :func:`_codebook_size`)."""
    parts = [f"<h1>spidrkit run report</h1><p class=note>{html.escape(str(files.root))}</p>"]
    summary = json.loads(files.summary.read_text()) if files.summary else {}
    abx_results = []
    if files.abx:
        for path in files.abx:
            abx_results += read_results_json(path)

    parts.append("<h2>Results</h2>")
    if abx_results:
        tables, layers = _abx_tables(abx_results)
        parts.append("<h3>ABX: what the model learned beyond MFCC</h3>")
        parts.append(_glance(tables))
        for mode, by_label in tables.items():
            header = [f"ABX error %, {mode} speaker"]
            header += [f"layer {k}" for k in layers] + ["no layer / best"]
            rows = []
            for label, errs in by_label.items():
                row: list[Any] = [label] + [f"{errs[k]:.2f}" if k in errs else "" for k in layers]
                row.append(f"{min(errs.values()):.2f}")
                rows.append(row)
            parts.append(_table(header, rows))
    if files.unit_quality:
        q = UnitQuality.read_json(files.unit_quality)
        parts.append(
            _table(["unit quality", "value"], [[k, f"{v:.4g}"] for k, v in q.metrics().items()])
        )
    slm_rows: list[dict[str, Any]] = []
    references = summary.get("slm_references") or {}
    if files.slm_scores:
        slm_rows = json.loads(files.slm_scores.read_text()).get("results", [])
    if slm_rows and references:
        parts.append("<h3>Spoken LM: the model's units, MFCC units, gold phones</h3>")
        parts.append(_slm_compare(slm_rows, references))
    elif slm_rows:
        parts.append(
            _table(
                ["spoken-LM task", "pairs", "accuracy %", "chance %"],
                [
                    [r["name"], r["num_pairs"], f"{100 * r['accuracy']:.1f}", "50.0"]
                    for r in slm_rows
                ],
            )
        )
    if summary.get("seconds"):
        parts.append(
            _table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in summary["seconds"].items()])
        )

    if files.metrics:
        metrics = [r for r in read_metrics(files.metrics, "train") if "step" in r]
        if metrics:
            model = _model_config(files)
            size = codebook_size or _codebook_size(model, summary)
            parts.append("<h2>Training curves</h2>")
            parts.append(
                f"<p>{_health(metrics, size)}; {len(metrics)} log lines to step "
                f"{metrics[-1]['step']}.</p>"
            )
            curves = training_curves_png(metrics, size, _regression_weight(model))
            parts.append(_img(curves, "training curves"))
    if abx_results:
        parts.append("<h2>ABX per layer</h2>")
        parts.append(_img(abx_png(abx_results), "ABX per layer"))
    if files.unit_quality:
        buf = io.BytesIO()
        plot_phone_unit(UnitQuality.read_json(files.unit_quality), buf)
        parts.append("<h2>P(phone | unit)</h2>")
        parts.append(_img(base64.b64encode(buf.getvalue()).decode("ascii"), "P(phone | unit)"))
    if slm_rows:
        parts.append("<h2>Spoken-LM zero-shot tasks</h2>")
        parts.append(_img(slm_png(slm_rows), "spoken-LM accuracies"))
    sources = [files.metrics, files.unit_quality, files.slm_scores, files.summary, *files.abx]
    parts.append(
        "<p class=note>Made by <code>spidrkit report</code> from: "
        + ", ".join(html.escape(str(p.relative_to(files.root))) for p in sources if p)
        + "</p>"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>spidrkit report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def write_report(
    run_dir: str | Path, out: str | Path | None = None, *, codebook_size: int | None = None
) -> Path:
    """Write ``out`` (default ``RUN_DIR/report.html``) and return its path."""
    files = find_run_files(run_dir)
    page = render_report(files, codebook_size)
    out = Path(out) if out is not None else files.root / "report.html"
    with atomic_write(out, "w") as f:
        f.write(page)
    return out
