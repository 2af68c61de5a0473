"""Unit-LM data, training (resume equals a straight run) and the lm-train -> slm-eval path."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from spidrkit.cli.main import main
from spidrkit.config import from_dict
from spidrkit.errors import DataError
from spidrkit.lm.config import LMTrainConfig
from spidrkit.lm.data import LMBatches, UnitRecord, read_units_jsonl
from spidrkit.lm.train import build_datasets, load_lm, train_lm
from spidrkit.lm.vocab import PAD, encode
from spidrkit.train.checkpoint import list_checkpoints, load_checkpoint
from spidrkit.units.kmeans import KMeans

NUM_UNITS = 16


def _language(seed: int = 0, num_words: int = 12):
    """Words = fixed unit strings without repeats inside; sentences = random word sequences."""
    rng = random.Random(seed)
    words = []
    while len(words) < num_words:
        w = [rng.randrange(NUM_UNITS) for _ in range(rng.randint(4, 6))]
        if all(a != b for a, b in zip(w, w[1:])) and w not in words:
            words.append(w)
    return rng, words


def _write_units(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for audio, units in rows:
            f.write(json.dumps({"audio": audio, "units": units}) + "\n")
    return path


def _train_rows(rng, words, n):
    rows = []
    for i in range(n):
        units = [u for _ in range(rng.randint(3, 8)) for u in rng.choice(words)]
        # 20 ms frames before deduplication: every unit repeated 1-3 times
        rows.append((f"train/utt{i}.wav", [u for u in units for _ in range(rng.randint(1, 3))]))
    return rows


def test_read_units_deduplicates_and_reports_bad_lines(tmp_path):
    path = _write_units(tmp_path / "u.jsonl", [("a", [1, 1, 2, 2, 1]), ("b", [])])
    recs = read_units_jsonl(path)
    assert [r.units for r in recs] == [[1, 2, 1], []]
    assert read_units_jsonl(path, dedup=False)[0].units == [1, 1, 2, 2, 1]
    (tmp_path / "bad.jsonl").write_text('{"audio": "a", "units": [1]}\n{"audio": "b"}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_units_jsonl(tmp_path / "bad.jsonl")


def test_packing_makes_every_token_a_target_once():
    recs = [UnitRecord(str(i), list(range(i % 7))) for i in range(23)]
    batches = LMBatches(recs, 8, mode="pack", block_size=10, max_tokens=30)
    stream = torch.cat([encode(r.units, 8) for r in recs])
    targets = torch.cat([batches.batch(i)[1].flatten() for i in range(len(batches))])
    assert targets[targets != PAD].tolist() == stream[1:].tolist()
    for i in range(len(batches)):
        inputs, tgt = batches.batch(i)
        assert inputs.shape[0] <= 3 and inputs.shape[1] <= 10
        real = tgt != PAD
        assert torch.equal(inputs[:, 1:][real[:, 1:]], tgt[:, :-1][real[:, 1:]])  # shifted


def test_bucketing_respects_max_tokens_and_keeps_rows_whole():
    rng = random.Random(0)
    recs = [
        UnitRecord(str(i), [rng.randrange(5) for _ in range(rng.randint(0, 40))]) for i in range(50)
    ]
    batches = LMBatches(recs, 5, mode="bucket", block_size=64, max_tokens=120)
    seen = 0
    for i in range(len(batches)):
        inputs, targets = batches.batch(i)
        assert inputs.numel() <= 120
        seen += int((targets != PAD).sum())
    assert seen == sum(len(r.units) + 1 for r in recs) == batches.num_tokens


def test_epoch_order_is_seeded_and_split_over_ranks():
    recs = [UnitRecord(str(i), [1, 2, 3]) for i in range(40)]
    batches = LMBatches(recs, 4, mode="bucket", block_size=8, max_tokens=20)  # 5 rows per batch
    assert len(batches) == 8
    a = batches.epoch_order(0, seed=1, rank=0, world_size=3)
    b = batches.epoch_order(0, seed=1, rank=1, world_size=3)
    assert len(a) == len(b) == 2 and not set(a) & set(b)
    assert batches.epoch_order(0, 1, 0, 3) == a
    assert batches.epoch_order(1, 1) != batches.epoch_order(0, 1)


def _cfg(tmp_path, train, out, **run):
    return from_dict(
        LMTrainConfig,
        {
            "preset": "lm_tiny",
            "model": {"num_units": NUM_UNITS, "dropout": 0.1},
            "data": {
                "train": str(train),
                "valid_fraction": 0.1,
                "batching": "pack",
                "block_size": 32,
                "max_tokens": 128,
            },
            "optimizer": {"lr": 3e-3, "warmup_steps": 2},
            "validation": {"interval": 2},
            "run": {
                "output_dir": str(out),
                "device": "cpu",
                "log_interval": 1,
                "save_interval": 2,
                "keep_last": 0,
                "tensorboard": False,
                **run,
            },
        },
    )


def test_resume_equals_straight_run(tmp_path):
    rng, words = _language()
    train = _write_units(tmp_path / "train.jsonl", _train_rows(rng, words, 60))
    out = tmp_path / "run"
    train_lm(_cfg(tmp_path, train, out, max_steps=4), show_progress=False)
    straight = load_checkpoint(out / "checkpoint_00000004.pt")
    assert [s for s, _ in list_checkpoints(out)] == [2, 4]
    (out / "checkpoint_00000004.pt").unlink()
    result = train_lm(_cfg(tmp_path, train, out, max_steps=4), show_progress=False)
    resumed = load_checkpoint(out / "checkpoint_00000004.pt")
    assert result.step == 4
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert straight["sampler"] == resumed["sampler"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {m["split"] for m in metrics} == {"train", "valid"}


def test_fault_point_kills_lm_runs_and_resume_is_bitwise_equal(tmp_path):
    """The fault-injection point of the one loop works for the unit LM too: killed after step 3,
    then while writing checkpoint 4, then resumed: the weights equal a straight run's."""
    import os
    import signal
    import subprocess
    import sys

    from spidrkit.config import dump_toml, to_dict
    from spidrkit.train import faults

    rng, words = _language()
    train = _write_units(tmp_path / "train.jsonl", _train_rows(rng, words, 60))
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")

    def lm_train(out, fault=None):
        toml = tmp_path / f"{out}.toml"
        toml.write_text(dump_toml(to_dict(_cfg(tmp_path, train, tmp_path / out, max_steps=4))))
        cmd = [sys.executable, "-m", "spidrkit.cli.main", "lm-train", str(toml), "--no-progress"]
        extra = {faults.ENV: fault} if fault else {}
        return subprocess.run(
            cmd, env={**env, **extra}, capture_output=True, text=True, timeout=300
        )

    assert lm_train("straight").returncode == 0
    for fault, kept in (("step:3", [2]), ("save:4", [2])):
        proc = lm_train("killed", fault)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        assert [s for s, _ in list_checkpoints(tmp_path / "killed")] == kept
    assert list((tmp_path / "killed").glob(".checkpoint_00000004.pt.*.tmp"))
    proc = lm_train("killed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_00000004.pt")
    resumed = load_checkpoint(tmp_path / "killed" / "checkpoint_00000004.pt")
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert straight["sampler"] == resumed["sampler"]


