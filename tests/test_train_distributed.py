"""DDP on CPU (gloo): 2 processes on halves of a batch == 1 process on the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from train_helpers import REPO, TINY_TOML, free_port, make_corpus, set_dist_env, tiny_overrides

STEPS = 3
ROWS = 4


def _batches() -> list[SimpleNamespace]:
    """Fixed global batches [ROWS, 9600] with the same number of masked frames in every row."""
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        wav = torch.randn(ROWS, 9600, generator=g)
        wav = (wav - wav.mean(1, keepdim=True)) / wav.std(1, keepdim=True)
        frames = 29  # tiny extractor: 9600 samples -> 29 frames
        mask = torch.stack(
            [torch.randperm(frames, generator=g)[:16].sort().values for _ in range(ROWS)]
        )
        out.append(
            SimpleNamespace(waveforms=wav, mask_indices=mask, attention_mask=None, lengths=None)
        )
    return out


def _config(out: str):
    from spidrkit.train.config import load_train_config

    return load_train_config(
        TINY_TOML,
        [
            f'run.output_dir="{out}"',
            'run.device="cpu"',
            'run.precision="fp32"',
            "optimizer.warmup_steps=1",
            "model.ema_timescale=2",
        ],
    )


def _train(rank: int, world: int, port: int, out: str) -> None:
    set_dist_env(rank, world, port)
    torch.set_num_threads(1)
    from spidrkit.train.distributed import barrier, cleanup
    from spidrkit.train.trainer import Trainer

    trainer = Trainer(_config(out))
    assert trainer.dist.world_size == world
    per = ROWS // world
    norms = []
    for batch in _batches():
        sl = slice(rank * per, (rank + 1) * per)
        part = SimpleNamespace(
            waveforms=batch.waveforms[sl],
            mask_indices=batch.mask_indices[sl],
            attention_mask=None,
            lengths=None,
        )
        result = trainer.train_step(part)
        assert not result.skipped
        norms.append(result.grad_norm)
        assert result.masked_frames == ROWS * 16  # global count, on every rank
    if rank == 0:
        state = {"model": trainer.model.state_dict(), "grad_norms": torch.tensor(norms)}
        torch.save(state, os.path.join(out, f"world{world}.pt"))
    # every rank here before any tears the group down (as a run's last checkpoint save does): a
    # rank that destroys its gloo group while the other still saves was seen to abort (SIGABRT)
    barrier()
    cleanup()


def test_two_gloo_processes_match_one_process(tmp_path):
    out = str(tmp_path)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(k, None)
    mp.spawn(_train, args=(2, free_port(), out), nprocs=2, join=True)
    threads = torch.get_num_threads()
    try:
        _train(0, 1, free_port(), out)
    finally:
        torch.set_num_threads(threads)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(k, None)
    one = torch.load(tmp_path / "world1.pt", weights_only=True)
    two = torch.load(tmp_path / "world2.pt", weights_only=True)
    # gradients (after DDP's averaging) are those of the global batch, not scaled by 1/world
    torch.testing.assert_close(two["grad_norms"], one["grad_norms"], rtol=1e-5, atol=0)
    one, two = one["model"], two["model"]
    assert one.keys() == two.keys()
    init = _fresh_state(out)
    moved = 0
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-5, msg=k)
        moved += int(not torch.equal(one[k], init[k]))
    assert moved > 50  # the comparison is not vacuous: training changed most tensors


def _fresh_state(out: str) -> dict[str, torch.Tensor]:
    from spidrkit.models import build_model

    cfg = _config(out)
    torch.manual_seed(cfg.run.seed)
    return build_model(cfg.run.model_type, cfg.model).state_dict()


@pytest.mark.slow
def test_torchrun_cli_two_processes(tmp_path):
    """The real command under torchrun: sharded data, DDP, one checkpoint with both ranks' RNG."""
    manifest = make_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    sets = sum((["--set", s] for s in tiny_overrides(manifest, out, **{"run.max_steps": 3})), [])
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
            "-m",
            "spidrkit.cli.main",
            "train",
            str(TINY_TOML),
            *sets,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    from spidrkit.train import checkpoint as ckpt

    state = ckpt.load_checkpoint(ckpt.find_latest_checkpoint(out / "checkpoints"))
    assert state["step"] == 3 and len(state["rng"]) == 2 and state["trainer"]["world_size"] == 2
