"""Shared helpers of the training tests: a generated wav corpus and a tiny config."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY_TOML = REPO / "configs" / "tiny.toml"


def make_corpus(
    folder: Path, n: int = 8, seed: int = 0, min_len: int = 6000, max_len: int = 12000
) -> Path:
    """Write ``n`` short 16 kHz wavs (tones + noise) and a manifest; returns the manifest path."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["fileid,path,num_samples"]
    for i in range(n):
        length = int(rng.integers(min_len, max_len))
        t = np.arange(length) / 16000
        x = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.standard_normal(length)
        sf.write(folder / f"u{i:02d}.wav", x.astype(np.float32), 16000)
        lines.append(f"u{i:02d},u{i:02d}.wav,{length}")
    manifest = folder / "train.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def tiny_overrides(manifest: Path, out: Path, **extra: object) -> list[str]:
    """``--set`` overrides turning configs/tiny.toml into a seconds-long CPU test run."""
    sets = {
        "data.train_manifests": f'["{manifest}"]',
        "data.max_batch_samples": "24000",
        "data.max_sample_size": "12000",
        "data.min_sample_size": "4000",
        "data.num_buckets": "2",
        "run.output_dir": f'"{out}"',
        "run.device": '"cpu"',
        "run.progress": "false",
        "run.tensorboard": "false",
        "run.max_steps": "6",
        "run.save_interval": "2",
        "run.log_interval": "1",
        "run.keep_last": "0",
        "optimizer.warmup_steps": "2",
        "optimizer.hold_steps": "2",
        "optimizer.decay_steps": "4",
        "model.freeze_step": "4",
        "model.ema_timescale": "5",
    }
    sets.update({k: str(v) for k, v in extra.items()})
    return [f"{k}={v}" for k, v in sets.items()]


DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_dist_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for process ``rank`` of ``world`` on this machine."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
