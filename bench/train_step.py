"""Benchmark one pretraining step: median step time, audio-seconds per second, peak memory.

A step is what ``spidrkit train`` does per batch: forward (codebook update included), backward,
gradient clipping, AdamW, EMA teacher update. The batch matches the official reference measurement:
4 utterances of 4 s (64,000 samples, 199 frames) with 110 frames masked per row, fp32.

    python bench/train_step.py                        # tiny + base, eager, CPU (and CUDA if present)
    python bench/train_step.py --configs base --modes eager,compiled --steps 5 --threads 2
    python bench/train_step.py --profile              # top ops of one base step (torch.profiler)
    python bench/train_step.py --against 8a59095 --configs base,demo --rounds 5 --threads 2
    python bench/train_step.py --against 3e4d4ef --configs demo --threads 2 --target-view \
        --set model.warmup_target_steps=1200     # the demo's MFCC-only step, teacher on a clean view

``--against REV`` times this tree and commit REV side by side: REV's ``src`` and ``configs`` are
extracted (``git archive``) into a temporary folder, and each side runs in its own worker process
(same config file name, batch, seed and thread count), both kept alive and alternating: in every
round each side runs ``--steps`` steps, the side that goes first flipping every round. The table
gives each side's median step time, the median ratio REV time / this tree's time (> 1: this tree
is faster) with its min-max over the rounds, and the first step's loss of each side (the same
initial weights and batch: equal up to float rounding when the maths is unchanged).
``--against-precision P`` gives the other side another precision (``--against .``: this tree on
both sides, e.g. fp32 vs bf16).

Configs: ``tiny``, ``base`` (4 x 4 s, the official reference batch) and ``demo`` (the
``small.toml`` model of ``spidrkit demo``, 4 x 2.5 s = its 10 s of audio per step; the step
counter starts at 0, so it measures the MFCC warm-up phase, the first 2/3 of that recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[1]
if os.environ.get("SPIDRKIT_BENCH_SRC"):  # a worker of --against: import that tree
    sys.path.insert(0, os.environ["SPIDRKIT_BENCH_SRC"])
else:
    sys.path.insert(0, str(REPO / "src"))

from spidrkit.train.config import load_train_config  # noqa: E402
from spidrkit.train.distributed import DistInfo  # noqa: E402
from spidrkit.train.trainer import Trainer  # noqa: E402

CONFIG_FILES = {"tiny": "tiny.toml", "base": "base.toml", "demo": "small.toml"}
CONFIGS = {name: REPO / "configs" / file for name, file in CONFIG_FILES.items()}
DEFAULT_SECONDS = {"tiny": 4.0, "base": 4.0, "demo": 2.5}
MASKED_FRACTION = 110 / 199  # the official reference batch: 110 of 199 frames masked per row
EXTRA = SimpleNamespace(overrides=[], target_view=False)
"""``--set`` config overrides and ``--target-view``, the same on every side and config."""


def make_batch(
    batch: int, samples: int, masked: int, frames: int, seed: int = 0
) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(batch, samples, generator=g)
    mask = torch.stack(
        [torch.randperm(frames, generator=g)[:masked].sort().values for _ in range(batch)]
    )
    b = SimpleNamespace(waveforms=wav, mask_indices=mask, attention_mask=None, lengths=None)
    if EXTRA.target_view:  # a second view that the teacher and the warm-up targets read
        b.target_waveforms = wav + 0.1 * torch.randn(batch, samples, generator=g)
    return b


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def make_trainer(config: Path, mode: str, device: str, precision: str, name: str) -> Trainer:
    cfg = load_train_config(
        config,
        [
            f'run.device="{device}"',
            f'run.precision="{precision}"',
            f"run.compile={'true' if mode == 'compiled' else 'false'}",
            f'run.output_dir="/tmp/spidrkit-bench-{name}"',
            *EXTRA.overrides,
        ],
    )
    return Trainer(cfg, DistInfo(device=torch.device(device)))


def batch_for(trainer: Trainer, batch: int, seconds: float, masked: int | None) -> SimpleNamespace:
    samples = int(seconds * 16000)
    frames = int(trainer.model.num_frames(samples))
    m = round(MASKED_FRACTION * frames) if masked is None else masked
    return make_batch(batch, samples, min(m, frames), frames)


def timed_steps(trainer: Trainer, b: SimpleNamespace, n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``n`` training steps on batch ``b``."""
    dev = trainer.device
    times, cpu = [], []
    for _ in range(n):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        r = trainer.train_step(b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert not r.skipped
    return times, cpu


def bench(
    name: str,
    mode: str,
    device: str,
    precision: str,
    steps: int,
    warmup: int,
    batch: int,
    seconds: float,
    masked: int | None,
) -> dict:
    trainer = make_trainer(CONFIGS[name], mode, device, precision, name)
    dev = trainer.device
    b = batch_for(trainer, batch, seconds, masked)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    timed_steps(trainer, b, warmup)
    times, cpu = timed_steps(trainer, b, steps)
    med = statistics.median(times)
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else peak_rss_gb()
    return {
        "config": name,
        "mode": mode,
        "device": device,
        "precision": precision,
        "frames": int(b.mask_indices.shape[1]),
        "median_s": med,
        "cpu_s": statistics.median(cpu),
        "audio_s_per_s": batch * seconds / med,
        "peak_gb": mem,
        "mem_kind": "cuda alloc" if dev.type == "cuda" else "process RSS",
    }


def profile(name: str, device: str, precision: str, batch: int, seconds: float) -> None:
    trainer = make_trainer(CONFIGS[name], "eager", device, precision, "prof")
    b = batch_for(trainer, batch, seconds, None)
    timed_steps(trainer, b, 2)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step(b)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


# -- side by side with another commit (--against) --------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """One side of --against: build the trainer, warm up, then run steps on request (stdin)."""
    name = args.configs
    trainer = make_trainer(Path(args.worker_config), "eager", args.device, args.precision, name)
    b = batch_for(trainer, args.batch, args.seconds or DEFAULT_SECONDS[name], args.masked)
    first = trainer.train_step(b)
    timed_steps(trainer, b, max(args.warmup - 1, 0))
    print(json.dumps({"ready": True, "loss": first.loss}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        times, _ = timed_steps(trainer, b, int(line))
        print(json.dumps({"times": times}), flush=True)


class Side:
    """A worker process (this tree or an extracted commit) kept alive across rounds."""

    def __init__(self, label: str, src: Path, configs: Path, name: str, precision: str, args):
        env = dict(os.environ, SPIDRKIT_BENCH_SRC=str(src), OMP_NUM_THREADS=str(args.threads))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-config"]
        cmd += [str(configs / CONFIG_FILES[name]), "--configs", name, "--precision", precision]
        cmd += ["--device", args.device, "--threads", str(args.threads), "--batch", str(args.batch)]
        cmd += ["--warmup", str(args.warmup)]
        if args.seconds:
            cmd += ["--seconds", str(args.seconds)]
        if args.masked is not None:
            cmd += ["--masked", str(args.masked)]
        for override in args.set:
            cmd += ["--set", override]
        if args.target_view:
            cmd += ["--target-view"]
        self.label = label
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.loss = float(self._read()["loss"])
        self.medians: list[float] = []

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: worker exited with code {self.proc.wait()}")
        return json.loads(line)

    def run(self, steps: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        med = statistics.median(self._read()["times"])
        self.medians.append(med)
        return med

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait()


def extract_commit(rev: str, into: Path) -> str:
    """``src`` and ``configs`` of commit ``rev`` under ``into``; returns the short hash."""

    def git(*cmd: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(REPO), *cmd], check=True, capture_output=True
        ).stdout

    short = git("rev-parse", "--short", rev).decode().strip()
    archive = git("archive", "--format=tar", short, "src", "configs")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return short


def against(args: argparse.Namespace) -> None:
    other_precision = args.against_precision or args.precision
    rows = []
    with tempfile.TemporaryDirectory(prefix="spidrkit-against-") as tmp:
        if args.against == ".":  # the same tree in another precision
            label, other_root = f"this tree {other_precision}", REPO
        else:
            label, other_root = extract_commit(args.against, Path(tmp)), Path(tmp)
        for name in args.configs.split(","):
            here = Side("this tree", REPO / "src", REPO / "configs", name, args.precision, args)
            try:
                there = Side(
                    label, other_root / "src", other_root / "configs", name, other_precision, args
                )
            except BaseException:
                here.close()
                raise
            ratios = []
            try:
                for r in range(args.rounds):
                    order = (here, there) if r % 2 == 0 else (there, here)
                    t = {
                        side.label if side is there else "here": side.run(args.steps)
                        for side in order
                    }
                    ratios.append(t[label] / t["here"])
                    print(
                        f"  {name} round {r + 1}: this tree {t['here']:.3f} s, {label} {t[label]:.3f} s, "
                        f"ratio {ratios[-1]:.2f}",
                        file=sys.stderr,
                    )
            finally:
                here.close()
                there.close()
            rows.append((name, here, there, ratios))
    sizes = "/".join(f"{args.seconds or DEFAULT_SECONDS[n]:g}" for n in args.configs.split(","))
    print(
        f"\n{args.rounds} alternating rounds of {args.steps} steps (median per round) after "
        f"{args.warmup} warm-up; this tree {args.precision}, "
        f"{label if args.against == '.' else f'{label} {other_precision}'}; "
        f"batch {args.batch} x {sizes} s, {args.threads} threads"
        + "".join(f"; {o}" for o in args.set)
        + ("; with a target view" if args.target_view else "")
    )
    print(
        f"| config | this tree s/step | {label} s/step | {label} / this tree | first loss (this / {label}) |"
    )
    print("|---|---|---|---|---|")
    for name, here, there, ratios in rows:
        print(
            f"| {name} | {statistics.median(here.medians):.3f} | {statistics.median(there.medians):.3f} "
            f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {here.loss:.6f} / {there.loss:.6f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", default="tiny,base", help="tiny, base, demo (comma-separated)")
    p.add_argument("--modes", default="eager", help="eager,compiled")
    p.add_argument("--devices", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--device", default="cpu", help="with --against: the device of both sides")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument(
        "--seconds", type=float, default=None, help="per utterance (default: per config)"
    )
    p.add_argument("--masked", type=int, default=None, help="per row (default: 55%% of the frames)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile", action="store_true", help="top ops of one step of each config")
    p.add_argument("--against", metavar="REV", help="time this tree and commit REV alternately")
    p.add_argument("--against-precision", default=None, help="the other side's precision")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (--against)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every side and config, e.g. model.warmup_target_steps=1200",
    )
    p.add_argument(
        "--target-view",
        action="store_true",
        help="batches carry a second view for the teacher (the demo corpus's clean view)",
    )
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = p.parse_args()
    EXTRA.overrides, EXTRA.target_view = list(args.set), args.target_view
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker_config:
        worker(args)
        return
    print(
        f"torch {torch.__version__}, {cpu_name()}, "
        f"{args.threads or torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    if args.against:
        if not args.threads:
            p.error("--against needs --threads (both sides must use the same count)")
        against(args)
        return
    devices = (
        args.devices.split(",")
        if args.devices
        else (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    )
    if args.profile:
        for name in args.configs.split(","):
            profile(
                name, devices[0], args.precision, args.batch, args.seconds or DEFAULT_SECONDS[name]
            )
        return
    rows = []
    for device in devices:
        for name in args.configs.split(","):
            for mode in args.modes.split(","):
                seconds = args.seconds or DEFAULT_SECONDS[name]
                rows.append(
                    bench(
                        name,
                        mode,
                        device,
                        args.precision,
                        args.steps,
                        args.warmup,
                        args.batch,
                        seconds,
                        args.masked,
                    )
                )
                r = rows[-1]
                print(
                    f"  done {name} {mode} {device}: {r['median_s']:.3f} s, cpu {r['cpu_s']:.2f} s",
                    file=sys.stderr,
                )
    print(
        f"\nbatch {args.batch} utterances, 55% of frames masked unless --masked, "
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


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``) and whether it reports avx512_bf16."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
        "?",
    )
    return f"{model} ({os.cpu_count()} CPUs{', avx512_bf16' if 'avx512_bf16' in info else ''})"


if __name__ == "__main__":
    main()