def test_unit_range_checked_against_the_model(tmp_path):
    train = _write_units(tmp_path / "t.jsonl", [("a", [1, 2, 40]), ("b", [3, 4])])
    with pytest.raises(DataError, match="unit 40 found but model.num_units = 16 is too small") as e:
        train_lm(_cfg(tmp_path, train, tmp_path / "r", max_steps=1), show_progress=False)
    assert "at least 41" in str(e.value) and "\n" not in str(e.value)


def _cfg_without_num_units(tmp_path, train, out, **data):
    cfg = _cfg(tmp_path, train, out, max_steps=1)
    return dataclasses.replace(
        cfg, model={"dropout": 0.1}, data=dataclasses.replace(cfg.data, **data)
    )


def test_num_units_come_from_the_units_or_the_kmeans(tmp_path):
    rows = [(f"u{i}", [1, 2, 40, 3, i % 5]) for i in range(20)]
    train = _write_units(tmp_path / "t.jsonl", rows)
    cfg = _cfg_without_num_units(tmp_path, train, tmp_path / "a")
    model_cfg, _, _ = build_datasets(cfg)
    assert model_cfg.num_units == 41  # largest unit + 1, no --set model.num_units needed
    train_lm(cfg, show_progress=False)
    assert load_lm(tmp_path / "a" / "best.pt").cfg.num_units == 41
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"]["num_units"] == 41  # the run folder records what the data gave

    KMeans(torch.zeros(64, 3), {"k": 64}).save(tmp_path / "km.pt")
    cfg = _cfg_without_num_units(tmp_path, train, tmp_path / "b", kmeans=tmp_path / "km.pt")
    assert build_datasets(cfg)[0].num_units == 64  # the k-means knows units the data misses

    KMeans(torch.zeros(32, 3), {"k": 32}).save(tmp_path / "km32.pt")
    cfg = _cfg_without_num_units(tmp_path, train, tmp_path / "c", kmeans=tmp_path / "km32.pt")
    with pytest.raises(DataError, match="unit 40 found but the k-means .*km32.pt has k = 32"):
        build_datasets(cfg)


