"""Small-scale pretraining study: which settings make SpidR (and DinoSR) learn on the demo corpus?

Each run trains the demo's 4-layer, 128-d model on the synthetic corpus with one variant of the
settings and one seed, then measures dev ABX (within speaker and context) on every layer. One JSON
row per run is appended to ``<out>/results.jsonl`` (settings, seed, final target perplexity, active
codewords, final loss, ABX per layer, minutes); finished runs are skipped when the study is run again,
so a killed study resumes. ``--table`` prints the Markdown table of all rows (used in docs/training.md).

    spidrkit synth --preset demo --out data/synth
    python bench/pretrain_study.py --corpus data/synth --out runs/study \\
        --variant small --variant official --seeds 0 1 2 --threads 2
    python bench/pretrain_study.py --out runs/study --table

A variant is a name from ``VARIANTS`` or ``name:key=value,key=value`` with dotted config keys
(``model.codebook_distance=cosine,optimizer.lr=5e-4``). Runs one at a time: torch threads set by
``--threads`` (two torch jobs on two cores slow each other down many times).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spidrkit.config import dump_toml
from spidrkit.demo import PLANS, DemoPlan, pretrain_overrides
from spidrkit.train.checkpoint import find_latest_checkpoint
from spidrkit.train.config import load_train_config
from spidrkit.train.monitor import last_train_metrics

FINAL_KEYS = ("loss", "target_ppl", "pred_ppl", "active_codewords", "active_codewords_min")

# name -> dotted overrides on top of the demo plan's pretraining config: "small" is the demo as it is
# (the small-scale recipe), "official" the demo before the small-scale controls (the official
# objective and codebooks; lr 2e-4, V = 256). A "name:k=v,..." variant whose name starts with
# "official+" starts from the official overrides.
VARIANTS: dict[str, dict[str, Any]] = {
    "small": {},
    "official": {
        "model.codebook_distance": "euclidean",
        "model.codebook_balance": 0.0,
        "model.codebook_size": 256,
        "model.warmup_targets": "none",
        "model.warmup_target_steps": 0,
        "model.warmup_unmasked_weight": 0.0,
        "optimizer.lr": 2e-4,
    },
}


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` (from VARIANTS) or ``name:key=value,...`` -> (name, overrides)."""
    if ":" not in spec:
        if spec not in VARIANTS:
            raise SystemExit(f"unknown variant {spec!r}; known: {', '.join(VARIANTS)}")
        return spec, dict(VARIANTS[spec])
    name, _, body = spec.partition(":")
    base = dict(VARIANTS.get(name.split("+")[0], {})) if "+" in name else {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        base[key.strip()] = json.loads(value) if _is_json(value) else value
    return name, base


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
        return True
    except ValueError:
        return False


def apply_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        cfg.setdefault(section, {})[field] = value
    return cfg


LOCK: str | None = None  # --lock: a file locked (flock) around each command, to share a machine


def _spidrkit(args: list[str], threads: int, log_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "spidrkit.cli.main", *args]
    if LOCK:
        cmd = ["flock", LOCK, *cmd]
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code:
        raise RuntimeError(f"{' '.join(args[:2])} failed (exit {code}); see {log_path}")


def run_one(
    name: str,
    overrides: dict[str, Any],
    seed: int,
    corpus: Path,
    out: Path,
    threads: int,
    plan: DemoPlan,
) -> dict[str, Any]:
    run_dir = out / f"{name}-s{seed}-n{plan.train_steps}"
    run_dir.mkdir(parents=True, exist_ok=True)
    # the demo's recipe (configs/small.toml + the plan's overrides), as a plain dict to edit
    cfg = load_train_config(
        plan.recipe, pretrain_overrides(plan, corpus, run_dir / "train")
    ).to_dict()
    cfg["run"]["seed"] = seed
    cfg["run"]["progress"] = False
    cfg["run"]["tensorboard"] = False
    cfg["validation"]["interval"] = 0
    cfg["data"]["valid_manifests"] = []
    apply_overrides(cfg, overrides)
    if cfg["run"]["model_type"] == "dinosr":  # DinoSR's teacher schedule: a constant decay too
        model = cfg["model"]
        model.pop("ema_timescale", None)
        model.setdefault("ema_final_decay", model["ema_start_decay"])
        model.setdefault("ema_final_step", 1)
    toml = run_dir / "pretrain.toml"
    toml.write_text(dump_toml(cfg))
    log_path = run_dir / "log.txt"
    minutes_file = run_dir / "train_minutes.txt"
    if not minutes_file.exists():  # else: trained already (a study killed during its ABX)
        t0 = time.perf_counter()
        _spidrkit(["train", str(toml)], threads, log_path)
        minutes_file.write_text(f"{(time.perf_counter() - t0) / 60:.3f}\n")
    minutes = float(minutes_file.read_text())
    ckpt = find_latest_checkpoint(run_dir / "train" / "checkpoints")
    layers = cfg["model"]["encoder_num_layers"]
    abx_json = run_dir / "abx.json"
    _spidrkit(
        [
            "abx",
            str(corpus / "dev" / "abx.item"),
            "--model",
            str(ckpt),
            "--layers",
            ",".join(str(i) for i in range(1, layers + 1)),
            "--manifest",
            str(corpus / "dev" / "manifest.csv"),
            "--speaker",
            "within,across",
            "--json",
            str(abx_json),
            "--no-progress",
        ],
        threads,
        log_path,
    )
    results = json.loads(abx_json.read_text())["results"]
    abx = {str(r["layer"]): round(100 * r["error"], 2) for r in results if _speaker(r) == "within"}
    across = {
        str(r["layer"]): round(100 * r["error"], 2) for r in results if _speaker(r) == "across"
    }
    return {
        "variant": name,
        "corpus": corpus.name,
        "overrides": overrides,
        "seed": seed,
        "steps": cfg["run"]["max_steps"],
        "codebook_size": cfg["model"]["codebook_size"],
        **last_train_metrics(run_dir / "train" / "metrics.jsonl", FINAL_KEYS),
        "abx": abx,
        "best_abx": min(abx.values()),
        "abx_across": across,
        "best_abx_across": min(across.values()) if across else None,
        "train_minutes": round(minutes, 2),
        "threads": threads,
    }


def _speaker(result: dict[str, Any]) -> str:
    return str(result.get("speaker") or result.get("config", {}).get("speaker", "within"))


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per run, then one per variant (median and worst best-layer ABX)."""
    lines = [
        "| corpus | variant | steps | seed | target ppl (of V) | active codewords | loss "
        "| ABX % per layer (within) | best within | best across | train min |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        across = r.get("best_abx_across")
        lines.append(
            f"| {r.get('corpus', 'clean')} | {r['variant']} | {r['steps']} | {r['seed']} | "
            f"{r.get('target_ppl', float('nan')):.1f} "
            f"({r['codebook_size']}) | {r.get('active_codewords', float('nan')):.0f} | "
            f"{r.get('loss', float('nan')):.2f} | {' / '.join(f'{v:.1f}' for v in r['abx'].values())}"
            f" | {r['best_abx']:.1f} | {'' if across is None else f'{across:.1f}'} "
            f"| {r['train_minutes']:.1f} |"
        )
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(
            f"{r.get('corpus', 'clean')}: {r['variant']} ({r['steps']} steps)", []
        ).append(r)
    lines += [
        "",
        "| variant | runs | best-layer ABX within %: median | worst | across: median | worst "
        "| median target ppl |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rs in by.items():
        best = [r["best_abx"] for r in rs]
        acr = [r["best_abx_across"] for r in rs if r.get("best_abx_across") is not None]
        ppl = [r.get("target_ppl", float("nan")) for r in rs]
        med_acr = f"{statistics.median(acr):.1f} | {max(acr):.1f}" if acr else " | "
        lines.append(
            f"| {name} | {len(rs)} | {statistics.median(best):.1f} | {max(best):.1f} | "
            f"{med_acr} | {statistics.median(ppl):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--corpus", type=Path, help="a `spidrkit synth --preset demo` corpus")
    p.add_argument("--out", type=Path, required=True, help="study folder (results.jsonl, runs)")
    p.add_argument("--variant", action="append", default=[], help="name or name:k=v,k=v")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--plan", default="demo", choices=sorted(PLANS), help="demo plan to start from")
    p.add_argument(
        "--steps", type=int, help="training steps (default: the plan's; schedule scaled)"
    )
    p.add_argument("--table", action="store_true", help="print the table of results.jsonl")
    p.add_argument("--lock", help="run each command under `flock LOCK` (a machine shared by jobs)")
    args = p.parse_args(argv)
    global LOCK
    LOCK = args.lock
    results = args.out / "results.jsonl"
    done = []
    if results.exists():
        done = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    if args.table:
        print(table(done))
        return 0
    if args.corpus is None:
        p.error("--corpus is needed to run")
    args.out.mkdir(parents=True, exist_ok=True)
    plan = PLANS[args.plan]
    if args.steps:
        plan = dataclasses.replace(plan, train_steps=args.steps)
    if plan.train_steps is None:  # the recipe's own budget, named in run folders and rows
        recipe = load_train_config(plan.recipe)
        plan = dataclasses.replace(plan, train_steps=recipe.run.max_steps)
    finished = {(r["variant"], r["seed"], r["steps"]) for r in done}
    for spec in args.variant:
        name, overrides = parse_variant(spec)
        for seed in args.seeds:
            if (name, seed, plan.train_steps) in finished:
                continue
            print(f"[study] {name} seed {seed}: {overrides}", flush=True)
            try:
                row = run_one(name, overrides, seed, args.corpus, args.out, args.threads, plan)
            except RuntimeError as e:
                print(f"[study] FAILED: {e}", flush=True)
                continue
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[study] {name} s{seed}: ABX {row['abx']} ppl {row.get('target_ppl', 0):.1f} "
                f"active {row.get('active_codewords', 0):.0f} in {row['train_minutes']:.1f} min",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
