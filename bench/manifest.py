"""Benchmark: load a 1M-utterance manifest, build its batches, pickle it into a worker.

usage: .venv/bin/python bench/manifest.py [--rows 1000000] [--keep DIR]

Columns: seconds (imports excluded), held / peak MiB = memory allocated by the step and still
held / at its peak (tracemalloc, which numpy reports to), RSS +MiB = growth of the process's resident
memory (includes what the allocator keeps after freeing).

Writes a synthetic LibriSpeech-like manifest (fileid,path,num_samples), then, each step in a fresh
subprocess (imports excluded): read_manifest, the same file through
csv.DictReader into a list of dicts (the naive baseline), BucketBatchSampler construction + one
epoch's batches (1000 buckets, 3.8M samples per batch, the official recipe), and pickling the
Manifest (what each DataLoader worker receives under the spawn start method). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# each step: SETUP (imports, not timed), then BODY (timed); n, extra and keep are reported
STEPS = {
    "read_manifest": (
        "from spidrkit.data import read_manifest",
        "keep = read_manifest(PATH); n = len(keep)\n"
        "extra = f'{(keep.fileids.nbytes + keep.paths.nbytes + keep.num_samples.nbytes) / 2**20:.0f}"
        " MiB of columns'",
    ),
    "csv.DictReader (baseline)": (
        "import csv",
        "with open(PATH, newline='') as f:\n"
        "    keep = [dict(r, num_samples=int(r['num_samples'])) for r in csv.DictReader(f)]\n"
        "n = len(keep); extra = 'list of dicts'",
    ),
    "sampler: 1 epoch of batches": (
        "from spidrkit.data import read_manifest, BucketBatchSampler\nm = read_manifest(PATH)",
        "keep = BucketBatchSampler(m.num_samples, max_batch_samples=3_800_000,"
        " min_sample_size=2000, max_sample_size=320_000, num_buckets=1000, seed=0, rank=0,"
        " world_size=16)\n"
        "n = sum(1 for _ in keep); extra = f'{n} batches per rank, 16 ranks'",
    ),
    "pickle Manifest (spawn worker)": (
        "import pickle\nfrom spidrkit.data import read_manifest\nm = read_manifest(PATH)",
        "blob = pickle.dumps(m); keep = pickle.loads(blob)\n"
        "n = len(keep); extra = f'{len(blob) / 2**20:.0f} MiB pickle'",
    ),
}

RUNNER = """
import gc, json, sys, time
PATH = sys.argv[1]
def mem(key):
    line = [l for l in open("/proc/self/status") if l.startswith(key)][0]
    return int(line.split()[1]) / 1024
{setup}
gc.collect()
TRACE = sys.argv[2] == "trace"
if TRACE:
    import tracemalloc
    tracemalloc.start()
before = mem("VmRSS")
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
gc.collect()
out = {{"n": n, "seconds": elapsed, "extra": extra, "rss": mem("VmRSS") - before}}
if TRACE:
    out["traced"], out["traced_peak"] = (x / 2**20 for x in tracemalloc.get_traced_memory())
print(json.dumps(out))
"""


def write_synthetic(path: Path, rows: int) -> float:
    """A LibriSpeech-shaped manifest; returns the seconds write_manifest took."""
    import numpy as np

    from spidrkit.data import Manifest, StringColumn, write_manifest

    rng = np.random.default_rng(0)
    spk = rng.integers(19, 9000, size=rows)
    chap = rng.integers(1000, 200000, size=rows)
    ids = [f"train-960/{s}/{c}/{s}-{c}-{i % 10000:04d}" for i, (s, c) in enumerate(zip(spk, chap))]
    m = Manifest(
        fileids=StringColumn.from_strings(ids),
        num_samples=rng.integers(16_000, 560_000, size=rows),
        root=path.parent,
        paths=StringColumn.from_strings(f + ".flac" for f in ids),
    )
    t0 = time.perf_counter()
    write_manifest(m, path)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="folder for the manifest (default: a temp dir)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="spidrkit-bench-"))
    path = folder / "train.csv"
    write_s = write_synthetic(path, args.rows)
    size = path.stat().st_size / 2**20
    print(f"{args.rows} rows, {size:.0f} MiB CSV, write_manifest {write_s:.2f} s")
    print(
        f"{'step':<32} {'rows':>9} {'seconds':>8} {'held MiB':>9} {'peak MiB':>9} {'RSS +MiB':>9}"
        "  notes"
    )
    for name, (setup, body) in STEPS.items():
        runs = {}
        for mode in ("time", "trace"):  # tracemalloc slows Python code: time without it
            out = subprocess.run(
                [sys.executable, "-c", RUNNER.format(setup=setup, body=body), str(path), mode],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r, t = runs["time"], runs["trace"]
        print(
            f"{name:<32} {r['n']:>9} {r['seconds']:>8.2f} {t['traced']:>9.0f}"
            f" {t['traced_peak']:>9.0f} {r['rss']:>9.0f}  {r['extra']}"
        )


if __name__ == "__main__":
    main()
