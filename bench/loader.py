"""Benchmark the pretraining data pipeline: audio-seconds per second that one DataLoader worker
delivers (decode, resample, standardise, crop, batch, mask), and the workers one GPU needs.

For each source format (WAV / FLAC, 16 kHz / 44.1 kHz) the script writes a corpus of synthetic
utterances (harmonic tones with noise, 2-15 s, mono PCM-16), a manifest, and then builds the
batches of one epoch exactly as ``spidrkit train`` does (``AudioDataset.load_batch`` over the
``BucketBatchSampler``, the base recipe's crop mode, masking on). The per-worker rate is measured
in the main process with one torch/numpy thread, which is what one DataLoader worker process does
with one core; workers for a target rate = ceil(target / per-worker rate). ``--workers N`` also
times a real multi-process DataLoader (on a machine with at least N free cores).

    python bench/loader.py                                  # 4 formats, 300 s of audio each
    python bench/loader.py --seconds 600 --target 1700 --workers 2

1,700 audio-s/s is the rate of one GPU in the paper's recipe (400k steps of 16 x 237 s in 15 h on
16 GPUs, about 1,750 audio-s/s per GPU).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from spidrkit.audio.io import resampled_length  # noqa: E402
from spidrkit.data.config import DataConfig, MaskingConfig  # noqa: E402
from spidrkit.data.dataset import AudioDataset, make_dataloader  # noqa: E402
from spidrkit.data.manifest import read_manifest  # noqa: E402
from spidrkit.data.sampler import BucketBatchSampler  # noqa: E402

FORMATS = [("WAV", 16000), ("FLAC", 16000), ("WAV", 44100), ("FLAC", 44100)]


def write_corpus(root: Path, fmt: str, sr: int, total_seconds: float, seed: int = 0) -> Path:
    """Synthetic utterances in ``root`` and their manifest (lengths at 16 kHz); returns it."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows, done, i = [], 0.0, 0
    ext = fmt.lower()
    while done < total_seconds:
        seconds = float(rng.uniform(2.0, 15.0))
        n = int(seconds * sr)
        t = np.arange(n) / sr
        f0 = rng.uniform(90, 250)
        wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
        wav = 0.2 * wav + 0.02 * rng.standard_normal(n)
        name = f"u{i:05d}.{ext}"
        sf.write(root / name, wav.astype(np.float32), sr, format=fmt, subtype="PCM_16")
        rows.append(f"u{i:05d},{name},{resampled_length(n, sr, 16000)}")
        done += seconds
        i += 1
    manifest = root / "manifest.csv"
    manifest.write_text("fileid,path,num_samples\n" + "\n".join(rows) + "\n")
    return manifest


def per_worker_rate(
    manifest: Path, cfg: DataConfig, masking: MaskingConfig
) -> tuple[float, float, int]:
    """(delivered audio-s/s, decoded audio-s/s, batches) of one epoch built in this process (= one
    worker). Delivered = the samples of the batches (crop mode keeps each batch's shortest length);
    decoded = the whole files read for them."""
    m = read_manifest(manifest)
    sampler = BucketBatchSampler(
        m.num_samples,
        max_batch_samples=cfg.max_batch_samples,
        min_sample_size=cfg.min_sample_size,
        max_sample_size=cfg.max_sample_size,
        num_buckets=cfg.num_buckets,
        seed=0,
        epoch=0,
    )
    dataset = AudioDataset(m, cfg, masking, seed=0)
    samples, decoded, t0 = 0, 0, time.perf_counter()
    batches = 0
    for key in sampler:
        batch = dataset.load_batch(key)
        samples += batch.waveforms.numel()
        decoded += int(sum(m.num_samples[i] for i in key.indices))
        batches += 1
    seconds = time.perf_counter() - t0
    return samples / 16000 / seconds, decoded / 16000 / seconds, batches


def loader_rate(manifest: Path, cfg: DataConfig, masking: MaskingConfig) -> float:
    """audio-s/s of a real DataLoader with ``cfg.num_workers`` workers (start-up included)."""
    loader = make_dataloader(str(manifest), cfg, masking, seed=0)
    samples, t0 = 0, time.perf_counter()
    for batch in loader:
        samples += batch.waveforms.numel()
    return samples / 16000 / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=300.0, help="audio per format corpus")
    p.add_argument("--repeats", type=int, default=3, help="epochs timed per format (median)")
    p.add_argument("--target", type=float, default=1700.0, help="audio-s/s one GPU needs")
    p.add_argument("--workers", type=int, default=0, help="also time a DataLoader with N workers")
    p.add_argument("--max-batch-samples", type=int, default=3_800_000)
    p.add_argument("--buckets", type=int, default=50, help="length buckets (crop mode)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the corpora here")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = DataConfig(
        max_batch_samples=args.max_batch_samples,
        min_sample_size=2000,
        max_sample_size=320_000,
        num_buckets=args.buckets,
        batch_mode="crop",
        num_workers=args.workers,
    )
    masking = MaskingConfig()
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, soundfile {sf.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; 1 thread per worker"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="spidrkit-loader-") as tmp:
        root = args.workdir or Path(tmp)
        for fmt, sr in FORMATS:
            manifest = write_corpus(root / f"{fmt.lower()}{sr}", fmt, sr, args.seconds)
            per_worker_rate(manifest, cfg, masking)  # warm the page cache
            runs = [per_worker_rate(manifest, cfg, masking) for _ in range(args.repeats)]
            rate = statistics.median(r for r, _, _ in runs)
            decoded = statistics.median(d for _, d, _ in runs)
            multi = loader_rate(manifest, cfg, masking) if args.workers else None
            rows.append((fmt, sr, rate, decoded, runs[0][2], multi))
            print(f"  {fmt} {sr} Hz: {rate:.0f} audio-s/s per worker", file=sys.stderr)
    print(
        f"\n{args.seconds:g} s of audio per corpus (2-15 s utterances), crop batches of at most "
        f"{args.max_batch_samples} samples, masking on; median of {args.repeats} epochs"
    )
    head = (
        "| source | audio-s/s per worker | batches | workers for " + f"{args.target:g} audio-s/s |"
    )
    head += " decoded audio-s/s |"
    if args.workers:
        head += f" DataLoader, {args.workers} workers (audio-s/s) |"
    print(head)
    print("|---|---|---|---|---|" + ("---|" if args.workers else ""))
    for fmt, sr, rate, decoded, batches, multi in rows:
        line = f"| {fmt} {sr / 1000:g} kHz | {rate:.0f} | {batches} | {math.ceil(args.target / rate)} |"
        line += f" {decoded:.0f} |"
        if multi is not None:
            line += f" {multi:.0f} |"
        print(line)


if __name__ == "__main__":
    main()
