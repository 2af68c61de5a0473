"""The whole spidrkit path on the embedded synthetic corpus, with no download (``make demo``).

synth -> train SpidR -> ABX per layer (vs MFCC) -> k-means units -> unit quality -> unit LM ->
sWUGGY / sBLIMP / tSC. Every stage calls the library functions of one ``spidrkit`` command and
prints that command first, so the demo doubles as a copy-paste walkthrough; finished stages are
skipped when the demo is run again.

The pretraining recipe is the shipped ``configs/small.toml`` (``spidrkit train small``) plus
``--set`` overrides: the corpus's manifests, the seed, and, for another number of steps, the
recipe's schedule scaled to it (the quick plan also shrinks the model).
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from spidrkit import configs
from spidrkit.api import Encoder, load
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.config import dump_toml, load_config, read_toml
from spidrkit.errors import SpidrkitError
from spidrkit.eval.abx import (
    ABXConfig,
    compute_abx_modes,
    format_table,
    read_item_file,
    read_results_json,
    write_results_json,
)
from spidrkit.eval.abx.model_features import find_audio, model_abx
from spidrkit.eval.gold import write_gold_phone_units, write_gold_task_units
from spidrkit.eval.plots import plot_abx_layers, plot_phone_unit
from spidrkit.eval.unit_quality import UnitQuality, unit_quality_from_files
from spidrkit.lm.config import LMTrainConfig
from spidrkit.lm.evaluate import UnitsLookup, evaluate_slm
from spidrkit.lm.evaluate import format_table as format_slm_table
from spidrkit.lm.evaluate import write_report as write_slm_report
from spidrkit.lm.train import load_lm, train_lm
from spidrkit.lm.zerospeech import Task, TaskKind, load_task
from spidrkit.models import build_model
from spidrkit.models.checkpoint import save_model
from spidrkit.report import REFERENCES, write_report
from spidrkit.synth.checks import check_corpus
from spidrkit.synth.corpus import load_corpus_info, make_corpus
from spidrkit.train.checkpoint import find_latest_checkpoint
from spidrkit.train.config import TrainConfig, load_train_config
from spidrkit.train.distributed import cleanup
from spidrkit.train.loop import fit
from spidrkit.train.monitor import last_train_metrics
from spidrkit.units.baselines import parse_baseline
from spidrkit.units.extract import AudioItem, extract_features, list_audio, run_corpus
from spidrkit.units.files import write_units
from spidrkit.units.kmeans import KMeans, KMeansConfig, kmeans_of_frames
from spidrkit.units.units import Tokenizer, units_of_audio
from spidrkit.utils.device import resolve_device
from spidrkit.utils.progress import progress as progress_bar
from spidrkit.utils.provenance import RECORD_NAME, check_producer, write_record

log = logging.getLogger(__name__)

# the batching of `spidrkit extract / kmeans / units` (--batch-seconds 200 --batch-items 64)
BATCH_SAMPLES, BATCH_ITEMS = 200 * SAMPLE_RATE, 64


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run. ``demo`` is the default; ``quick`` is for tests and a first look."""

    corpus_preset: str = "demo"
    recipe: str = "small"
    """The shipped pretraining config the demo trains with (``spidrkit train small``)."""
    train_steps: int | None = None
    """Pretraining steps; None: the recipe's (small: 2000). Another count scales the recipe's
    schedule (warm-up, MFCC-target share, save and validation intervals) to it."""
    model_overrides: tuple[str, ...] = ()
    """``--set`` overrides of the recipe's model (the quick plan's smaller model)."""
    kmeans_k: int = 64
    lm_steps: int = 400
    seed: int = 0
    """Pretraining and k-means seed (``spidrkit demo --seed N``)."""
    corpus_seed: int = 0
    """The synthetic corpus's seed: kept apart so that runs of several seeds share one corpus."""
    target_view: bool = True
    """When the corpus has a clean view of train (realistic presets), the teacher and the warm-up
    targets read it while the students read the recorded audio."""
    lm_preset: str = "lm_tiny"
    lm_lr: float = 3e-3
    lm_baselines: bool = False
    """Also train the same unit LM on k-means units of MFCC (the baseline) and on the corpus's gold
    phones (the topline) and score them on the same tasks."""


