"""ABX speed, side by side with fastabx: both read the same item file and feature files.

Tasks (``--task``):

- ``logmel`` (default): the synthetic corpus ``spidrkit synth --preset tiny --hours 0.13`` (6 train
  speakers, about 4,150 triphone items; needs the ``synth`` extra), 40-d log-mel at 10 ms.
- ``gaussian``: a ZeroSpeech-sized task without audio: ``--items`` (25,000) triphone items from 10
  speakers reading words of a Zipfian lexicon over 40 phones; 768-d features = phone mean + speaker
  offset + noise, 3-8 frames of 20 ms per phone.
- ``--item FILE --features DIR --step S``: your own item file and ``<fileid>.pt`` folder.

Every mode runs ``--repeats`` times; spidrkit (in this process) and fastabx (a worker process in
its own Python, given by ``--fastabx-python``) alternate, and which goes first flips every repeat,
so both see the same machine load. Times are the ABX call alone (reading features included,
imports excluded, after one untimed warm-up call on each side). The ratio is fastabx / spidrkit
per repeat (> 1: spidrkit is faster); the table shows medians and the min-max spread.

``--whole-process`` times what a user waits for instead: each repeat starts a fresh
``spidrkit abx ITEM FEATURES ...`` process (the ``spidrkit`` script next to this Python) and a
fresh ``python -m fastabx ITEM FEATURES ...`` process (fastabx's CLI, in ``--fastabx-python``),
alternating as above: interpreter start-up, imports, reading the item and feature files, the ABX
and the output, wall clock. Both get ``OMP_NUM_THREADS=--threads`` (spidrkit also ``--threads``);
one untimed run of each first warms the page cache. A last row times ``python -c "import torch"``
in both interpreters the same way: the floor under both.

    python bench/abx.py --fastabx-python ../fastabx-venv/bin/python --threads 1
    python bench/abx.py --task gaussian --subsample on --fastabx-python ...
    python bench/abx.py --repeats 1 --modes within/any          # spidrkit alone
    python bench/abx.py --whole-process --item dev/abx.item --features feats/mfcc --step 0.01 \
        --subsample on --repeats 5 --threads 1 --fastabx-python ../fastabx-venv/bin/python
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spidrkit.eval.abx import ABXConfig, compute_abx

MODES = ("within/within", "across/within", "within/any", "across/any")
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------- tasks
def gaussian_items(n_items: int, speakers: int, phones: int, dim: int, seed: int = 0):
    """The synthetic ``gaussian`` task in memory: item rows and ``{fileid: [T, dim]}`` features."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    lexicon = [rng.integers(0, phones, size=rng.integers(3, 7)) for _ in range(150)]
    zipf = 1.0 / np.arange(1, len(lexicon) + 1)
    zipf /= zipf.sum()
    means = 0.1 * torch.randn(phones, dim, generator=gen)
    rows, feats = [], {}
    per_spk = n_items // speakers
    for s in range(speakers):
        offset = 0.1 * torch.randn(dim, generator=gen)
        count, u = 0, 0
        while count < per_spk:
            words = rng.choice(len(lexicon), size=12, p=zipf)
            seq = np.concatenate([lexicon[w] for w in words])
            durs = rng.integers(3, 9, size=len(seq))
            frames = torch.cat(
                [means[p].expand(int(d), dim) for p, d in zip(seq, durs, strict=True)]
            )
            fid = f"s{s}_u{u}"
            feats[fid] = (frames + offset + torch.randn(frames.shape, generator=gen)).contiguous()
            t = np.concatenate([[0], np.cumsum(durs)]) * 0.02
            for k in range(1, len(seq) - 1):
                rows.append(
                    (fid, round(float(t[k]), 4), round(float(t[k + 1]), 4), f"p{seq[k]}",
                     f"p{seq[k - 1]}", f"p{seq[k + 1]}", f"s{s}")
                )  # fmt: skip
                count += 1
            u += 1
    return rows, feats


