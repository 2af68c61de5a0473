"""Pretraining end to end on a generated corpus: config, fit, checkpoints, exact resume, guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from spidrkit.errors import ConfigError
from spidrkit.train import checkpoint as ckpt
from spidrkit.train.config import load_train_config, train_config_from_dict
from spidrkit.train.faults import ENV as FAULT_ENV
from spidrkit.train.trainer import (
    NonFiniteLossError,
    Trainer,
    make_train_loader,
    pretrain,
    validate_all,
)
from train_helpers import REPO, TINY_TOML, make_corpus, tiny_overrides


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


VALID = {"validation.interval": 3}


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """An uninterrupted 6-step run (validation at steps 3 and 6; it touches no weight or RNG)."""
    out = tmp_path_factory.mktemp("straight")
    return pretrain(_cfg(corpus, out, **{"data.valid_manifests": f'["{corpus}"]', **VALID})), out


def _cfg(corpus, out, **extra):
    return load_train_config(TINY_TOML, tiny_overrides(corpus, out, **extra))


def _weights(path):
    return ckpt.load_checkpoint(path)["model"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -------------------------------------------------------------------------------------- config


def test_shipped_configs_validate():
    tiny = load_train_config(TINY_TOML)
    base = load_train_config(REPO / "configs" / "base.toml")
    assert tiny.model.encoder_embed_dim == 64 and tiny.run.precision == "fp32"
    assert base.model.encoder_embed_dim == 768 and base.optimizer.lr == 5e-4
    assert base.optimizer.betas == (0.9, 0.95) and base.data.max_batch_samples == 3_800_000
    assert base.run.precision == "bf16" and base.optimizer.clip_norm == 10.0


def test_config_errors_name_every_key():
    with pytest.raises(ConfigError) as err:
        load_train_config(
            TINY_TOML,
            [
                "optimizer.lr=-1",
                "run.bogus=1",
                "model.encoder_num_heads=5",
                "masking.mask_prob=2",
                "run.precision=fp8",
            ],
        )
    msg = str(err.value)
    for key in (
        "optimizer.lr",
        "run.bogus",
        "model.encoder_embed_dim",
        "masking.mask_prob",
        "run.precision",
    ):
        assert key in msg, key


def test_model_section_follows_model_type():
    cfg = train_config_from_dict(
        {"run": {"model_type": "dinosr"}, "model": {"num_codebooks": 2}},
        ["data.train_manifests=a.csv"],
    )
    assert type(cfg.model).__name__ == "DinoSRConfig" and cfg.data.train_manifests == ("a.csv",)
    with pytest.raises(ConfigError, match="model.ema_timescale: unknown key"):
        train_config_from_dict({"run": {"model_type": "dinosr"}, "model": {"ema_timescale": 5}})


def test_check_config_cli(capsys):
    from spidrkit.cli.main import main

    assert main(["check-config", str(TINY_TOML), "--set", "optimizer.lr=0.002", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)  # the note about missing manifests goes to stderr
    assert data["optimizer"]["lr"] == 0.002 and data["model"]["encoder_embed_dim"] == 64
    assert main(["check-config", str(TINY_TOML), "--set", "run.nope=1"]) == 2
    assert "run.nope" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ fit


def test_fit_writes_logs_checkpoints_and_resumes_exactly(corpus, straight, tmp_path):
    straight, out_a = straight
    assert straight.step == 6 and straight.nonfinite_steps == 0
    state = ckpt.load_checkpoint(straight.checkpoint)
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "sampler"):
        assert key in state
    assert state["step"] == 6 and state["scaler"] is None
    config = json.loads((out_a / "checkpoints" / "config.json").read_text())
    assert config["run"]["max_steps"] == 6 and config["model"]["encoder_embed_dim"] == 64
    rows = [json.loads(x) for x in (out_a / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    valid = [r for r in rows if r["split"] == "valid"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "target_ppl", "pred_ppl", "lr", "audio_s_per_s", "active_codewords"} <= set(
        train[0]
    )
    assert [r["step"] for r in valid] == [3, 6] and "train/loss" in valid[0]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in train)

    # 3 steps (stopping mid-epoch), then a new Trainer asked for 6: same weights as straight
    out = tmp_path / "b"
    pretrain(_cfg(corpus, out, **{"run.max_steps": 3}))
    resumed = pretrain(_cfg(corpus, out))
    assert resumed.step == 6
    _assert_same(_weights(straight.checkpoint), _weights(resumed.checkpoint))


def _run_cli(args, env_extra=None, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop(FAULT_ENV, None)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "spidrkit.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_sigkill_mid_write_and_between_steps_then_resume_is_bitwise_equal(
    corpus, straight, tmp_path
):
    """Killed while writing checkpoint 4, then (resumed from 2) killed after step 5, then resumed
    from 4 to the end: the final weights equal the uninterrupted run's, bit for bit."""
    straight, _ = straight
    out = tmp_path / "killed"
    ckdir = out / "checkpoints"
    args = ["train", str(TINY_TOML), *sum((["--set", s] for s in tiny_overrides(corpus, out)), [])]
    proc = _run_cli(args, {FAULT_ENV: "save:4"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [s for s, _ in ckpt.list_checkpoints(ckdir)] == [2]  # the step-4 write never landed
    assert list(ckdir.glob(".checkpoint_00000004.pt.*.tmp"))
    proc = _run_cli(args, {FAULT_ENV: "step:5"}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [s for s, _ in ckpt.list_checkpoints(ckdir)] == [2, 4]
    assert not list(ckdir.glob("*.tmp"))
    _run_cli(args)
    final = ckpt.find_latest_checkpoint(ckdir)
    assert final.name == "checkpoint_00000006.pt"
    _assert_same(_weights(straight.checkpoint), _weights(final))
    full = ckpt.load_checkpoint(final)
    ref = ckpt.load_checkpoint(straight.checkpoint)
    assert full["sampler"] == ref["sampler"] and full["scheduler"] == ref["scheduler"]


def test_cli_train_runs_tiny_config(corpus, tmp_path, capsys):
    from spidrkit.cli.main import main

    sets = tiny_overrides(corpus, tmp_path / "run", **{"run.max_steps": 2})
    assert main(["train", str(TINY_TOML), *sum((["--set", s] for s in sets), [])]) == 0
    assert "checkpoint_00000002.pt" in capsys.readouterr().out
    assert main(["train", str(TINY_TOML), "--set", "data.train_manifests=[]"]) == 2


def test_tensorboard_events_written(corpus, tmp_path):
    pytest.importorskip("tensorboard")
    pretrain(_cfg(corpus, tmp_path, **{"run.max_steps": 1, "run.tensorboard": "true"}))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


# -------------------------------------------------------------------------------- step pieces


def _batches(cfg, n):
    from spidrkit.train.distributed import DistInfo

    loader = make_train_loader(cfg, DistInfo())
    out = []
    while len(out) < n:
        out += list(loader)
        loader.sampler.set_epoch(loader.sampler.epoch + 1)
    return out[:n]


def test_extractor_frozen_from_freeze_step(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path, **{"model.freeze_step": 2})
    trainer = Trainer(cfg)
    batches = _batches(cfg, 4)
    for b in batches[:2]:
        trainer.train_step(b)
    frozen = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for b in batches[2:]:
        trainer.train_step(b)
    now = trainer.model.state_dict()
    for k in frozen:
        if k.startswith(("feature_extractor.", "feature_projection.")):
            assert torch.equal(frozen[k], now[k]), k
    assert not torch.equal(
        frozen["student.layers.0.attention.qkv.weight"],
        now["student.layers.0.attention.qkv.weight"],
    )
    assert not trainer.model.feature_extractor.conv_layers[0].conv.weight.requires_grad
    assert trainer.model.update_ema  # teacher moved: current_step buffer follows the step
    assert int(now["current_step"]) == 4


def test_validation_changes_nothing(corpus, tmp_path):
    cfg = _cfg(corpus, tmp_path, **{"data.valid_manifests": f'["{corpus}"]'})
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    metrics = validate_all(trainer)
    assert metrics["train/masked_frames"] > 0 and metrics["train/loss"] > 0
    assert metrics["train/target_ppl"] >= 1
    _assert_same(before, trainer.model.state_dict())
    assert torch.equal(rng, torch.get_rng_state())
    assert trainer.model.training


class _NaNModel(nn.Module):
    """Stand-in with the model API whose loss turns NaN on demand."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.register_buffer("codebooks_state", torch.zeros(2))
        self.bad = False
        self.ema_steps = []

    def forward(self, waveforms, mask_indices, attention_mask=None):
        self.codebooks_state += 1  # the real model updates its codebooks in forward
        loss = (waveforms[:, :3] * self.w).sum(1).repeat_interleave(mask_indices.shape[1])
        if self.bad:
            loss = loss * float("nan")
        return loss, {"target_ppl": torch.tensor(4.0), "pred_ppl": torch.tensor(5.0)}

    def update_ema(self, step):
        self.ema_steps.append(step)
        return 0.5


def test_nonfinite_guard_skips_and_stops(tmp_path):
    cfg = train_config_from_dict(
        {
            "run": {
                "device": "cpu",
                "max_nonfinite_steps": 3,
                "precision": "fp32",
                "output_dir": str(tmp_path),
            }
        }
    )
    model = _NaNModel()
    trainer = Trainer(cfg, model=model)
    batch = SimpleNamespace(
        waveforms=torch.randn(2, 8),
        mask_indices=torch.zeros(2, 4, dtype=torch.long),
        attention_mask=None,
        lengths=None,
    )
    r = trainer.train_step(batch)
    assert not r.skipped and trainer.step == 1 and model.ema_steps == [1]
    assert r.masked_frames == 8 and r.samples == 16
    w = model.w.detach().clone()
    model.bad = True
    for i in range(2):
        r = trainer.train_step(batch)
        assert r.skipped and trainer.step == 1 and trainer.nonfinite_in_a_row == i + 1
        assert torch.equal(model.w, w) and model.codebooks_state.tolist() == [1.0, 1.0]
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        trainer.train_step(batch)
    model.bad = False
    trainer.nonfinite_in_a_row = 0
    assert not trainer.train_step(batch).skipped and trainer.nonfinite_total == 3


def test_loss_is_sum_over_global_masked_count(tmp_path):
    cfg = train_config_from_dict(
        {
            "run": {"device": "cpu", "output_dir": str(tmp_path), "precision": "fp32"},
            "optimizer": {"clip_norm": 0.0},
        }
    )
    model = _NaNModel()
    trainer = Trainer(cfg, model=model)
    wav = torch.randn(2, 8)
    batch = SimpleNamespace(
        waveforms=wav,
        mask_indices=torch.zeros(2, 5, dtype=torch.long),
        attention_mask=None,
        lengths=None,
    )
    r = trainer.train_step(batch)
    expected = (wav[:, :3].sum() * 5 / 10).item()
    assert r.loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_on_cpu(corpus, tmp_path, precision):
    cfg = _cfg(corpus, tmp_path, **{"run.precision": f'"{precision}"'})
    trainer = Trainer(cfg)
    r = trainer.train_step(_batches(cfg, 1)[0])
    assert not r.skipped and torch.isfinite(torch.tensor(r.loss))
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    if precision == "fp16":
        assert trainer.state_dict()["scaler"] is not None