_QUICK_MODEL = (
    "model.extractor_conv_layer_config="
    + json.dumps([[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2),
    "model.encoder_embed_dim=64",
    "model.encoder_num_heads=2",
    "model.encoder_ff_interm_features=256",
    "model.codebook_size=16",
)

PLANS = {
    "demo": DemoPlan(),
    # at most 45 min on 2 cores: 4x the pretraining (where it beats MFCC), a larger unit LM, its
    # baseline and topline
    "full": DemoPlan(
        train_steps=8000, lm_preset="lm_small", lm_lr=1e-3, lm_steps=1000, lm_baselines=True
    ),
    "quick": DemoPlan(
        corpus_preset="tiny",
        train_steps=40,
        model_overrides=_QUICK_MODEL,
        kmeans_k=16,
        lm_steps=60,
        lm_baselines=True,
    ),
}


@dataclass
class DemoResult:
    """Where the demo put things and the headline numbers it measured."""

    out: Path
    checkpoint: Path
    abx: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    """{"SpidR" | "untrained" | "MFCC": {"within" | "across": {layer: error}}} (MFCC: layer 0)."""
    slm_references: dict[str, Any] = field(default_factory=dict)
    """The same LM's scores on MFCC units and on gold phones ({"MFCC units" | "gold phones": ...})."""
    best_layer: int = 0
    unit_quality: dict[str, float] = field(default_factory=dict)
    slm: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, float] = field(default_factory=dict)
    seed: int = 0


# the recipe's step counts that scale with the number of steps (decay_steps: the rest)
_SCHEDULE = (
    ("run", "save_interval"),
    ("model", "warmup_target_steps"),
    ("model", "freeze_step"),
    ("optimizer", "warmup_steps"),
    ("optimizer", "hold_steps"),
    ("validation", "interval"),
)


def pretrain_overrides(plan: DemoPlan, corpus: Path, out: Path) -> list[str]:
    """The ``--set`` overrides of the recipe (``plan.recipe``) for this corpus, seed and plan."""

    def paths(*files: Path) -> str:
        return json.dumps([str(f) for f in files])

    target = corpus / "train" / "clean_manifest.csv"
    sets = [
        f"run.output_dir={json.dumps(str(out))}",
        f"run.seed={plan.seed}",
        f"data.train_manifests={paths(corpus / 'train' / 'manifest.csv')}",
        f"data.valid_manifests={paths(corpus / 'dev' / 'manifest.csv')}",
    ]
    if plan.target_view and target.is_file():
        sets.append(f"data.target_manifests={paths(target)}")
    recipe = read_toml(configs.path(plan.recipe))
    base = int(recipe["run"]["max_steps"])
    steps = plan.train_steps
    if steps is not None and steps != base:
        scaled = {
            f"{section}.{key}": max(1, round(recipe[section][key] * steps / base))
            for section, key in _SCHEDULE
        }
        decay = steps - scaled["optimizer.warmup_steps"] - scaled["optimizer.hold_steps"]
        sets.append(f"run.max_steps={steps}")
        sets += [f"{k}={v}" for k, v in scaled.items()]
        sets.append(f"optimizer.decay_steps={max(decay, 0)}")
    return sets + list(plan.model_overrides)


def _lm_config(
    plan: DemoPlan, units: Path, out: Path, num_units: int | None = None
) -> dict[str, Any]:
    return {
        "preset": plan.lm_preset,
        "model": {"num_units": num_units or plan.kmeans_k, "max_positions": 1024},
        "data": {
            "train": str(units),
            "valid_fraction": 0.05,
            "batching": "bucket",
            "block_size": 256,
            "max_tokens": 4096,
        },
        "optimizer": {
            "lr": plan.lm_lr,
            "warmup_steps": max(plan.lm_steps // 10, 1),
            "weight_decay": 0.0,
        },
        "validation": {"interval": max(plan.lm_steps // 2, 1)},
        "run": {
            "output_dir": str(out),
            "max_steps": plan.lm_steps,
            "device": "auto",
            "log_interval": 20,
            "save_interval": plan.lm_steps,
            "tensorboard": False,
        },
    }


class _Stages:
    """Runs the stages, printing each one's equivalent ``spidrkit`` command first, timing them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(
        self, stage: str, command: list[Any], action: Callable[[], Any], done: Path | None = None
    ) -> None:
        line = "spidrkit " + " ".join(shlex.quote(str(a)) for a in command)
        if done is not None and done.exists():
            print(f"\n[{stage}] already done ({done}); skipping:\n  {line}", flush=True)
            return
        print(f"\n[{stage}]\n  {line}", flush=True)
        start = time.perf_counter()
        action()
        self.seconds[stage] = time.perf_counter() - start


def _sets(overrides: list[str]) -> list[Any]:
    return [a for o in overrides for a in ("--set", o)]


def run_demo(
    out: str | Path = "runs/demo", plan: DemoPlan | None = None, progress: bool = True
) -> DemoResult:
    """Run every stage into ``out``; returns the measured numbers (also in ``out/summary.json``)."""
    plan = plan or PLANS["demo"]
    out = Path(out)
    corpus, train_dir, ev = out / "corpus", out / "pretrain", out / "eval"
    cfg_dir = out / "configs"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    ev.mkdir(parents=True, exist_ok=True)
    run = _Stages()
    quiet: list[Any] = [] if progress else ["--no-progress"]
    device = resolve_device("auto")

    run(
        "1. synthetic corpus",
        ["synth", "--preset", plan.corpus_preset, "--out", corpus, "--seed", plan.corpus_seed]
        + quiet,
        lambda: _synth(corpus, plan, progress),
        done=corpus / "corpus.json",
    )

    _check_corpus_matches(corpus, plan)
    overrides = pretrain_overrides(plan, corpus, train_dir)
    cfg = load_train_config(plan.recipe, overrides)
    recipe = json.dumps({"recipe": plan.recipe, "config": cfg.to_dict()}, sort_keys=True)
    _claim_stage(train_dir, {"stage": "pretrain", "seed": plan.seed, "config": recipe})
    _claim_stage(ev / "untrained", {"stage": "untrained", "seed": plan.seed, "config": recipe})
    run(
        "2. pretrain SpidR",
        ["train", plan.recipe, *_sets(overrides)] + quiet,
        lambda: _pretrain(plan.recipe, overrides + ([] if progress else ["run.progress=false"])),
    )
    ckpt = find_latest_checkpoint(train_dir / "checkpoints")
    if ckpt is None:
        raise SpidrkitError(f"{train_dir}: training wrote no checkpoint")

    dev_item, dev_manifest = corpus / "dev" / "abx.item", corpus / "dev" / "manifest.csv"
    layers = list(range(1, cfg.model.encoder_num_layers + 1))
    init_ckpt = _untrained_checkpoint(cfg, ev / "untrained")
    abx_untrained, abx_json = ev / "abx_untrained.json", ev / "abx_spidr.json"
    for stage, model, label, path, done in (
        (
            "3a. ABX per layer of the untrained model (the reference to beat)",
            init_ckpt,
            "untrained (random init)",
            abx_untrained,
            abx_untrained,
        ),
        ("3b. ABX per layer", ckpt, "SpidR (demo)", abx_json, None),
    ):
        run(
            stage,
            ["abx", dev_item, "--model", model, "--layers", ",".join(map(str, layers))]
            + ["--manifest", dev_manifest, "--speaker", "within,across", "--label", label]
            + ["--json", path]
            + quiet,
            partial(
                _abx_of_model, dev_item, dev_manifest, model, layers, label, path, device, progress
            ),
            done=done,
        )
    mfcc_dir = ev / "feats_mfcc"
    run(
        "3c. MFCC baseline features (39-d, 10 ms, per-utterance normalised: ZeroSpeech's)",
        ["extract", dev_manifest, "--baseline", "mfcc", "--hop-ms", "10", "--cmvn"]
        + ["--out", mfcc_dir]
        + quiet,
        lambda: _extract_mfcc(dev_manifest, mfcc_dir, device, progress),
    )
    mfcc_json = ev / "abx_mfcc.json"
    run(
        "3d. ABX of MFCC",
        ["abx", dev_item, mfcc_dir, "--step", "0.01", "--speaker", "within,across"]
        + ["--label", "MFCC", "--layer", "0", "--json", mfcc_json]
        + quiet,
        lambda: _abx_of_features(dev_item, mfcc_dir, mfcc_json, device, progress),
    )
    abx_png = ev / "abx_layers.png"
    run(
        "3e. plot ABX per layer",
        ["plot", "abx-layers", abx_json, abx_untrained, "--out", abx_png],
        lambda: plot_abx_layers(
            read_results_json(abx_json) + read_results_json(abx_untrained), abx_png, ""
        ),
    )

    spidr_abx = _abx_by_mode(abx_json)
    init_abx = _abx_by_mode(abx_untrained)
    mfcc_abx = _abx_by_mode(mfcc_json)
    # units from the layer best within and across speakers together
    within, across = spidr_abx["within"], spidr_abx.get("across", {})
    best = min(within, key=lambda k: within[k] + across.get(k, 0.0))

    km = ev / f"kmeans_l{best}_{plan.kmeans_k}.pt"
    train_manifest = corpus / "train" / "manifest.csv"
    run(
        "4a. k-means",
        ["kmeans", "--audio", train_manifest, "--model", ckpt, "--layer", best]
        + ["-k", plan.kmeans_k, "--seed", plan.seed, "--out", km]
        + quiet,
        partial(_kmeans, ckpt, train_manifest, best, plan, km, device, progress),
    )
    units = {}
    for split in ("train", "dev"):
        units[split] = ev / f"units_{split}.jsonl"
        run(
            f"4b. units ({split})",
            ["units", corpus / split / "manifest.csv", "--model", ckpt, "--layer", best]
            + ["--kmeans", km, "--name", "fileid", "--out", units[split]]
            + quiet,
            partial(
                _units,
                ckpt,
                corpus / split / "manifest.csv",
                best,
                km,
                units[split],
                device,
                progress,
            ),
        )
    q_json = ev / "unit_quality.json"
    labels = corpus / "dev" / "phones.jsonl"
    run(
        "5a. unit quality",
        ["unit-quality", labels, units["dev"], "--vocab-size", plan.kmeans_k, "--json", q_json],
        lambda: _unit_quality(labels, units["dev"], plan.kmeans_k, q_json),
    )
    heatmap = ev / "phone_unit.png"
    run(
        "5b. plot P(phone|unit)",
        ["plot", "phone-unit", q_json, "--out", heatmap],
        lambda: plot_phone_unit(UnitQuality.read_json(q_json), heatmap, ""),
    )

    lm_toml = cfg_dir / "lm.toml"
    lm_dir = out / "lm"
    lm_toml.write_text(dump_toml(_lm_config(plan, units["train"], lm_dir)))
    run("6. train the unit LM", ["lm-train", lm_toml] + quiet, lambda: _train_lm(lm_toml, progress))
    slm_dir = ev / "slm"
    tasks = _TASKS
    run(
        "7. spoken-LM zero-shot scores",
        ["slm-eval", "--lm", lm_dir, "--model", ckpt, "--layer", best, "--kmeans", km]
        + _task_args(corpus, tasks)
        + ["--out", slm_dir],
        lambda: _slm_eval(
            lm_dir,
            _slm_tasks(corpus, tasks),
            Tokenizer(str(ckpt), best, str(km), device=device),
            slm_dir,
            device,
            progress,
        ),
    )

    references = {}
    if plan.lm_baselines:
        references = _lm_references(plan, corpus, out, run, quiet, device, progress)

    quality = json.loads(q_json.read_text())
    metrics = quality.get("metrics", quality)
    codebook_size = cfg.model.codebook_size
    result = DemoResult(
        out=out,
        checkpoint=ckpt,
        abx={"SpidR": spidr_abx, "untrained": init_abx, "MFCC": mfcc_abx},
        best_layer=best,
        unit_quality={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        slm=json.loads((slm_dir / "scores.json").read_text()),
        slm_references=references,
        seconds=run.seconds,
        seed=plan.seed,
    )
    result.training = _training_health(train_dir / "metrics.jsonl", codebook_size)
    _write_summary(result)
    run(
        "9. HTML report",
        ["report", out],
        lambda: print(f"wrote {write_report(out, codebook_size=codebook_size)}"),
    )
    return result


# -- the stages: the library calls of each command --------------------------------------------


def _synth(corpus: Path, plan: DemoPlan, progress: bool) -> None:
    info = make_corpus(
        corpus, preset=plan.corpus_preset, seed=plan.corpus_seed, show_progress=progress
    )
    print(info.summary())
    report = check_corpus(corpus)
    print(report.summary())
    if not report.ok:
        raise SpidrkitError(f"{corpus}: the synthetic corpus fails its checks (see above)")


def _pretrain(recipe: str, overrides: list[str]) -> None:
    cfg = load_train_config(recipe, overrides)
    try:
        result = fit(cfg)
    finally:
        cleanup()
    if result.checkpoint is not None:
        print(f"step {result.step}: {result.checkpoint}")


def _abx_of_model(
    item: Path,
    manifest: Path,
    model: Path,
    layers: list[int],
    label: str,
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    items = read_item_file(item)
    audio = find_audio(sorted(set(items.fileid)), None, manifest)
    results = model_abx(
        items,
        load(model, device=device),
        audio,
        layers,
        ABXConfig(),
        label=label,
        speakers=("within", "across"),
        device=device,
        show_progress=progress,
    )
    print(format_table(results))
    write_results_json(results, out)


def _extract_mfcc(manifest: Path, out: Path, device: torch.device, progress: bool) -> None:
    mfcc = Encoder(
        parse_baseline("mfcc", None, hop_ms=10, cmvn=True),
        device,
        max_batch_samples=BATCH_SAMPLES,
        max_batch_items=BATCH_ITEMS,
    )
    stats = extract_features(mfcc, list_audio(manifest), out, show_progress=progress)
    print(f"{stats.num_files} files ({stats.audio_seconds:.0f} audio-s) -> {out}")


def _abx_of_features(
    item: Path, feats: Path, out: Path, device: torch.device, progress: bool
) -> None:
    results = compute_abx_modes(
        read_item_file(item),
        feats,
        ABXConfig(step=0.01),
        speakers=("within", "across"),
        label="MFCC",
        layer=0,
        device=device,
        show_progress=progress,
    )
    print(format_table(results))
    write_results_json(results, out)


def _encoder_frames(
    encoder: Encoder, items: list[AudioItem], layer: int, progress: bool
) -> Iterator[torch.Tensor]:
    bar = progress_bar(
        total=round(sum(it.num_samples for it in items) / SAMPLE_RATE, 2),
        desc="extract",
        unit="s",
        enabled=progress,
    )
    for _, feats in run_corpus(encoder, items, layers=[layer], on_batch=bar.update):
        yield feats[layer]
    bar.close()


def _encoder(model: Path | str, device: torch.device) -> Encoder:
    """The encoder of ``--model MODEL`` or, for ``"mfcc"``, of ``--baseline mfcc --cmvn`` (20 ms
    frames, the encoders' rate), batched as ``kmeans`` and ``units`` do."""
    if model == "mfcc":
        mfcc = parse_baseline("mfcc", None, cmvn=True)
        return Encoder(mfcc, device, max_batch_samples=BATCH_SAMPLES, max_batch_items=BATCH_ITEMS)
    return load(model, device=device, max_batch_samples=BATCH_SAMPLES, max_batch_items=BATCH_ITEMS)


def _kmeans(
    model: Path | str,
    manifest: Path,
    layer: int | None,
    plan: DemoPlan,
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    """``spidrkit kmeans --audio MANIFEST`` of ``model`` (see :func:`_encoder`) at ``layer``
    (None: the baseline's one)."""
    encoder = _encoder(model, device)
    (key,) = encoder.check_layers(None if layer is None else [layer])
    config = KMeansConfig(
        k=plan.kmeans_k, batch_size=10000, max_epochs=100, patience=20, seed=plan.seed
    )
    km = kmeans_of_frames(
        _encoder_frames(encoder, list_audio(manifest), key, progress),
        config,
        max_frames=1_000_000,
        layer=layer,
        source=f"{manifest} ({model})",
        identity=encoder.identity(),
        device=device,
        progress=progress,
    )
    km.save(out)
    print(f"k-means k={km.k} dim={km.dim} layer={layer} -> {out}")


def _units(
    model: Path | str,
    source: Path,
    layer: int | None,
    km: Path,
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    """``spidrkit units SOURCE --kmeans KM --name fileid`` of ``model`` (see :func:`_encoder`)."""
    encoder = _encoder(model, device)
    (key,) = encoder.check_layers(None if layer is None else [layer])
    records = units_of_audio(
        encoder,
        list_audio(source),
        key,
        KMeans.load(km, device),
        name="fileid",
        show_progress=progress,
    )
    print(f"{write_units(records, out)} utterances -> {out}")


def _unit_quality(labels: Path, units: Path, vocab: int, out: Path) -> None:
    q = unit_quality_from_files(
        labels, units, label_step=0.01, unit_step=0.02, vocab_size=vocab, tolerance=2
    )
    for name, value in q.metrics().items():
        print(f"{name:<18} {value:.4f}" if isinstance(value, float) else f"{name:<18} {value}")
    q.write_json(out)


def _train_lm(config: Path, progress: bool) -> None:
    try:
        result = train_lm(load_config(LMTrainConfig, config), show_progress=progress)
    finally:
        cleanup()
    print(f"step {result.step}: train loss {result.train_loss:.4f}")


def _slm_tasks(corpus: Path, tasks: tuple[tuple[TaskKind, str], ...]) -> list[Task]:
    """The tasks of ``slm-eval --lexical/--syntactic/--tsc DIR`` (one folder each)."""
    out = []
    for task, flag in tasks:
        folder = corpus / task / "dev"
        out.append(load_task(folder, task, name="tSC" if flag == "--tsc" else None))
    return out


def _task_args(corpus: Path, tasks: tuple[tuple[TaskKind, str], ...]) -> list[Any]:
    return [a for task, flag in tasks for a in (flag, corpus / task / "dev")]


def _slm_eval_units(
    lm: Path,
    corpus: Path,
    tasks: tuple[tuple[TaskKind, str], ...],
    units: list[Path],
    out: Path,
    device: torch.device,
    progress: bool,
) -> None:
    """``spidrkit slm-eval --lm LM --units ... --lexical ... --out OUT``."""
    _slm_eval(lm, _slm_tasks(corpus, tasks), UnitsLookup.from_jsonl(*units), out, device, progress)


def _slm_eval(
    lm: Path, tasks: list[Task], tokenize: Any, out: Path, device: torch.device, progress: bool
) -> None:
    """``spidrkit slm-eval --lm LM ... --out OUT``: the accuracies, written as the command does."""
    report = evaluate_slm(load_lm(lm, device=device), tasks, tokenize, show_progress=progress)
    write_slm_report(report, out)
    print(format_slm_table(report.results))


_TASKS: tuple[tuple[TaskKind, str], ...] = (
    ("lexical", "--lexical"),
    ("syntactic", "--syntactic"),
    ("storycloze", "--tsc"),
)


def _lm_references(
    plan: DemoPlan,
    corpus: Path,
    out: Path,
    run: _Stages,
    quiet: list[Any],
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    """The demo's unit LM trained and scored on MFCC k-means units (the baseline: what the
    encoder must beat) and on gold phones (the topline: perfect phone units, lexical task only)."""
    ref = out / REFERENCES
    ref.mkdir(parents=True, exist_ok=True)
    mfcc_args = ["--baseline", "mfcc", "--cmvn"]  # 20 ms frames, the encoder's rate

    km = ref / f"kmeans_mfcc_{plan.kmeans_k}.pt"
    train_manifest = corpus / "train" / "manifest.csv"
    run(
        "8a. MFCC units: k-means (the baseline)",
        ["kmeans", "--audio", train_manifest, *mfcc_args]
        + ["-k", plan.kmeans_k, "--seed", plan.seed, "--out", km]
        + quiet,
        partial(_kmeans, "mfcc", train_manifest, None, plan, km, device, progress),
        done=km,
    )
    sources = {"train": train_manifest}
    sources.update({task: corpus / task / "dev" for task, _ in _TASKS})
    units = {name: ref / f"mfcc_units_{name}.jsonl" for name in sources}
    for name, src in sources.items():
        run(
            f"8b. MFCC units ({name})",
            ["units", src, *mfcc_args, "--kmeans", km, "--name", "fileid"]
            + ["--out", units[name]]
            + quiet,
            partial(_units, "mfcc", src, None, km, units[name], device, progress),
            done=units[name],
        )
    gold_train, gold_lex = ref / "gold_units_train.jsonl", ref / "gold_units_lexical.jsonl"
    print("\n[8c. gold phone units (the topline): spidrkit.eval.gold]", flush=True)
    vocab = write_gold_phone_units(corpus / "train" / "phones.jsonl", gold_train)
    write_gold_task_units(corpus / "lexical" / "dev", gold_lex, vocab)

    scores = {}
    for label, train_units, num_units, task_units, tasks in (
        ("MFCC units", units["train"], plan.kmeans_k, [units[t] for t, _ in _TASKS], _TASKS),
        ("gold phones", gold_train, len(vocab), [gold_lex], _TASKS[:1]),
    ):
        tag = "mfcc" if label.startswith("MFCC") else "gold"
        lm_toml, lm_dir = out / "configs" / f"lm_{tag}.toml", ref / f"lm_{tag}"
        lm_toml.write_text(dump_toml(_lm_config(plan, train_units, lm_dir, num_units)))
        run(
            f"8d. unit LM on {label}",
            ["lm-train", lm_toml] + quiet,
            partial(_train_lm, lm_toml, progress),
        )
        slm_dir = ref / f"slm_{tag}"
        run(
            f"8e. spoken-LM scores of the LM on {label}",
            ["slm-eval", "--lm", lm_dir]
            + [a for path in task_units for a in ("--units", path)]
            + _task_args(corpus, tasks)
            + ["--out", slm_dir]
            + quiet,
            partial(_slm_eval_units, lm_dir, corpus, tasks, task_units, slm_dir, device, progress),
        )
        scores[label] = json.loads((slm_dir / "scores.json").read_text())
    return scores


def _check_corpus_matches(corpus: Path, plan: DemoPlan) -> None:
    """A corpus folder reused by a later run must be the one this plan asks for."""
    info = load_corpus_info(corpus)
    preset = info.get("preset", {}).get("name")
    if preset != plan.corpus_preset or info.get("seed") != plan.corpus_seed:
        raise SpidrkitError(
            f"{corpus} holds the {preset!r} corpus of seed {info.get('seed')}, this demo asks for "
            f"{plan.corpus_preset!r} of seed {plan.corpus_seed}; use another --out"
        )


def _claim_stage(folder: Path, wanted: dict[str, Any]) -> None:
    """Record what a stage folder is made from before its stage runs; refuse a folder made for
    another seed or config (the stage would resume or skip with the wrong outputs)."""
    if check_producer(folder, wanted, what="a demo stage"):
        return
    if folder.exists() and any(p.name != RECORD_NAME for p in folder.iterdir()):
        raise SpidrkitError(
            f"{folder} holds outputs of an earlier demo without a record of their seed and "
            "config; delete it or use another --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder, wanted)


def _abx_by_mode(path: Path) -> dict[str, dict[int, float]]:
    """{speaker mode: {layer: error}} of an ``spidrkit abx --json`` file (layer 0: no layer)."""
    out: dict[str, dict[int, float]] = {}
    for r in read_results_json(path):
        if r.error is not None:
            out.setdefault(r.config.speaker, {})[int(r.layer or 0)] = r.error
    return out


def _untrained_checkpoint(cfg: TrainConfig, folder: Path) -> Path:
    """The pretraining run's model at step 0 (same config and seed), for the reference ABX."""
    path = folder / "checkpoint.pt"
    if path.is_file():
        return path
    torch.manual_seed(cfg.run.seed)  # as the trainer does before building the model
    save_model(build_model(cfg.run.model_type, cfg.model), path)
    return path


def _training_health(metrics: Path, codebook_size: int) -> dict[str, float]:
    """Final target perplexity and active codewords of the pretraining log."""
    keys = ("step", "loss", "target_ppl", "active_codewords", "active_codewords_min")
    out = last_train_metrics(metrics, keys) if metrics.is_file() else {}
    return {**out, "codebook_size": float(codebook_size)} if out else {}


def _write_summary(r: DemoResult) -> None:
    layers = list(r.abx["SpidR"]["within"])
    lines = [
        "# spidrkit demo summary",
        "",
        f"checkpoint: `{r.checkpoint}` (seed {r.seed})",
        "",
        "| ABX (dev, %) | speaker | " + " | ".join(f"layer {k}" for k in layers) + " |",
        "|---" * (len(layers) + 2) + "|",
    ]
    for mode in ("within", "across"):
        for name, errs in (
            ("SpidR (trained)", r.abx["SpidR"].get(mode, {})),
            ("untrained", r.abx.get("untrained", {}).get(mode, {})),
        ):
            cells = [f"{100 * errs[k]:.2f}" if k in errs else "" for k in layers]
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
        mfcc = r.abx["MFCC"].get(mode, {}).get(0)
        if mfcc is not None:
            lines.append(
                f"| MFCC (10 ms, CMVN) | {mode} | {100 * mfcc:.2f} |" + " |" * (len(layers) - 1)
            )
    lines.append("")
    if r.training:
        t = r.training
        books = (
            f"active codewords {t['active_codewords']:.0f}"
            if "active_codewords" in t
            else "the teacher's codebooks idle (MFCC targets throughout)"
        )
        lines += [
            f"Pretraining end (step {t.get('step', 0):.0f}): loss {t.get('loss', 0):.2f}, target "
            f"perplexity {t.get('target_ppl', 0):.1f} of V = {t.get('codebook_size', 0):.0f}, "
            f"{books}.",
            "",
        ]
    lines += [
        f"Units: k-means of layer {r.best_layer} (the best ABX layer).",
        "",
    ]
    lines += [f"- {k}: {v:.4g}" for k, v in r.unit_quality.items()]
    lines += ["", "| spoken-LM task (dev) | pairs | accuracy % |", "|---|---|---|"]
    for task in r.slm.get("results", []):
        lines.append(f"| {task['name']} | {task['num_pairs']} | {100 * task['accuracy']:.1f} |")
        for key, acc in task.get("by", {}).items():
            lines.append(f"| {task['name']} {key} | | {100 * acc:.1f} |")
    for label, ref in r.slm_references.items():
        for task in ref.get("results", []):
            lines.append(
                f"| {task['name']}, same LM on {label} | {task['num_pairs']} | "
                f"{100 * task['accuracy']:.1f} |"
            )
    lines += ["", "Seconds per stage:", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in r.seconds.items()]
    (r.out / "summary.md").write_text("\n".join(lines) + "\n")
    (r.out / "summary.json").write_text(
        json.dumps(
            {
                "checkpoint": str(r.checkpoint),
                "seed": r.seed,
                "training": r.training,
                "abx": r.abx,
                "best_layer": r.best_layer,
                "unit_quality": r.unit_quality,
                "slm": r.slm,
                "slm_references": r.slm_references,
                "seconds": r.seconds,
            },
            indent=2,
        )
    )
    print("\n" + "\n".join(lines))
