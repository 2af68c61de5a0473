"""Unit LM under DDP on CPU (gloo): a 2-process run resumed from its checkpoint is bitwise equal to
the straight run, every rank getting back its own RNG state; another world size is refused."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from spidrkit.config import from_dict
from spidrkit.errors import CheckpointError
from spidrkit.lm.config import LMTrainConfig
from spidrkit.train.checkpoint import digest_path, list_checkpoints, load_checkpoint
from train_helpers import DIST_ENV, free_port, set_dist_env


def _config(train: str, out: str) -> LMTrainConfig:
    """Dropout on and bucketed batches of uneven shapes: the ranks' RNG streams drift apart."""
    return from_dict(
        LMTrainConfig,
        {
            "preset": "lm_tiny",
            "model": {"num_units": 16, "dropout": 0.2, "attention_dropout": 0.1},
            "data": {
                "train": train,
                "valid_fraction": 0.1,
                "batching": "bucket",
                "block_size": 64,
                "max_tokens": 160,
            },
            "optimizer": {"lr": 3e-3, "warmup_steps": 1},
            "validation": {"interval": 2},
            "run": {
                "output_dir": out,
                "device": "cpu",
                "max_steps": 4,
                "grad_accum": 2,
                "log_interval": 1,
                "save_interval": 2,
                "keep_last": 0,
                "tensorboard": False,
            },
        },
    )


def _rank(rank: int, world: int, port: int, train: str, out: str) -> None:
    """Train 4 steps (checkpoints at 2 and 4), set the 4th aside, resume from the 2nd."""
    set_dist_env(rank, world, port)
    torch.set_num_threads(1)
    from spidrkit.lm.train import train_lm
    from spidrkit.train.distributed import barrier, cleanup

    try:
        assert train_lm(_config(train, out), show_progress=False).step == 4
        if rank == 0:
            last = Path(out) / "checkpoint_00000004.pt"
            os.replace(last, Path(out) / "straight.pt")
            digest_path(last).unlink()
        barrier()
        assert train_lm(_config(train, out), show_progress=False).step == 4
    finally:
        cleanup()


def _assert_equal(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_two_rank_resume_is_bitwise_equal_and_world_size_checked(tmp_path):
    for k in DIST_ENV:
        os.environ.pop(k, None)
    rng = random.Random(3)
    train = tmp_path / "train.jsonl"
    with train.open("w") as f:
        for i in range(120):
            units = [rng.randrange(16) for _ in range(rng.randint(4, 50))]
            f.write(json.dumps({"audio": f"u{i}.wav", "units": units}) + "\n")
    out = tmp_path / "run"
    mp.spawn(_rank, args=(2, free_port(), str(train), str(out)), nprocs=2, join=True)
    assert [s for s, _ in list_checkpoints(out)] == [2, 4]
    straight = load_checkpoint(out / "straight.pt")
    assert straight["trainer"]["world_size"] == 2 and len(straight["rng"]) == 2
    # the ranks drew different dropout masks: restoring rank 0's state on both would diverge
    assert not torch.equal(straight["rng"][0]["torch"], straight["rng"][1]["torch"])
    resumed = load_checkpoint(out / "checkpoint_00000004.pt")
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "trainer", "step"):
        _assert_equal(straight[key], resumed[key], key)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(3) == 1  # no step logged twice

    from spidrkit.lm.train import train_lm

    with pytest.raises(CheckpointError, match="saved with 2 processes, resumed with 1"):
        train_lm(_config(str(train), str(out)), show_progress=False)
