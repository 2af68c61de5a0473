"""The whole spidrkit path on the embedded synthetic corpus, with no download (``make demo``).

synth -> train SpidR -> ABX per layer (vs MFCC) -> k-means units -> unit quality -> unit LM ->
sWUGGY / sBLIMP / tSC. Every stage is one ``spidrkit`` command, printed before it runs, so the demo
doubles as a copy-paste walkthrough; finished stages are skipped when the demo is run again.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidrkit.config import dump_toml
from spidrkit.errors import SpidrkitError
from spidrkit.report import REFERENCES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of a demo run. ``demo`` is the default; ``quick`` is for tests and a first look."""

    corpus_preset: str = "demo"
    train_steps: int = 1200
    lr: float = 1e-3
    embed_dim: int = 128
    num_layers: int = 4
    codebook_size: int = 64
    # the small-scale recipe (docs/training.md, "Small-scale pretraining"); configs/small.toml
    codebook_distance: str = "cosine"
    codebook_balance: float = 0.05
    warmup_fraction: float = 2 / 3
    """Share of the steps whose targets are MFCC codes (then SpidR self-distillation)."""
    warmup_unmasked_weight: float = 1.0
    warmup_regression_weight: float = 1.0
    """Also regress the target view's MFCC frames during the warm-up (the realistic-corpus study:
    best-layer dev ABX 20.8 % instead of 33.3 % within speaker at 1200 steps, seed 0)."""
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


