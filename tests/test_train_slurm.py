"""SLURM through submitit: options, time parsing, requeue protocol, and a debug-executor run."""

from __future__ import annotations

import argparse
import os

import pytest

from spidrkit.errors import ConfigError
from spidrkit.train.slurm import SlurmOptions, TrainJob, make_executor, parse_time, submit
from train_helpers import TINY_TOML, make_corpus, tiny_overrides

submitit = pytest.importorskip("submitit")


def test_parse_time_slurm_formats():
    assert [parse_time(t) for t in ["90", "45:30", "1:30:00", "2-00:00:00", "1-2", "1-2:30"]] == [
        90,
        46,
        90,
        2880,
        1560,
        1590,
    ]
    with pytest.raises(ConfigError, match="--time"):
        parse_time("soon")


def test_cli_options_reach_the_slurm_executor(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"  # submitit looks for srun before building a SLURM executor
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    from spidrkit.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            str(TINY_TOML),
            "--slurm",
            "--nodes",
            "2",
            "--gpus-per-node",
            "8",
            "--partition",
            "gpu",
            "--time",
            "3-00:00:00",
            "--slurm-arg",
            "slurm_exclusive=true",
        ]
    )
    opts = cli._slurm_options(args)
    assert (opts.nodes, opts.gpus_per_node, opts.partition, opts.time_min) == (2, 8, "gpu", 4320)
    ex = make_executor(tmp_path, opts, cluster="slurm")
    params = ex._executor.parameters
    assert params["nodes"] == 2 and params["ntasks_per_node"] == 8 and params["gpus_per_node"] == 8
    assert params["partition"] == "gpu" and params["time"] == 4320 and params["exclusive"] is True
    assert params["signal_delay_s"] == 120


def test_checkpoint_requeues_the_same_job():
    job = TrainJob("cfg.toml", ["run.max_steps=5"])
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function.config_path == "cfg.toml"
    assert delayed.function.overrides == ["run.max_steps=5"]


def test_submit_runs_and_resumes_with_debug_executor(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", n=4)
    out = tmp_path / "run"
    sets = tiny_overrides(manifest, out, **{"run.max_steps": 1})
    assert submit(TINY_TOML, sets, SlurmOptions(), cluster="debug").result() == 1
    sets = tiny_overrides(manifest, out, **{"run.max_steps": 2})  # a requeued job continues
    assert submit(TINY_TOML, sets, SlurmOptions(), cluster="debug").result() == 2
    assert (out / "checkpoints" / "checkpoint_00000002.pt").is_file()
    with pytest.raises(ConfigError, match="run.nope"):
        submit(TINY_TOML, ["run.nope=1"], SlurmOptions(), cluster="debug")