def gaussian_task(out: Path, n_items: int, speakers: int, phones: int, dim: int, seed: int = 0):
    """Write the ``gaussian`` task (item file + one ``.pt`` per utterance) to ``out``, once."""
    item_path, feat_dir = out / "abx.item", out / "features"
    if not item_path.is_file():
        feat_dir.mkdir(parents=True, exist_ok=True)
        rows, feats = gaussian_items(n_items, speakers, phones, dim, seed)
        for fid, x in feats.items():
            torch.save(x, feat_dir / f"{fid}.pt")
        lines = ["#file onset offset #phone prev-phone next-phone speaker"]
        lines += [" ".join(f"{v:.4f}" if isinstance(v, float) else v for v in r) for r in rows]
        tmp = item_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(item_path)
    return item_path, feat_dir, 0.02


def logmel_task(out: Path, split: str = "train", hours: float = 0.13, n_mels: int = 40):
    """Synthesise the corpus and write 40-d log-mel features (10 ms) of its train and dev splits."""
    import soundfile as sf

    from spidrkit.synth.corpus import make_corpus
    from spidrkit.units.baselines import SpectralFeatures

    corpus, feat_dir = out / "corpus", out / f"logmel{n_mels}"
    done = feat_dir / ".done"
    if not done.is_file():
        if not (corpus / "corpus.json").is_file():
            make_corpus(
                corpus, preset="tiny", hours=hours, seed=0, overwrite=True, show_progress=False
            )
        feat_dir.mkdir(parents=True, exist_ok=True)
        fe = SpectralFeatures(kind="logmel", hop_ms=10, n_mels=n_mels)
        for name in ("train", "dev"):
            with (corpus / name / "manifest.csv").open() as f:
                for row in csv.DictReader(f):
                    wav, _ = sf.read(corpus / name / row["path"], dtype="float32")
                    feats = fe.single(torch.from_numpy(wav)).contiguous()
                    torch.save(feats, feat_dir / f"{row['fileid']}.pt")
        done.touch()
    return corpus / split / "abx.item", feat_dir, 0.01