PLANS = {
    "demo": DemoPlan(),
    # at most 45 min on 2 cores: 4x the pretraining, a larger unit LM, its baseline and topline
    "full": DemoPlan(
        train_steps=4800, lm_preset="lm_small", lm_lr=1e-3, lm_steps=1000, lm_baselines=True
    ),
    "quick": DemoPlan(
        corpus_preset="tiny",
        train_steps=40,
        embed_dim=64,
        codebook_size=16,
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


def pretrain_config(plan: DemoPlan, corpus: Path, out: Path) -> dict[str, Any]:
    d = plan.embed_dim
    return {
        "run": {
            "model_type": "spidr",
            "output_dir": str(out),
            "max_steps": plan.train_steps,
            "seed": plan.seed,
            "device": "auto",
            "precision": "fp32",
            "log_interval": 20,
            "save_interval": max(plan.train_steps // 2, 1),
            "keep_last": 1,
        },
        "data": {
            "train_manifests": [str(corpus / "train" / "manifest.csv")],
            "valid_manifests": [str(corpus / "dev" / "manifest.csv")],
            "target_manifests": [str(corpus / "train" / "clean_manifest.csv")]
            if plan.target_view and (corpus / "train" / "clean_manifest.csv").is_file()
            else [],
            "max_batch_samples": 160_000,
            "min_sample_size": 8000,
            "max_sample_size": 64_000,
            "num_buckets": 20,
            "num_workers": 1,
        },
        "model": {
            "extractor_conv_layer_config": [[d, 10, 5]] + [[d, 3, 2]] * 4 + [[d, 2, 2]] * 2,
            "encoder_embed_dim": d,
            "encoder_num_layers": plan.num_layers,
            "encoder_num_heads": max(1, d // 32),
            "encoder_ff_interm_features": 4 * d,
            "codebook_size": plan.codebook_size,
            "codebook_distance": plan.codebook_distance,
            "codebook_balance": plan.codebook_balance,
            "warmup_targets": "mfcc" if plan.warmup_fraction > 0 else "none",
            "warmup_target_steps": round(plan.warmup_fraction * plan.train_steps),
            "warmup_unmasked_weight": plan.warmup_unmasked_weight,
            "warmup_regression_weight": plan.warmup_regression_weight,
            "num_codebooks": min(3, plan.num_layers),
            "encoder_attention_dropout": 0.0,
            "encoder_dropout": 0.05,
            "encoder_layer_drop": 0.0,
            # A short run needs a teacher that follows the student: a constant decay of 0.99
            # (the official 0.999 -> 1 schedule is made for 400k steps).
            "ema_start_decay": 0.99,
            "ema_timescale": 1_000_000,
            "freeze_step": plan.train_steps * 10,
        },
        "optimizer": {
            "lr": plan.lr,
            "scheduler": "tristage",
            "warmup_steps": max(plan.train_steps // 12, 1),
            "hold_steps": plan.train_steps // 2,
            "decay_steps": plan.train_steps
            - max(plan.train_steps // 12, 1)
            - plan.train_steps // 2,
            "clip_norm": 10.0,
        },
        "masking": {"mask_prob": 0.8, "mask_length": 10, "min_masks": 2},
        "validation": {"interval": max(plan.train_steps // 2, 1), "max_batches": 4},
    }


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


class _Runner:
    """Runs ``spidrkit`` commands in-process, printing each one first, timing them."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, args: list[str], done: Path | None = None) -> None:
        from spidrkit.cli.main import main

        line = "spidrkit " + " ".join(shlex.quote(a) for a in args)
        if done is not None and done.exists():
            print(f"\n[{stage}] already done ({done}); skipping:\n  {line}", flush=True)
            return
        print(f"\n[{stage}]\n  {line}", flush=True)
        start = time.perf_counter()
        code = main(args)
        self.seconds[stage] = time.perf_counter() - start
        if code:
            raise SpidrkitError(f"demo stage {stage!r} failed (exit {code}): {line}")


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
    run = _Runner(progress)
    quiet = [] if progress else ["--no-progress"]

    run(
        "1. synthetic corpus",
        [
            "synth",
            "--preset",
            plan.corpus_preset,
            "--out",
            str(corpus),
            "--seed",
            str(plan.corpus_seed),
        ]
        + quiet,
        done=corpus / "corpus.json",
    )

    _check_corpus_matches(corpus, plan)
    train_toml = cfg_dir / "pretrain.toml"
    train_text = dump_toml(pretrain_config(plan, corpus, train_dir))
    _claim_stage(train_dir, {"stage": "pretrain", "seed": plan.seed, "config": train_text})
    _claim_stage(ev / "untrained", {"stage": "untrained", "seed": plan.seed, "config": train_text})
    train_toml.write_text(train_text)
    run("2. pretrain SpidR", ["train", str(train_toml)] + quiet)
    from spidrkit.train.checkpoint import find_latest_checkpoint

    ckpt = find_latest_checkpoint(train_dir / "checkpoints")
    if ckpt is None:
        raise SpidrkitError(f"{train_dir}: training wrote no checkpoint")

    dev_item = corpus / "dev" / "abx.item"
    layers = ",".join(str(i) for i in range(1, plan.num_layers + 1))
    init_ckpt = _untrained_checkpoint(train_toml, ev / "untrained")
    run(
        "3a. ABX per layer of the untrained model (the reference to beat)",
        [
            "abx",
            str(dev_item),
            "--model",
            str(init_ckpt),
            "--layers",
            layers,
            "--manifest",
            str(corpus / "dev" / "manifest.csv"),
            "--speaker",
            "within,across",
            "--label",
            "untrained (random init)",
            "--json",
            str(ev / "abx_untrained.json"),
        ]
        + quiet,
        done=ev / "abx_untrained.json",
    )
    abx_json = ev / "abx_spidr.json"
    run(
        "3b. ABX per layer",
        [
            "abx",
            str(dev_item),
            "--model",
            str(ckpt),
            "--layers",
            layers,
            "--manifest",
            str(corpus / "dev" / "manifest.csv"),
            "--speaker",
            "within,across",
            "--label",
            "SpidR (demo)",
            "--json",
            str(abx_json),
        ]
        + quiet,
    )
    mfcc_dir = ev / "feats_mfcc"
    run(
        "3c. MFCC baseline features (39-d, 10 ms, per-utterance normalised: ZeroSpeech's)",
        [
            "extract",
            str(corpus / "dev" / "manifest.csv"),
            "--baseline",
            "mfcc",
            "--hop-ms",
            "10",
            "--cmvn",
            "--out",
            str(mfcc_dir),
        ]
        + quiet,
    )
    mfcc_json = ev / "abx_mfcc.json"
    run(
        "3d. ABX of MFCC",
        [
            "abx",
            str(dev_item),
            str(mfcc_dir),
            "--step",
            "0.01",
            "--speaker",
            "within,across",
            "--label",
            "MFCC",
            "--layer",
            "0",
            "--json",
            str(mfcc_json),
        ]
        + quiet,
    )
    run(
        "3e. plot ABX per layer",
        [
            "plot",
            "abx-layers",
            str(abx_json),
            str(ev / "abx_untrained.json"),
            "--out",
            str(ev / "abx_layers.png"),
        ],
    )

    spidr_abx = _abx_by_mode(abx_json)
    init_abx = _abx_by_mode(ev / "abx_untrained.json")
    mfcc_abx = _abx_by_mode(mfcc_json)
    # units from the layer best within and across speakers together
    within, across = spidr_abx["within"], spidr_abx.get("across", {})
    best = min(within, key=lambda k: within[k] + across.get(k, 0.0))

    km = ev / f"kmeans_l{best}_{plan.kmeans_k}.pt"
    run(
        "4a. k-means",
        [
            "kmeans",
            "--audio",
            str(corpus / "train" / "manifest.csv"),
            "--model",
            str(ckpt),
            "--layer",
            str(best),
            "-k",
            str(plan.kmeans_k),
            "--seed",
            str(plan.seed),
            "--out",
            str(km),
        ]
        + quiet,
    )
    units = {}
    for split in ("train", "dev"):
        units[split] = ev / f"units_{split}.jsonl"
        run(
            f"4b. units ({split})",
            [
                "units",
                str(corpus / split / "manifest.csv"),
                "--model",
                str(ckpt),
                "--layer",
                str(best),
                "--kmeans",
                str(km),
                "--name",
                "fileid",
                "--out",
                str(units[split]),
            ]
            + quiet,
        )
    q_json = ev / "unit_quality.json"
    run(
        "5a. unit quality",
        [
            "unit-quality",
            str(corpus / "dev" / "phones.jsonl"),
            str(units["dev"]),
            "--vocab-size",
            str(plan.kmeans_k),
            "--json",
            str(q_json),
        ],
    )
    run(
        "5b. plot P(phone|unit)",
        ["plot", "phone-unit", str(q_json), "--out", str(ev / "phone_unit.png")],
    )

    lm_toml = cfg_dir / "lm.toml"
    lm_dir = out / "lm"
    lm_toml.write_text(dump_toml(_lm_config(plan, units["train"], lm_dir)))
    run("6. train the unit LM", ["lm-train", str(lm_toml)] + quiet)
    slm_dir = ev / "slm"
    run(
        "7. spoken-LM zero-shot scores",
        [
            "slm-eval",
            "--lm",
            str(lm_dir),
            "--model",
            str(ckpt),
            "--layer",
            str(best),
            "--kmeans",
            str(km),
            "--lexical",
            str(corpus / "lexical" / "dev"),
            "--syntactic",
            str(corpus / "syntactic" / "dev"),
            "--tsc",
            str(corpus / "storycloze" / "dev"),
            "--out",
            str(slm_dir),
        ],
    )

    references = {}
    if plan.lm_baselines:
        references = _lm_references(plan, corpus, out, run, quiet)

    quality = json.loads(q_json.read_text())
    metrics = quality.get("metrics", quality)
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
    result.training = _training_health(train_dir / "metrics.jsonl", plan.codebook_size)
    _write_summary(result)
    run("9. HTML report", ["report", str(out)])
    return result


_TASKS = (("lexical", "--lexical"), ("syntactic", "--syntactic"), ("storycloze", "--tsc"))


def _lm_references(
    plan: DemoPlan, corpus: Path, out: Path, run: _Runner, quiet: list[str]
) -> dict[str, Any]:
    """The demo's unit LM trained and scored on MFCC k-means units (the baseline: what the
    encoder must beat) and on gold phones (the topline: perfect phone units, lexical task only)."""
    from spidrkit.units.gold import write_gold_phone_units, write_gold_task_units

    ref = out / REFERENCES
    ref.mkdir(parents=True, exist_ok=True)
    mfcc = ["--baseline", "mfcc", "--cmvn"]  # 20 ms frames, the encoder's rate
    km = ref / f"kmeans_mfcc_{plan.kmeans_k}.pt"
    run(
        "8a. MFCC units: k-means (the baseline)",
        ["kmeans", "--audio", str(corpus / "train" / "manifest.csv"), *mfcc]
        + ["-k", str(plan.kmeans_k), "--seed", str(plan.seed), "--out", str(km)]
        + quiet,
        done=km,
    )
    sources = {"train": corpus / "train" / "manifest.csv"}
    sources.update({task: corpus / task / "dev" for task, _ in _TASKS})
    units = {name: ref / f"mfcc_units_{name}.jsonl" for name in sources}
    for name, src in sources.items():
        run(
            f"8b. MFCC units ({name})",
            ["units", str(src), *mfcc, "--kmeans", str(km), "--name", "fileid"]
            + ["--out", str(units[name])]
            + quiet,
            done=units[name],
        )
    gold_train, gold_lex = ref / "gold_units_train.jsonl", ref / "gold_units_lexical.jsonl"
    print("\n[8c. gold phone units (the topline): spidrkit.units.gold]", flush=True)
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
        run(f"8d. unit LM on {label}", ["lm-train", str(lm_toml)] + quiet)
        slm_dir = ref / f"slm_{tag}"
        args = ["slm-eval", "--lm", str(lm_dir)]
        for path in task_units:
            args += ["--units", str(path)]
        for task, flag in tasks:
            args += [flag, str(corpus / task / "dev")]
        run(f"8e. spoken-LM scores of the LM on {label}", args + ["--out", str(slm_dir)] + quiet)
        scores[label] = json.loads((slm_dir / "scores.json").read_text())
    return scores


def _check_corpus_matches(corpus: Path, plan: DemoPlan) -> None:
    """A corpus folder reused by a later run must be the one this plan asks for."""
    from spidrkit.synth.corpus import load_corpus_info

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
    from spidrkit.utils.provenance import RECORD_NAME, check_producer, write_record

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
    from spidrkit.eval.abx import read_results_json

    out: dict[str, dict[int, float]] = {}
    for r in read_results_json(path):
        if r.error is not None:
            out.setdefault(r.config.speaker, {})[int(r.layer or 0)] = r.error
    return out


def _untrained_checkpoint(train_toml: Path, folder: Path) -> Path:
    """The pretraining run's model at step 0 (same config and seed), for the reference ABX."""
    path = folder / "checkpoint.pt"
    if path.is_file():
        return path
    import torch

    from spidrkit.models import build_model
    from spidrkit.models.checkpoint import save_model
    from spidrkit.train.config import load_train_config

    cfg = load_train_config(train_toml)
    torch.manual_seed(cfg.run.seed)  # as the trainer does before building the model
    save_model(build_model(cfg.run.model_type, cfg.model), path)
    return path


def _training_health(metrics: Path, codebook_size: int) -> dict[str, float]:
    """Final target perplexity and active codewords of the pretraining log."""
    from spidrkit.train.monitor import last_train_metrics

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
        lines += [
            f"Pretraining end (step {t.get('step', 0):.0f}): loss {t.get('loss', 0):.2f}, target "
            f"perplexity {t.get('target_ppl', 0):.1f} of V = {t.get('codebook_size', 0):.0f}, "
            f"active codewords {t.get('active_codewords', 0):.0f}.",
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
