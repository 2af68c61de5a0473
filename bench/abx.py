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

    python bench/abx.py --fastabx-python /work/fastabx-venv/bin/python --threads 1
    python bench/abx.py --task gaussian --subsample on --fastabx-python ...
    python bench/abx.py --repeats 1 --modes within/any          # spidrkit alone
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
    fast = FastABX(args.fastabx_python, args.threads) if args.fastabx_python else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# task: {name}, {n_items} items (ready in {time.perf_counter() - t0:.1f} s)\n"
        f"# {platform.machine()} {os.cpu_count()} CPUs, load average {load:.1f}; spidrkit: "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
        + (
            f"; fastabx {fast.info['fastabx']}: Python {fast.info['python']}, torch "
            f"{fast.info['torch']}, {fast.info['threads']} threads"
            if fast
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
    # one untimed call each: first-call costs (lazy imports, allocator) are not the ABX's
    warm = ABXConfig(step=step, max_size_group=2, distance=args.distance)
    run_spidrkit(item, feats, warm)
    if fast:
        fast.run(item, feats, warm)

    head = "| mode | subsampling | spidrkit s | ABX % |"
    if fast:
        head += " fastabx s | ABX % | fastabx / spidrkit |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1), flush=True)
    records = []
    for cfg in configs:
        ours, theirs = [], []
        for rep in range(args.repeats):
            first_ours = rep % 2 == 0 or not fast
            if first_ours:
                ours.append(run_spidrkit(item, feats, cfg))
            if fast:
                theirs.append(fast.run(item, feats, cfg))
            if not first_ours:
                ours.append(run_spidrkit(item, feats, cfg))
        sub = "ZeroSpeech" if cfg.max_size_group else "none"
        row = (
            f"| {cfg.speaker}/{cfg.context} | {sub} | {spread([t for t, _ in ours], '.2f')} "
            f"| {100 * ours[0][1]:.3f} |"
        )
        rec = {"mode": f"{cfg.speaker}/{cfg.context}", "subsampling": sub, "spidrkit": ours}
        if fast:
            ratios = [f[0] / o[0] for f, o in zip(theirs, ours, strict=True)]
            row += (
                f" {spread([t for t, _ in theirs], '.2f')} | {100 * theirs[0][1]:.3f} "
                f"| {spread(ratios, '.2f')}x |"
            )
            rec.update(fastabx=theirs, ratios=ratios)
        print(row, flush=True)
        records.append(rec)
    if fast:
        fast.close()
    if args.json:
        args.json.write_text(
            json.dumps({"task": name, "items": n_items, "runs": records}, indent=1)
        )


if __name__ == "__main__":
    sys.exit(main())
