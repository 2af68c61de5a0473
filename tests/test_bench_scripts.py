"""The benchmark scripts run: bench/abx.py (alone and against a stand-in fastabx worker) and
bench/gpu_check.py on a CPU (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_FASTABX = """
def zerospeech_abx(item, root, *, max_size_group, max_x_across=None, speaker="within",
                   context="within", distance="angular", frequency=50, seed=0, device=None,
                   progress=True, **kw):
    assert frequency == 50 and device == "cpu" and not progress
    assert max_size_group is None or max_size_group >= 2
    return 0.25
"""
FAKE_FASTABX_MAIN = """
import json, sys
args = sys.argv[1:]
assert args[args.index("--device") + 1] == "cpu" and "--quiet" in args
assert args[args.index("--output") + 1] == "json" and args[args.index("--frequency") + 1] == "50"
print(json.dumps({"speaker": args[args.index("--speaker") + 1], "score": 0.25}))
"""


def run(args: list[str], env: dict | None = None, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_abx_alone_and_side_by_side(tmp_path):
    common = ["bench/abx.py", "--task", "gaussian", "--items", "300", "--dim", "8"]
    common += ["--workdir", str(tmp_path), "--modes", "within/within,across/any", "--repeats", "2"]
    alone = run([*common, "--json", str(tmp_path / "a.json")])
    assert "| within/within | ZeroSpeech |" in alone and "| across/any | none |" in alone
    runs = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert len(runs) == 4 and all(len(r["spidrkit"]) == 2 for r in runs)
    # a stand-in fastabx package: checks the worker protocol, not fastabx itself
    site = tmp_path / "site"
    (site / "fastabx").mkdir(parents=True)
    (site / "fastabx" / "__init__.py").write_text(FAKE_FASTABX)
    dist = site / "fastabx-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fastabx\nVersion: 0.0.1\n")
    both = run(
        [*common, "--fastabx-python", sys.executable, "--json", str(tmp_path / "b.json")],
        env={"PYTHONPATH": str(site)},
    )
    assert "fastabx 0.0.1" in both and "| 25.000 |" in both
    for r in json.loads((tmp_path / "b.json").read_text())["runs"]:
        assert [e for _, e in r["fastabx"]] == [0.25, 0.25]
        assert r["ratios"] == [f[0] / o[0] for f, o in zip(r["fastabx"], r["spidrkit"])]
    # whole processes: `spidrkit abx` against `python -m fastabx`, same ABX as in-process
    (site / "fastabx" / "__main__.py").write_text(FAKE_FASTABX_MAIN)
    whole = run(
        [*common, "--modes", "across/any", "--subsample", "off", "--whole-process",
         "--fastabx-python", sys.executable, "--json", str(tmp_path / "c.json")],
        env={"PYTHONPATH": str(site)},
    )  # fmt: skip
    assert "whole processes" in whole and "| `import torch` |" in whole
    c = json.loads((tmp_path / "c.json").read_text())["runs"]
    assert [(r["mode"], r["subsampling"]) for r in c] == [
        ("across/any", "none"),
        ("`import torch`", ""),
    ]
    assert [e for _, e in c[0]["spidrkit"]] == [e for _, e in runs[3]["spidrkit"]]
    assert [e for _, e in c[0]["fastabx"]] == [0.25, 0.25] and len(c[0]["ratios"]) == 2


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tmp_path):
    out = run(
        ["bench/gpu_check.py", "--device", "cpu", "--json", str(tmp_path / "g.json")],
        timeout=600,
    )
    rows = json.loads((tmp_path / "g.json").read_text())
    assert {r["check"].split()[0] for r in rows} == set("abcde"), out
    assert all(r["status"] in ("PASS", "") for r in rows), out
    assert "| b pretraining | tiny, bf16 + compile" in out


@pytest.mark.slow
def test_pretrain_study_rows_resume_and_table(tmp_path):
    pytest.importorskip("espeakng_loader")
    from spidrkit.cli.main import main

    corpus = tmp_path / "corpus"
    assert main(["synth", "--preset", "tiny", "--out", str(corpus), "--no-progress"]) == 0
    args = ["bench/pretrain_study.py", "--corpus", str(corpus), "--out", str(tmp_path / "s")]
    args += ["--plan", "quick", "--steps", "6", "--variant", "small", "--seeds", "0", "1"]
    run([*args, "--threads", "1"])
    rows = [json.loads(x) for x in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"], r["steps"]) for r in rows] == [
        ("small", 0, 6),
        ("small", 1, 6),
    ]
    assert set(rows[0]["abx"]) == {"1", "2", "3", "4"} and "target_ppl" in rows[0]
    assert set(rows[0]["abx_across"]) == {"1", "2", "3", "4"} and rows[0]["corpus"] == "corpus"
    run([*args, "--threads", "1"])  # finished runs are skipped, not appended again
    assert len((tmp_path / "s" / "results.jsonl").read_text().splitlines()) == 2
    table = run(["bench/pretrain_study.py", "--out", str(tmp_path / "s"), "--table"])
    assert "| corpus: small (6 steps) | 2 |" in table


def test_train_step_against_a_commit(tmp_path):
    """--against HEAD: both sides build the same model from the same seed, so the first losses are
    equal; the table has one row per config and a ratio with its spread."""
    if subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True
    ).returncode:
        pytest.skip("not a git checkout")
    out = run(
        ["bench/train_step.py", "--against", "HEAD", "--configs", "tiny", "--rounds", "2"]
        + ["--steps", "1", "--warmup", "1", "--threads", "1", "--seconds", "1"]
    )
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].endswith(")") and "x (" in cells[3]
    here, there = (float(v) for v in cells[4].split(" / "))
    assert here == pytest.approx(there, rel=1e-5)


def test_loader_bench_reports_every_format(tmp_path):
    out = run(
        ["bench/loader.py", "--seconds", "4", "--repeats", "1", "--max-batch-samples", "200000"]
        + ["--workdir", str(tmp_path)]
    )
    for source in ("WAV 16 kHz", "FLAC 16 kHz", "WAV 44.1 kHz", "FLAC 44.1 kHz"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {source} |"))
        rate, batches, workers = (c.strip() for c in row.strip("|").split("|")[1:4])
        assert float(rate) > 0 and int(batches) >= 1 and int(workers) >= 1


@pytest.mark.slow
def test_adapt_study_rows_resume_and_table(tmp_path):
    pytest.importorskip("espeakng_loader")
    from spidrkit.cli.main import main
    from spidrkit.train.checkpoint import find_latest_checkpoint

    corpus = tmp_path / "corpus"
    assert main(["synth", "--preset", "tiny", "--out", str(corpus), "--no-progress"]) == 0
    source = tmp_path / "source"
    sets = [f"data.train_manifests={corpus / 'train' / 'manifest.csv'}", f"run.output_dir={source}"]
    sets += ["run.max_steps=4", "run.progress=false", "run.tensorboard=false"]
    sets += ["data.max_batch_samples=48000", "data.min_sample_size=4000"]
    assert main(["train", "tiny", *sum((["--set", s] for s in sets), [])]) == 0
    ckpt = find_latest_checkpoint(source / "checkpoints")
    args = ["bench/adapt_study.py", "--source", str(ckpt), "--target", str(corpus)]
    args += ["--out", str(tmp_path / "s"), "--minutes", "0.2", "--seeds", "0", "--steps", "3"]
    args += ["--threads", "1", "--adapt-set", "run.init_kmeans_seconds=5"]
    run(args, timeout=900)
    rows = [json.loads(x) for x in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["unadapted", "adapt_0.2min_s0", "scratch_0.2min_s0"]
    assert set(rows[1]["within"]) == set(rows[1]["across"]) == {"1", "2", "3", "4"}
    run(args, timeout=900)  # finished runs are skipped, not appended again
    assert len((tmp_path / "s" / "results.jsonl").read_text().splitlines()) == 3
    table = run(["bench/adapt_study.py", "--out", str(tmp_path / "s"), "--table"])
    assert "| adapt | 0.2 min | 1 |" in table
