"""Adaptation study: what continued pretraining on a little target-domain audio buys.

A source model (trained on one synthetic domain) is measured on a target domain's dev ABX (within
and across speakers, every layer) as it is ("unadapted"), after ``spidrkit train adapt`` on M
minutes of the target's training audio ("adapt"), and against a model trained from scratch with the
small recipe on the same M minutes for the same steps and batch size ("scratch": the same compute).
One JSON row per run is appended to ``<out>/results.jsonl``; finished runs are skipped when the
study is run again. ``--table`` prints the Markdown tables of docs/training.md.

    spidrkit synth --preset demo --out data/clean --seed 0
    spidrkit train small --set data.train_manifests=data/clean/train/manifest.csv
    spidrkit synth --preset demo --out data/target --seed 1      # another domain
    python bench/adapt_study.py --source runs/small/checkpoints/checkpoint_00001200.pt \\
        --target data/target --out runs/adapt_study --minutes 10 60 --seeds 0 1 2 --threads 2
    python bench/adapt_study.py --out runs/adapt_study --table

Runs one at a time (``--lock FILE``: each run, its training and its ABX, holds an exclusive lock on
FILE, for machines shared with other jobs); the training minutes count from when the lock is held.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SPIDRKIT = [sys.executable, "-m", "spidrkit.cli.main"]


@contextlib.contextmanager
def held(lock: str | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(cmd: list[str], log: Path) -> float:
    """Run a spidrkit command; returns its minutes; output appended to ``log``."""
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - start) / 60
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return minutes


def subset_manifest(manifest: Path, minutes: float, out: Path) -> Path:
    """The first utterances of a seeded shuffle of ``manifest`` that make ``minutes`` of audio
    (absolute paths), written to ``out``; the 10-min subset is a prefix of the 1-h one."""
    lines = manifest.read_text().splitlines()
    header, rows = lines[0], [r.split(",") for r in lines[1:] if r.strip()]
    cols = header.split(",")
    i_path, i_len = cols.index("path"), cols.index("num_samples")
    order = np.random.default_rng(0).permutation(len(rows))
    keep, total = [], 0
    for j in order:
        if total >= minutes * 60 * 16000:
            break
        row = list(rows[j])
        row[i_path] = str((manifest.parent / row[i_path]).resolve())
        keep.append(",".join(row))
        total += int(row[i_len])
    if total < minutes * 60 * 16000:
        raise SystemExit(f"{manifest}: {total / 16000 / 60:.1f} min of audio, {minutes} asked")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([header, *keep]) + "\n")
    return out


def scratch_sets(steps: int) -> list[str]:
    """The small recipe compressed to ``steps`` (MFCC targets for 2/3, tri-stage 1/12, 1/2, rest)."""
    warm, hold = max(1, steps // 12), steps // 2
    return [
        f"run.max_steps={steps}",
        f"model.warmup_target_steps={round(2 * steps / 3)}",
        f"optimizer.warmup_steps={warm}",
        f"optimizer.hold_steps={hold}",
        f"optimizer.decay_steps={steps - warm - hold}",
        f"model.freeze_step={10 * steps}",
    ]


def abx(ckpt: Path, target: Path, layers: str, out: Path, args: argparse.Namespace) -> dict:
    """Dev ABX (within and across speakers) of every layer -> {"within": {layer: %}, "across"}."""
    from spidrkit.eval.abx import read_results_json

    cmd = [
        *SPIDRKIT,
        "abx",
        str(target / "dev" / "abx.item"),
        "--model",
        str(ckpt),
        "--layers",
        layers,
        "--manifest",
        str(target / "dev" / "manifest.csv"),
        "--speaker",
        "within,across",
        "--json",
        str(out),
        "--no-progress",
        "--threads",
        str(args.threads),
    ]
    run(cmd, args.out / "log.txt")
    res: dict[str, dict[int, float]] = {"within": {}, "across": {}}
    for r in read_results_json(out):
        res[r.config.speaker][int(r.layer or 0)] = 100 * r.error
    return res


def train(sets: list[str], recipe: str, init: Path | None, out: Path, args: argparse.Namespace):
    cmd = [*SPIDRKIT, "train", recipe, "--no-progress", "--threads", str(args.threads)]
    if init is not None:
        cmd += ["--init", str(init)]
    for s in [*sets, f"run.output_dir={json.dumps(str(out))}", "run.tensorboard=false"]:
        cmd += ["--set", s]
    minutes = run(cmd, args.out / "log.txt")
    from spidrkit.train.checkpoint import find_latest_checkpoint

    ckpt = find_latest_checkpoint(out / "checkpoints")
    assert ckpt is not None
    return ckpt, minutes


def study(args: argparse.Namespace) -> None:
    from spidrkit.models.checkpoint import read_checkpoint

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = set()
    if results.is_file():
        done = {r["name"] for r in map(json.loads, results.read_text().splitlines())}
    cfg = read_checkpoint(args.source).config
    layers = ",".join(str(i) for i in range(1, cfg.encoder_num_layers + 1))

    def record(row: dict[str, Any]) -> None:
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    if "unadapted" not in done:
        with held(args.lock):
            res = abx(args.source, args.target, layers, out / "abx_unadapted.json", args)
        record({"name": "unadapted", "condition": "unadapted", "minutes": 0, "seed": None, **res})
    for minutes in args.minutes:
        manifest = subset_manifest(
            args.target / "train" / "manifest.csv", minutes, out / f"train_{minutes:g}min.csv"
        )
        data = [f"data.train_manifests={json.dumps(str(manifest))}"]
        for seed in args.seeds:
            for kind in args.conditions:
                condition = args.adapt_name if kind == "adapt" else kind
                name = f"{condition}_{minutes:g}min_s{seed}"
                if name in done:
                    continue
                sets = [*data, f"run.seed={seed}"]
                with held(args.lock):  # one run = its training and its ABX
                    if kind == "adapt":
                        sets += [f"run.max_steps={args.steps}", *args.adapt_set]
                        ckpt, train_min = train(sets, args.recipe, args.source, out / name, args)
                    else:
                        sets += scratch_sets(args.steps)
                        ckpt, train_min = train(sets, "small", None, out / name, args)
                    res = abx(ckpt, args.target, layers, out / f"abx_{name}.json", args)
                record(
                    {
                        "name": name,
                        "condition": condition,
                        "minutes": minutes,
                        "seed": seed,
                        "steps": args.steps,
                        "train_min": round(train_min, 2),
                        **res,
                    }
                )


def _best(res: dict[str, float]) -> tuple[float, str]:
    layer = min(res, key=res.__getitem__)
    return res[layer], layer


def table(out: Path) -> str:
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    lines = [
        "| model | target audio | seed | ABX within % per layer | best within | ABX across % per "
        "layer | best across | train min |",
        "|---|---:|---:|---|---:|---|---:|---:|",
    ]
    for r in rows:
        w, a = r["within"], r["across"]
        bw, lw = _best(w)
        ba, la = _best(a)
        lines.append(
            f"| {r['condition']} | {r['minutes']:g} min | {'-' if r['seed'] is None else r['seed']}"
            f" | {' / '.join(f'{w[k]:.1f}' for k in sorted(w, key=int))} | {bw:.1f} (L{lw})"
            f" | {' / '.join(f'{a[k]:.1f}' for k in sorted(a, key=int))} | {ba:.1f} (L{la})"
            f" | {r.get('train_min', '-')} |"
        )
    lines += [
        "",
        "| model | target audio | runs | best within %: median (min-max) | best across %: median "
        "(min-max) |",
        "|---|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["condition"], r["minutes"]), []).append(r)
    for (condition, minutes), rs in groups.items():
        cells = []
        for mode in ("within", "across"):
            vals = [_best(r[mode])[0] for r in rs]
            cells.append(f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})")
        lines.append(f"| {condition} | {minutes:g} min | {len(rs)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", type=Path, help="the model to adapt (a checkpoint)")
    p.add_argument("--target", type=Path, help="target-domain corpus (spidrkit synth layout)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=["adapt", "scratch"])
    p.add_argument("--steps", type=int, default=300, help="training steps of every run [300]")
    p.add_argument(
        "--adapt-set", action="append", default=[], help="extra --set for the adapt runs"
    )
    p.add_argument(
        "--recipe",
        default="adapt",
        help="the shipped recipe of the adapt runs (adapt, adapt_mfcc) [adapt]",
    )
    p.add_argument(
        "--adapt-name",
        default="adapt",
        help="label of the adapt runs (to compare variants given by --adapt-set) [adapt]",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lock", default=None, help="hold an exclusive lock on this file per command")
    p.add_argument("--table", action="store_true", help="print the tables of <out>/results.jsonl")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.out))
        return 0
    if args.source is None or args.target is None:
        p.error("--source and --target are needed to run the study")
    study(args)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