def test_train_then_slm_eval_lexical(tmp_path, capsys):
    """A tiny LM trained on sentences of 12 'words' tells them from non-words (end to end)."""
    rng, words = _language()
    train = _write_units(tmp_path / "units" / "train.jsonl", _train_rows(rng, words, 400))
    run_dir = tmp_path / "runs" / "lm"
    code = main(
        [
            "lm-train",
            "configs/lm_tiny.toml",
            "--no-progress",
            "--set",
            f"data.train={json.dumps(str(train))}",
            "--set",
            f"run.output_dir={json.dumps(str(run_dir))}",
            "--set",
            "run.max_steps=250",
            "--set",
            "validation.interval=125",
        ]
    )
    assert code == 0
    assert (run_dir / "best.pt").is_file() and (run_dir / "config.json").is_file()

    # the lexical task: each word vs a non-word of the same length, spoken by two "voices"
    folder = tmp_path / "sLM21" / "lexical" / "dev"
    folder.mkdir(parents=True)
    gold, task_units = ["filename,id,voice,correct,word,phones,frequency,length"], []
    for i, w in enumerate(words):
        fake = list(w)
        while fake in words or any(a == b for a, b in zip(fake, fake[1:])):
            fake = [rng.randrange(NUM_UNITS) for _ in w]
        for voice in ("v1", "v2"):
            for name, units, correct in [(f"w{i}{voice}", w, 1), (f"n{i}{voice}", fake, 0)]:
                gold.append(f"{name},{i},{voice},{correct},w{i},p,{i % 3},{len(w)}")
                # voices differ in durations only, like two speakers saying the same units
                reps = 1 if voice == "v1" else 2
                task_units.append(
                    (f"lexical/dev/{name}.wav", [u for u in units for _ in range(reps)])
                )
    (folder / "gold.csv").write_text("\n".join(gold) + "\n")
    units = _write_units(tmp_path / "units" / "tasks.jsonl", task_units)
    out = tmp_path / "results"
    capsys.readouterr()
    code = main(
        [
            "slm-eval",
            "--lm",
            str(run_dir),
            "--units",
            str(units),
            "--lexical",
            str(folder),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "sWUGGY all" in table and "sWUGGY in-vocab" in table
    report = json.loads((out / "scores.json").read_text())
    (lex,) = report["results"]
    assert lex["name"] == "lexical/dev" and lex["num_pairs"] == 24 and lex["num_items"] == 12
    assert lex["accuracy"] >= 0.8, lex
    assert 0.0 <= lex["by"]["in_vocab"] <= 1.0
    lines = (out / "lexical" / "dev.txt").read_text().splitlines()
    assert len(lines) == 48 and all(len(x.split(" ")) == 2 for x in lines)
    tsv = (out / "lexical" / "dev.loglik.tsv").read_text().splitlines()
    assert tsv[0] == "filename\tlogprob_sum\tlogprob_mean\tnum_tokens" and len(tsv) == 49
    # the same LM through the Python API agrees with the files
    model = load_lm(run_dir / "best.pt")
    assert model.cfg.num_units == NUM_UNITS and not model.training
    shutil.rmtree(out)


def test_audio_to_scores_units_file_and_encoder_agree(tmp_path):
    """audio -> `spidrkit units` -> slm-eval --units equals slm-eval --model (on-the-fly units)."""
    sf = pytest.importorskip("soundfile")
    import numpy as np

    from spidrkit.lm.config import LM_PRESETS
    from spidrkit.lm.model import UnitLM
    from spidrkit.lm.train import save_lm
    from spidrkit.models import PRESETS, build_model
    from spidrkit.models.checkpoint import save_model

    torch.manual_seed(0)
    encoder = build_model("spidr", PRESETS["spidr_tiny"].config).eval()
    ckpt = save_model(encoder, tmp_path / "enc" / "ckpt.pt")
    lm_path = save_lm(tmp_path / "lm.pt", UnitLM(LM_PRESETS["lm_tiny"]))  # 16 units, as V=16
    folder = tmp_path / "sSC"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        for label in ("true", "false"):
            n = int(rng.integers(6000, 12000))
            sf.write(folder / f"s{i}_{label}.wav", 0.3 * rng.standard_normal(n), 16000)
    units = tmp_path / "units.jsonl"
    common = ["--device", "cpu"]
    assert (
        main(
            [
                "units",
                str(folder),
                "--model",
                str(ckpt),
                "--layer",
                "4",
                "--out",
                str(units),
                "--no-progress",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "slm-eval",
                "--lm",
                str(lm_path),
                "--units",
                str(units),
                "--ssc",
                str(folder),
                "--out",
                str(tmp_path / "a"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "slm-eval",
                "--lm",
                str(lm_path),
                "--model",
                str(ckpt),
                "--layer",
                "4",
                "--ssc",
                str(folder),
                "--out",
                str(tmp_path / "b"),
                *common,
            ]
        )
        == 0
    )
    a = (tmp_path / "a" / "sSC.loglik.tsv").read_text()
    assert a == (tmp_path / "b" / "sSC.loglik.tsv").read_text()
    assert len(a.splitlines()) == 7
    (result,) = json.loads((tmp_path / "a" / "scores.json").read_text())["results"]
    assert result["num_pairs"] == 3 and result["kind"] == "storycloze"
    assert (
        main(
            [
                "slm-eval",
                "--lm",
                str(lm_path),
                "--model",
                str(ckpt),
                "--ssc",
                str(folder),
                *common,
            ]
        )
        == 2
    )  # --layer missing: one-line error


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_process_with_accumulation(tmp_path):
    """torchrun, 2 CPU ranks x 1 micro-batch == 1 process x 2 micro-batches (same batches, no
    dropout): the loss normalisation does not depend on how tokens are split."""
    import os
    import subprocess
    import sys

    rng, words = _language()
    train = _write_units(tmp_path / "train.jsonl", _train_rows(rng, words, 100))
    sets = [
        "--set",
        f"data.train={json.dumps(str(train))}",
        "--set",
        "run.max_steps=4",
        "--set",
        "run.save_interval=4",
        "--set",
        "data.max_tokens=256",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "spidrkit.cli.main",
        "lm-train",
        "configs/lm_tiny.toml",
        *sets,
        "--set",
        f"run.output_dir={json.dumps(str(tmp_path / 'ddp'))}",
    ]
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    assert (
        main(
            [
                "lm-train",
                "configs/lm_tiny.toml",
                *sets,
                "--set",
                "run.grad_accum=2",
                "--set",
                f"run.output_dir={json.dumps(str(tmp_path / 'one'))}",
            ]
        )
        == 0
    )
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint_00000004.pt")["model"]
    b = load_checkpoint(tmp_path / "one" / "checkpoint_00000004.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_lm_config_speaks_pretrainings_run_vocabulary():
    from spidrkit.errors import ConfigError
    from spidrkit.train.config import CommonRunConfig, RunConfig

    cfg = from_dict(LMTrainConfig, {}, ["run.resume=false", "run.progress=false"])
    assert isinstance(cfg.run, CommonRunConfig) and isinstance(RunConfig(), CommonRunConfig)
    assert (cfg.run.resume, cfg.run.progress, cfg.run.wandb_project) == (False, False, None)
    assert cfg.run.output_dir == Path("runs/lm") and RunConfig().output_dir == Path("runs/spidr")
    for old in ("optim.lr=1", "run.log_every=3", "run.valid_every=7"):  # no renamed keys
        with pytest.raises(ConfigError, match="unknown"):
            from_dict(LMTrainConfig, {}, [old])
    with pytest.raises(ConfigError, match="run.device"):
        from_dict(LMTrainConfig, {}, ["run.device=tpu"])


def test_lm_speaks_the_one_precision_vocabulary(tmp_path):
    from spidrkit.errors import ConfigError
    from spidrkit.lm.model import UnitLM
    from spidrkit.lm.train import build_engine
    from spidrkit.train.distributed import DistInfo

    def engine(precision: str):
        cfg = from_dict(LMTrainConfig, {"preset": "lm_tiny", "run": {"precision": precision}})
        return build_engine(cfg, UnitLM(cfg.model_config()), DistInfo())

    assert engine("auto").precision == "fp32"  # on the CPU
    fp16 = engine("fp16")
    assert fp16.precision == "fp16" and fp16.scaler.is_enabled()
    assert not engine("bf16").scaler.is_enabled()
    with pytest.raises(ConfigError, match="run.precision"):
        from_dict(LMTrainConfig, {"run": {"precision": "fp8"}})
