"""GPU readiness check: parity, training and extraction speed, ABX, unit LM; prints one table.

On the first machine with a GPU (about 5-8 minutes on one GPU, base-size model):

    python bench/gpu_check.py                      # --device cuda when one is there
    python bench/gpu_check.py --json gpu.json      # the rows as JSON too

On a CPU (tiny sizes, 1-2 minutes; what the slow test runs):

    python bench/gpu_check.py --device cpu

Checks:

(a) parity: the same randomly initialised model on CPU (fp32, the reference) and on the device:
    layer outputs in fp32 (TF32 off) and the masked-prediction loss under bf16 autocast.
(b) pretraining throughput, one ``Trainer.train_step`` per batch (forward with codebook update,
    backward, clipping, AdamW, EMA): fp32, bf16, bf16 + ``torch.compile``; audio-seconds per second
    per device, peak memory, MFU (model FLOPs counted by ``torch.utils.flop_counter`` / step time /
    the device's peak, from a table of known GPUs or ``--peak-tflops``).
(c) extraction throughput (``EncoderFeatures`` on padded batches, fp32), audio-seconds per second.
(d) ABX on the device vs CPU: the same error (within ``--abx-tol``) and both times.
(e) a unit-LM training step under bf16 autocast: loss vs fp32 at the same weights, tokens/s.

A failed check prints FAIL with its error and the others still run; the exit code is 1 if any
check failed. Absolute numbers depend on the machine: the table header says which.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from abx import gaussian_items  # noqa: E402

from spidrkit.api import Encoder  # noqa: E402
from spidrkit.eval.abx import ABXConfig, Items, compute_abx  # noqa: E402
from spidrkit.lm.config import LM_PRESETS  # noqa: E402
from spidrkit.lm.model import UnitLM  # noqa: E402
from spidrkit.models import build_model  # noqa: E402
from spidrkit.train.config import load_train_config  # noqa: E402
from spidrkit.train.distributed import DistInfo  # noqa: E402
from spidrkit.train.trainer import Trainer  # noqa: E402

# Dense peak TFLOP/s (bf16 tensor cores, and fp32 without TF32) by device-name substring.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "A10": {"bf16": 125.0, "fp32": 31.2},
    "L4": {"bf16": 121.0, "fp32": 30.3},
}


@dataclass(frozen=True)
class Sizes:
    """How big each check is: base-size on a GPU, tiny on a CPU."""

    config: str  # configs/<config>.toml
    train_batch: int
    train_seconds: float
    train_steps: int
    warmup: int
    extract_utterances: int
    extract_seconds: float
    abx_items: int
    abx_dim: int
    lm_preset: str
    lm_batch: tuple[int, int]


GPU = Sizes("base", 8, 10.0, 10, 3, 64, 12.0, 25000, 768, "opt_125m", (16, 1024))
CPU = Sizes("tiny", 4, 2.0, 3, 1, 8, 3.0, 3000, 64, "lm_small", (8, 256))


@dataclass
class Row:
    check: str
    setting: str
    value: str
    status: str  # PASS, FAIL or "" (a measurement)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[precision] * 1e12
    return None


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def train_config(sizes: Sizes, device: torch.device, precision: str, compiled: bool):
    return load_train_config(
        REPO / "configs" / f"{sizes.config}.toml",
        [
            f'run.device="{device.type}"',
            f'run.precision="{precision}"',
            f"run.compile={'true' if compiled else 'false'}",
            'run.output_dir="/tmp/spidrkit-gpu-check"',
        ],
    )


def masked_batch(model, batch: int, seconds: float, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    samples = int(seconds * 16000)
    frames = int(model.num_frames(samples))
    masked = max(1, int(0.5 * frames))
    mask = torch.stack(
        [torch.randperm(frames, generator=g)[:masked].sort().values for _ in range(batch)]
    )
    wav = torch.randn(batch, samples, generator=g)
    return SimpleNamespace(waveforms=wav, mask_indices=mask, attention_mask=None, lengths=None)


# ------------------------------------------------------------------------------------ checks
def check_parity(device: torch.device, sizes: Sizes) -> list[Row]:
    cfg = train_config(sizes, device, "fp32", False)
    torch.manual_seed(0)
    ref = build_model(cfg.run.model_type, cfg.model).eval()
    dut = copy.deepcopy(ref).to(device).eval()
    batch = masked_batch(ref, 2, min(sizes.train_seconds, 4.0), seed=1)
    layer = int(cfg.model.encoder_num_layers)
    wavs = list(batch.waveforms)
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        want = ref.layer_features(wavs, [1, layer])
        got = dut.layer_features([w.to(device) for w in wavs], [1, layer])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    rows = []
    for lay in (1, layer):
        err = rel_err(got[lay], want[lay])
        rows.append(
            Row("a parity", f"layer {lay} output, fp32", f"max rel err {err:.1e}", _ok(err < 1e-3))
        )
    with torch.no_grad():
        loss_ref = ref(batch.waveforms, mask_indices=batch.mask_indices)[0].float().mean()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss_dut = (
                dut(batch.waveforms.to(device), mask_indices=batch.mask_indices.to(device))[0]
                .float()
                .mean()
            )
    err = abs(float(loss_dut) - float(loss_ref)) / abs(float(loss_ref))
    rows.append(
        Row(
            "a parity",
            "masked-prediction loss, bf16 autocast",
            f"{float(loss_dut):.4f} vs fp32 {float(loss_ref):.4f} (rel {err:.1e})",
            _ok(err < 2e-2),
        )
    )
    return rows


def flops_per_step(trainer: Trainer, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step(batch)
    return float(counter.get_total_flops())


def check_training(device: torch.device, sizes: Sizes, compile_: bool, peak: float | None):
    modes = [("fp32", False), ("bf16", False)] + ([("bf16", True)] if compile_ else [])
    rows, flops = [], None
    audio = sizes.train_batch * sizes.train_seconds
    for precision, compiled in modes:
        setting = precision + (" + compile" if compiled else "")
        cfg = train_config(sizes, device, precision, compiled)
        torch.manual_seed(0)
        trainer = Trainer(cfg, DistInfo(device=device))
        batch = masked_batch(trainer.model, sizes.train_batch, sizes.train_seconds)
        if flops is None:
            flops = flops_per_step(trainer, batch)
        reset_peak(device)
        times, t_first = [], None
        for step in range(sizes.warmup + sizes.train_steps):
            sync(device)
            t0 = time.perf_counter()
            result = trainer.train_step(batch)
            sync(device)
            if step == 0:
                t_first = time.perf_counter() - t0
            if step >= sizes.warmup:
                times.append(time.perf_counter() - t0)
            if result.skipped or not math.isfinite(result.loss):
                raise RuntimeError(f"{setting}: step {step} skipped (loss {result.loss})")
        med = statistics.median(times)
        p = peak_flops(device, "fp32" if precision == "fp32" else "bf16", peak)
        mfu = f", MFU {100 * flops / med / p:.1f} %" if p else ""
        rows.append(
            Row(
                "b pretraining",
                f"{sizes.config}, {setting}, {sizes.train_batch} x {sizes.train_seconds:g} s",
                f"{audio / med:.1f} audio-s/s, step {med:.3f} s (first {t_first:.1f} s), "
                f"peak {peak_memory_gib(device):.2f} GiB{mfu}",
                _ok(True),
            )
        )
        del trainer
    rows.append(Row("b pretraining", "model FLOPs per step", f"{flops / 1e9:.1f} GFLOP", ""))
    return rows


def check_extraction(device: torch.device, sizes: Sizes) -> list[Row]:
    cfg = train_config(sizes, device, "fp32", False)
    torch.manual_seed(0)
    model = build_model(cfg.run.model_type, cfg.model)
    layer = min(6, int(cfg.model.encoder_num_layers))
    cap = int(16 * sizes.extract_seconds * 16000)
    encoder = Encoder(model, device, max_batch_samples=cap, max_batch_items=64)
    g = torch.Generator().manual_seed(0)
    n = sizes.extract_utterances
    secs = np.linspace(0.5 * sizes.extract_seconds, sizes.extract_seconds, n)
    wavs = [0.1 * torch.randn(int(s * 16000), generator=g) for s in secs][::-1]
    lengths = [w.shape[0] for w in wavs]
    encoder.features(wavs[0], layers=[layer])  # warm-up
    best = float("inf")
    for _ in range(2):
        sync(device)
        t0 = time.perf_counter()
        for _ in encoder.stream(range(n), wavs.__getitem__, lengths, layers=[layer]):
            pass
        sync(device)
        best = min(best, time.perf_counter() - t0)
    audio = float(sum(secs))
    return [
        Row(
            "c extraction",
            f"{sizes.config}, layer {layer}, {n} utterances, {audio:.0f} s, fp32",
            f"{audio / best:.1f} audio-s/s",
            _ok(True),
        )
    ]


def check_abx(device: torch.device, sizes: Sizes, tol: float) -> list[Row]:
    rows_, feats = gaussian_items(sizes.abx_items, 10, 40, sizes.abx_dim)
    items = Items.from_rows(rows_)
    rows = []
    for speaker, context in (("within", "within"), ("across", "within"), ("within", "any")):
        cfg = ABXConfig(speaker=speaker, context=context)
        t0 = time.perf_counter()
        ref = compute_abx(items, feats, cfg, device="cpu", show_progress=False)
        t_cpu = time.perf_counter() - t0
        compute_abx(items, feats, replace_small(cfg), device=device, show_progress=False)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        got = compute_abx(items, feats, cfg, device=device, show_progress=False)
        sync(device)
        t_dev = time.perf_counter() - t0
        diff = abs(got.error - ref.error)
        rows.append(
            Row(
                "d ABX",
                f"{speaker}/{context}, {len(items)} items, {sizes.abx_dim}-d, ZeroSpeech subsampling",
                f"{100 * got.error:.4f} % vs CPU {100 * ref.error:.4f} % (diff {diff:.1e}); "
                f"{t_dev:.2f} s vs CPU {t_cpu:.2f} s",
                _ok(diff <= tol),
            )
        )
    return rows


def replace_small(cfg: ABXConfig) -> ABXConfig:
    from dataclasses import replace

    return replace(cfg, max_size_group=2)


def check_lm(device: torch.device, sizes: Sizes, steps: int) -> list[Row]:
    lm_cfg = LM_PRESETS[sizes.lm_preset]
    torch.manual_seed(0)
    model = UnitLM(lm_cfg).to(device)
    rows_, cols = sizes.lm_batch
    cols = min(cols, lm_cfg.max_positions)
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(3, lm_cfg.vocab_size, (rows_, cols + 1), generator=g).to(device)
    tokens, targets = batch[:, :-1], batch[:, 1:]
    model.eval()
    with torch.no_grad():
        ref, n = model.loss(tokens, targets)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low, _ = model.loss(tokens, targets)
    ref, low = float(ref / n), float(low / n)
    err = abs(low - ref) / abs(ref)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for step in range(steps + 1):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss, n = model.loss(tokens, targets)
        (loss / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if step:
            times.append(time.perf_counter() - t0)
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"unit LM: non-finite loss at step {step}")
    med = statistics.median(times)
    return [
        Row(
            "e unit LM",
            f"{sizes.lm_preset}, {rows_} x {cols} tokens, bf16 autocast",
            f"loss {low:.4f} vs fp32 {ref:.4f} (rel {err:.1e}); step {med:.3f} s, "
            f"{rows_ * cols / med:.0f} tokens/s",
            _ok(err < 2e-2),
        )
    ]


def _ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


# -------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", choices=("auto", "base", "tiny"), default="auto")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per mode")
    p.add_argument("--no-compile", action="store_true", help="skip the bf16 + compile mode")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    p.add_argument("--abx-tol", type=float, default=1e-4, help="largest |error difference|")
    p.add_argument("--only", default="abcde", help="checks to run, e.g. 'ad'")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --device cpu", file=sys.stderr)
        return 2
    size = args.size if args.size != "auto" else ("base" if device.type == "cuda" else "tiny")
    sizes = GPU if size == "base" else CPU
    if args.steps:
        sizes = SimpleNamespace(**{**sizes.__dict__, "train_steps": args.steps})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"# gpu_check on {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, sizes: {size}",
        flush=True,
    )
    checks = {
        "a": lambda: check_parity(device, sizes),
        "b": lambda: check_training(device, sizes, not args.no_compile, args.peak_tflops),
        "c": lambda: check_extraction(device, sizes),
        "d": lambda: check_abx(device, sizes, args.abx_tol),
        "e": lambda: check_lm(device, sizes, max(2, sizes.train_steps)),
    }
    rows: list[Row] = []
    t_all = time.perf_counter()
    for key in args.only:
        t0 = time.perf_counter()
        try:
            new = checks[key]()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other checks
            traceback.print_exc()
            new = [Row(key, "error", f"{type(exc).__name__}: {exc}".splitlines()[0], "FAIL")]
        rows += new
        print(f"  {key}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print("\n| check | setting | result | status |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r.check} | {r.setting} | {r.value} | {r.status} |")
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