# ------------------------------------------------------------------------------- runners
class FastABX:
    """fastabx in its own Python (``bench/fastabx_worker.py``), one request per line."""

    def __init__(self, python: str, threads: int) -> None:
        env = dict(os.environ)
        if threads > 0:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(
            [python, str(HERE / "fastabx_worker.py"), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",  # so that the worker cannot import this checkout's spidrkit or bench
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"fastabx worker exited with code {self.proc.wait()}")
        return json.loads(line)

    def run(self, item: Path, features: Path, cfg: ABXConfig) -> tuple[float, float]:
        req = {
            "item": str(item),
            "features": str(features),
            "speaker": cfg.speaker,
            "context": cfg.context,
            "distance": cfg.distance,
            "frequency": round(1 / cfg.step),
            "max_size_group": cfg.max_size_group,
            "max_x_across": cfg.max_x_across,
            "seed": cfg.seed,
        }
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        return r["seconds"], r["error"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


class WholeProcess:
    """Each call a fresh process: ``spidrkit abx`` (ours) or ``python -m fastabx`` (theirs)."""

    def __init__(self, threads: int, fastabx_python: str | None) -> None:
        self.threads, self.fastabx_python = threads, fastabx_python
        self.env = dict(os.environ)
        if threads > 0:
            self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        script = Path(sys.executable).with_name("spidrkit")
        self.spidrkit = (
            [str(script)] if script.is_file() else [sys.executable, "-m", "spidrkit.cli.main"]
        )

    def _time(self, cmd: list[str], what: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd="/")
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{what} failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
        return seconds, out.stdout

    def ours(self, item: Path, features: Path, cfg: ABXConfig) -> tuple[float, float]:
        cmd = [*self.spidrkit, "abx", str(item), str(features), "--speaker", cfg.speaker]
        cmd += ["--context", cfg.context, "--distance", cfg.distance, "--step", str(cfg.step)]
        cmd += ["--max-size-group", str(cfg.max_size_group or 0), "--seed", str(cfg.seed)]
        cmd += ["--max-x-across", str(cfg.max_x_across or 0), "--no-progress", "--json", "-"]
        if self.threads > 0:
            cmd += ["--threads", str(self.threads)]
        seconds, out = self._time(cmd, "spidrkit abx")
        return seconds, json.loads(out)["results"][0]["error"]

    def theirs(self, item: Path, features: Path, cfg: ABXConfig) -> tuple[float, float]:
        assert self.fastabx_python
        cmd = [self.fastabx_python, "-m", "fastabx", str(item), str(features)]
        cmd += ["--speaker", cfg.speaker, "--context", cfg.context, "--distance", cfg.distance]
        cmd += ["--frequency", str(round(1 / cfg.step)), "--seed", str(cfg.seed)]
        cmd += ["--max-size-group", str(cfg.max_size_group or -1), "--device", "cpu"]
        cmd += ["--max-x-across", str(cfg.max_x_across or -1), "--output", "json", "--quiet"]
        seconds, out = self._time(cmd, "fastabx")
        return seconds, float(json.loads(out.strip().splitlines()[-1])["score"])

    def import_torch(self, python: str) -> tuple[float, float]:
        return self._time([python, "-c", "import torch"], "import torch")[0], float("nan")


def fastabx_info(python: str, env: dict[str, str]) -> dict:
    """fastabx's and torch's versions and torch's thread count in ``python``, under ``env``."""
    code = (
        "import json, sys, torch; from importlib.metadata import version; print(json.dumps("
        "{'fastabx': version('fastabx'), 'torch': torch.__version__, "
        "'threads': torch.get_num_threads(), 'python': sys.version.split()[0]}))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    if out.returncode != 0:
        raise SystemExit(f"{python} cannot import fastabx and torch:\n{out.stderr}")
    return json.loads(out.stdout)


def run_spidrkit(item: Path, features: Path, cfg: ABXConfig) -> tuple[float, float]:
    t0 = time.perf_counter()
    res = compute_abx(item, features, cfg, show_progress=False)
    return time.perf_counter() - t0, res.error


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--task", choices=("logmel", "gaussian"), default="logmel")
    ap.add_argument("--item", type=Path, help="your own item file (with --features, --step)")
    ap.add_argument("--features", type=Path)
    ap.add_argument("--step", type=float, default=0.02)
    ap.add_argument(
        "--split", choices=("train", "dev"), default="train", help="logmel task: which split"
    )
    ap.add_argument("--items", type=int, default=25000, help="gaussian task: number of items")
    ap.add_argument("--dim", type=int, default=768, help="gaussian task: feature dimension")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/spidrkit-bench-abx"))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--subsample",
        choices=("both", "on", "off"),
        default="both",
        help="ZeroSpeech subsampling (10 per group, 5 X speakers), none, or both",
    )
    ap.add_argument("--distance", default="angular")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both sides (0: default)")
    ap.add_argument("--fastabx-python", help="Python of a venv with fastabx (run as a black box)")
    ap.add_argument(
        "--whole-process",
        action="store_true",
        help="time fresh `spidrkit abx` / `python -m fastabx` processes (start-up, imports, reading)",
    )
    ap.add_argument("--json", type=Path, help="write every timing here")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    if args.item:
        if not args.features:
            ap.error("--item needs --features")
        item, feats, step, name = args.item, args.features, args.step, str(args.item)
    elif args.task == "gaussian":
        out = args.workdir / f"gaussian-{args.items}-{args.dim}"
        item, feats, step = gaussian_task(out, args.items, 10, 40, args.dim)
        name = f"gaussian ({args.items} items, 10 speakers, {args.dim}-d, 20 ms)"
    else:
        item, feats, step = logmel_task(args.workdir / "logmel2", args.split)
        speakers = 6 if args.split == "train" else 2
        name = (
            f"logmel (synth --preset tiny --hours 0.13, {args.split} split: {speakers} speakers, "
            "40-d log-mel, 10 ms)"
        )
    n_items = sum(1 for _ in item.open()) - 1
    item, feats = item.resolve(), feats.resolve()  # the whole-process runs start in /
    whole = WholeProcess(args.threads, args.fastabx_python) if args.whole_process else None
    fast = FastABX(args.fastabx_python, args.threads) if args.fastabx_python and not whole else None
    info = fast.info if fast else None
    if whole and args.fastabx_python:
        info = fastabx_info(args.fastabx_python, whole.env)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    ours_threads = args.threads if whole and args.threads > 0 else torch.get_num_threads()
    print(
        f"# task: {name}, {n_items} items (ready in {time.perf_counter() - t0:.1f} s)\n"
        f"# {platform.machine()} {os.cpu_count()} CPUs, load average {load:.1f}; "
        + ("whole processes; " if whole else "")
        + f"spidrkit: Python {platform.python_version()}, torch {torch.__version__}, "
        f"{ours_threads} threads"
        + (
            f"; fastabx {info['fastabx']}: Python {info['python']}, torch "
            f"{info['torch']}, {info['threads']} threads"
            if info
            else ""
        ),
        flush=True,
    )
    subs = {"both": (True, False), "on": (True,), "off": (False,)}[args.subsample]
    configs = []
    for mode in args.modes.split(","):
        speaker, context = mode.split("/")
        for sub in subs:
            configs.append(
                ABXConfig(
                    speaker=speaker,
                    context=context,
                    distance=args.distance,
                    step=step,
                    max_size_group=10 if sub else None,
                    max_x_across=5 if sub else None,
                )
            )
    if whole:
        ours_fn = whole.ours
        theirs_fn = whole.theirs if args.fastabx_python else None
    else:
        ours_fn, theirs_fn = run_spidrkit, fast.run if fast else None
    # one untimed call each: first-call costs (lazy imports, allocator, page cache) are not the ABX's
    warm = ABXConfig(step=step, max_size_group=2, distance=args.distance)
    ours_fn(item, feats, warm)
    if theirs_fn:
        theirs_fn(item, feats, warm)

    head = "| mode | subsampling | spidrkit s | ABX % |"
    if theirs_fn:
        head += " fastabx s | ABX % | fastabx / spidrkit |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1), flush=True)
    records = []
    rows: list[tuple[str, str, Callable, Callable | None]] = [
        (f"{c.speaker}/{c.context}", "ZeroSpeech" if c.max_size_group else "none",
         partial(ours_fn, item, feats, c), theirs_fn and partial(theirs_fn, item, feats, c))
        for c in configs
    ]  # fmt: skip
    if whole:
        theirs_torch = partial(whole.import_torch, args.fastabx_python) if theirs_fn else None
        rows.append(
            ("`import torch`", "", partial(whole.import_torch, sys.executable), theirs_torch)
        )
    for mode, sub, ours_call, theirs_call in rows:
        ours, theirs = [], []
        for rep in range(args.repeats):
            first_ours = rep % 2 == 0 or not theirs_call
            if first_ours:
                ours.append(ours_call())
            if theirs_call:
                theirs.append(theirs_call())
            if not first_ours:
                ours.append(ours_call())
        row = f"| {mode} | {sub} | {spread([t for t, _ in ours], '.2f')} | {100 * ours[0][1]:.3f} |"
        rec = {"mode": mode, "subsampling": sub, "spidrkit": ours}
        if theirs_call:
            ratios = [f[0] / o[0] for f, o in zip(theirs, ours, strict=True)]
            row += (
                f" {spread([t for t, _ in theirs], '.2f')} | {100 * theirs[0][1]:.3f} "
                f"| {spread(ratios, '.2f')}x |"
            )
            rec.update(fastabx=theirs, ratios=ratios)
        print(row.replace("| nan |", "| |"), flush=True)
        records.append(rec)
    if fast:
        fast.close()
    if args.json:
        args.json.write_text(
            json.dumps({"task": name, "items": n_items, "runs": records}, indent=1)
        )


if __name__ == "__main__":
    sys.exit(main())
