"""Benchmark one pretraining step: median step time, audio-seconds per second, peak memory.

A step is what ``spidrkit train`` does per batch: forward (codebook update included), backward,
gradient clipping, AdamW, EMA teacher update. The batch matches the official reference measurement:
4 utterances of 4 s (64,000 samples, 199 frames) with 110 frames masked per row, fp32.

    python bench/train_step.py                        # tiny + base, eager, CPU (and CUDA if present)
    python bench/train_step.py --configs base --modes eager,compiled --steps 5 --threads 2
    python bench/train_step.py --profile              # top ops of one base step (torch.profiler)
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from spidrkit.train.config import load_train_config  # noqa: E402
from spidrkit.train.distributed import DistInfo  # noqa: E402
from spidrkit.train.trainer import Trainer  # noqa: E402

CONFIGS = {"tiny": REPO / "configs" / "tiny.toml", "base": REPO / "configs" / "base.toml"}


def make_batch(
    batch: int, samples: int, masked: int, frames: int, seed: int = 0
) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(batch, samples, generator=g)
    mask = torch.stack(
        [torch.randperm(frames, generator=g)[:masked].sort().values for _ in range(batch)]
    )
    return SimpleNamespace(waveforms=wav, mask_indices=mask, attention_mask=None, lengths=None)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def bench(
    name: str,
    mode: str,
    device: str,
    precision: str,
    steps: int,
    warmup: int,
    batch: int,
    seconds: float,
    masked: int,
) -> dict:
    cfg = load_train_config(
        CONFIGS[name],
        [
            f'run.device="{device}"',
            f'run.precision="{precision}"',
            f"run.compile={'true' if mode == 'compiled' else 'false'}",
            f'run.output_dir="/tmp/spidrkit-bench-{name}"',
        ],
    )
    dev = torch.device(device)
    trainer = Trainer(cfg, DistInfo(device=dev))
    samples = int(seconds * 16000)
    frames = int(trainer.model.num_frames(samples))
    b = make_batch(batch, samples, min(masked, frames), frames)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu = [], []
    for i in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        r = trainer.train_step(b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        assert not r.skipped
    med = statistics.median(times)
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else peak_rss_gb()
    return {
        "config": name,
        "mode": mode,
        "device": device,
        "precision": precision,
        "frames": frames,
        "median_s": med,
        "cpu_s": statistics.median(cpu),
        "audio_s_per_s": batch * seconds / med,
        "peak_gb": mem,
        "mem_kind": "cuda alloc" if dev.type == "cuda" else "process RSS",
    }


def profile_base(device: str, threads: int) -> None:
    cfg = load_train_config(
        CONFIGS["base"],
        [
            f'run.device="{device}"',
            'run.precision="fp32"',
            'run.output_dir="/tmp/spidrkit-bench-prof"',
        ],
    )
    trainer = Trainer(cfg, DistInfo(device=torch.device(device)))
    b = make_batch(4, 64000, 110, 199)
    trainer.train_step(b)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step(b)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", default="tiny,base")
    p.add_argument("--modes", default="eager", help="eager,compiled")
    p.add_argument("--devices", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--masked", type=int, default=110)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = (
        args.devices.split(",")
        if args.devices
        else (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    )
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    if args.profile:
        profile_base(devices[0], torch.get_num_threads())
        return
    rows = []
    for device in devices:
        for name in args.configs.split(","):
            for mode in args.modes.split(","):
                rows.append(
                    bench(
                        name,
                        mode,
                        device,
                        args.precision,
                        args.steps,
                        args.warmup,
                        args.batch,
                        args.seconds,
                        args.masked,
                    )
                )
                r = rows[-1]
                print(
                    f"  done {name} {mode} {device}: {r['median_s']:.3f} s, cpu {r['cpu_s']:.2f} s",
                    file=sys.stderr,
                )
    print(
        f"\nbatch {args.batch} x {args.seconds:g} s, {args.masked} masked frames per row, "
        f"{args.precision}, median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(
        "| config | mode | device | median step (s) | CPU time / step (s) | audio s / s "
        "| peak memory (GiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['mode']} | {r['device']} | {r['median_s']:.3f} | {r['cpu_s']:.2f} | "
            f"{r['audio_s_per_s']:.1f} | {r['peak_gb']:.2f} ({r['mem_kind']}) |"
        )


if __name__ == "__main__":
    main()
