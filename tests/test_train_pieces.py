"""Unit tests of the model-agnostic training pieces: schedules, checkpoints, RNG, metrics, dist."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from spidrkit.errors import CheckpointError, DataError
from spidrkit.train import checkpoint as ckpt
from spidrkit.train import distributed, monitor, schedule

# ------------------------------------------------------------------------------------ schedules


def test_tristage_matches_official_recipe_points():
    s = schedule.TriStage(warmup_steps=12_000, hold_steps=188_000, decay_steps=200_000)
    assert s(0) == pytest.approx(0.01)
    assert s(6_000) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s(12_000) == 1.0
    assert s(199_999) == 1.0
    assert s(300_000) == pytest.approx(math.sqrt(0.01))  # halfway through the exponential decay
    assert s(400_000) == pytest.approx(0.01)
    assert s(10**7) == pytest.approx(0.01)
    values = [s(t) for t in range(200_000, 400_000, 997)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_cosine_and_constant():
    c = schedule.Cosine(warmup_steps=10, total_steps=110, init_lr_scale=0.0, final_lr_scale=0.1)
    assert c(0) == 0.0 and c(5) == pytest.approx(0.5) and c(10) == pytest.approx(1.0)
    assert (
        c(60) == pytest.approx(0.55)
        and c(110) == pytest.approx(0.1)
        and c(500) == pytest.approx(0.1)
    )
    k = schedule.Constant(warmup_steps=4, init_lr_scale=0.0)
    assert [k(t) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_scheduler_state_dict_roundtrip_weights_only(tmp_path):
    def make():
        p = nn.Parameter(torch.zeros(2))
        opt = torch.optim.AdamW([p], lr=1e-3)
        sched = schedule.make_scheduler(
            opt, schedule.make_schedule("tristage", warmup_steps=5, hold_steps=3, decay_steps=4)
        )
        return opt, sched

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    opt2, sched2 = make()
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for _ in range(4):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert sched.get_last_lr() == sched2.get_last_lr()


def test_unknown_schedule_is_config_error():
    from spidrkit.errors import ConfigError

    with pytest.raises(ConfigError, match="linear"):
        schedule.make_schedule("linear")


# ---------------------------------------------------------------------------------- checkpoints


def test_rng_capture_restore_all_generators(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ckpt.capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    ckpt.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    assert first == again


def test_save_prune_find_latest_and_config(tmp_path):
    for step in (10, 20, 30, 40):
        ckpt.save_checkpoint(
            tmp_path,
            step,
            {"model": {"w": torch.full((2,), float(step))}, "step": step},
            keep_last=2,
            config={"run": {"seed": 1}},
        )
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [30, 40]
    assert json.loads((tmp_path / "config.json").read_text()) == {"run": {"seed": 1}}
    latest = ckpt.find_latest_checkpoint(tmp_path)
    assert latest == ckpt.checkpoint_path(tmp_path, 40)
    state = ckpt.load_checkpoint(latest)
    assert state["step"] == 40 and state["model"]["w"].tolist() == [40.0, 40.0]
    # a truncated newest file (e.g. a copy cut short) is skipped
    data = ckpt.checkpoint_path(tmp_path, 40).read_bytes()
    ckpt.checkpoint_path(tmp_path, 50).write_bytes(data[: len(data) // 2])
    assert ckpt.find_latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 40)
    with pytest.raises(CheckpointError, match="checkpoint_00000050"):
        ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 50))
    assert ckpt.find_latest_checkpoint(tmp_path / "missing") is None


def test_interrupted_write_leaves_previous_checkpoint(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, {"model": {}, "step": 1})

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ckpt.save_checkpoint(tmp_path, 2, {"model": {}, "step": 2}, before_replace=boom)
    assert ckpt.find_latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 1)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_pickled_objects(tmp_path):
    import fractions

    torch.save({"model": {}, "x": fractions.Fraction(1, 3)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt"):
        ckpt.load_checkpoint(tmp_path / "bad.pt")


# -------------------------------------------------------------------------------------- monitor


def test_metrics_logger_jsonl_and_tensorboard(tmp_path):
    with monitor.MetricsLogger(tmp_path, tensorboard=True) as logger:
        logger.log(1, {"loss": 2.5, "lr": 1e-4})
        logger.log(2, {"loss": 2.0}, split="valid")
    rows = monitor.read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"], r["loss"]) for r in rows] == [
        (1, "train", 2.5),
        (2, "valid", 2.0),
    ]
    pytest.importorskip("tensorboard")
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_disabled_logger_writes_nothing(tmp_path):
    logger = monitor.MetricsLogger(tmp_path / "x", enabled=False)
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert not (tmp_path / "x").exists()


def test_postfix_format():
    out = monitor.format_postfix({"loss": 2.345678, "target_ppl": 12.34, "lr": 0.0005})
    assert out == {"loss": "2.346", "target_ppl": "12.3", "lr": "5.00e-04"}


class _Codebooks(nn.Module):
    def __init__(self):
        super().__init__()
        self.codebooks = nn.ModuleList([nn.Module()])
        self.codebooks[0].register_buffer("counts", torch.ones(10))


def test_codebook_monitor_counts_and_warns(caplog):
    m = _Codebooks()
    mon = monitor.CodebookMonitor(m, min_active_fraction=0.5, min_target_ppl=2.0)
    m.codebooks[0].counts[:6] += 1
    assert mon.update(1, target_ppl=8.0) == {
        "active_codewords": 6.0,
        "active_codewords_min": 6.0,
        "active_codewords_0": 6.0,
    }
    assert not mon.warnings
    m.codebooks[0].counts[:2] += 1
    out = mon.update(2, target_ppl=1.5)
    assert out["active_codewords"] == 2.0
    assert (
        len(mon.warnings) == 2 and "collapse" in mon.warnings[0] and "perplexity" in mon.warnings[1]
    )
    # a codebook nothing was assigned to (an idle teacher, frozen codebooks) is left out, not
    # reported as collapsed
    assert mon.update(3) == {} and len(mon.warnings) == 2


# ---------------------------------------------------------------------------------- distributed


def test_single_process_dist_info(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = distributed.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.is_distributed) == (0, 1, True, False)
    t = torch.tensor([2.0])
    assert distributed.all_reduce_sum(t).item() == 2.0
    assert distributed.reduce_scalars({"a": 1.0}, info.device) == {"a": 1.0}
    assert distributed.any_rank(True, info.device) is True


def test_world_size_without_master_is_clear_error(monkeypatch):
    from spidrkit.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        distributed.init_distributed("cpu")


def test_read_metrics_keeps_the_last_line_of_a_step_and_names_bad_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "split": "train", "loss": 3.0},
        {"step": 2, "split": "train", "loss": 2.0},
        {"step": 2, "split": "valid", "loss": 2.5},
        {"step": 2, "split": "train", "loss": 1.5},  # redone after an old-style resume
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert [r["loss"] for r in monitor.read_metrics(path, "train")] == [3.0, 1.5]
    assert len(monitor.read_metrics(path)) == 3
    assert monitor.last_train_metrics(path, ("loss", "absent")) == {"loss": 1.5}
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:5: not a JSON line"):
        monitor.read_metrics(path)


def test_time_major_conv_matches_conv1d_in_value_and_gradients():
    """The training path of the conv front end (weight gradient as one matrix product) computes
    the same convolution and gradients as Conv1d, with and without bias, kernel == stride or not."""
    from spidrkit.models.components import _TimeMajorConv

    torch.manual_seed(0)
    for c_in, c_out, kernel, stride, bias in [
        (3, 4, 3, 2, True),
        (1, 5, 10, 5, False),
        (3, 4, 2, 2, True),
    ]:
        x = torch.randn(2, 41, c_in, dtype=torch.float64, requires_grad=True)
        w = torch.randn(c_out, c_in, kernel, dtype=torch.float64, requires_grad=True)
        b = torch.randn(c_out, dtype=torch.float64, requires_grad=True) if bias else None
        inputs = (x, w) + ((b,) if b is not None else ())
        assert torch.autograd.gradcheck(
            lambda x, w, *b, s=stride: _TimeMajorConv.apply(x, w, b[0] if b else None, s), inputs
        )
        ref = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2)
        torch.testing.assert_close(_TimeMajorConv.apply(x, w, b, stride), ref)


def test_precision_auto_stays_fp32_on_cpu_and_emulated_bf16_warns(monkeypatch, caplog):
    from spidrkit.utils import precision

    cpu = torch.device("cpu")
    assert isinstance(precision.cpu_bf16_native(), bool)
    # bf16 measured no faster on real (variable-length) CPU training batches at 2 threads
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_bf16_native", lambda native=native: native)
        assert precision.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    precision._warn_emulated.cache_clear()
    with caplog.at_level("WARNING", logger="spidrkit.utils.precision"):
        assert precision.resolve_precision("bf16", cpu, "run.precision") == "bf16"
    assert "run.precision = 'bf16'" in caplog.text and "emulated" in caplog.text
