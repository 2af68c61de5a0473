"""`spidrkit demo --plan quick`: the whole path on the tiny synthetic corpus, end to end."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("espeakng_loader")


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path) -> None:
    from spidrkit.cli.main import main

    assert main(["demo", "--plan", "quick", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["abx"]["SpidR"]["within"]) == {"1", "2", "3", "4"}
    assert set(summary["abx"]["SpidR"]["across"]) == {"1", "2", "3", "4"}
    assert set(summary["abx"]["MFCC"]) == {"within", "across"}
    assert 0.0 <= summary["unit_quality"]["pnmi"] <= 1.0
    assert (tmp_path / "eval" / "abx_layers.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "phone_unit.png").stat().st_size > 1000
    kinds = {task["kind"] for task in summary["slm"]["results"]}
    assert kinds == {"lexical", "syntactic", "storycloze"}
    assert (tmp_path / "eval" / "slm" / "scores.json").is_file()
    refs = summary["slm_references"]
    assert {t["kind"] for t in refs["MFCC units"]["results"]} == kinds
    assert [t["kind"] for t in refs["gold phones"]["results"]] == ["lexical"]
    assert "gold phones" in (tmp_path / "report.html").read_text()


def test_plans_train_the_shipped_small_recipe_with_overrides(tmp_path) -> None:
    """The demo reads configs/small.toml (no Python copy); another step count scales its schedule."""
    from spidrkit.demo import PLANS, pretrain_overrides
    from spidrkit.train.config import load_train_config

    for split in ("train", "dev"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "manifest.csv").write_text("fileid,path,num_samples\n")
    recipe = load_train_config("small").to_dict()
    for name, plan in PLANS.items():
        cfg = load_train_config("small", pretrain_overrides(plan, tmp_path, tmp_path / "out"))
        got = cfg.to_dict()
        assert got["data"]["train_manifests"] == [str(tmp_path / "train" / "manifest.csv")]
        assert got["data"]["target_manifests"] == []  # no clean view in this corpus
        assert got["run"]["output_dir"] == str(tmp_path / "out")
        steps = plan.train_steps or recipe["run"]["max_steps"]
        opt = got["optimizer"]
        assert opt["warmup_steps"] + opt["hold_steps"] + opt["decay_steps"] == steps
        assert got["model"]["warmup_target_steps"] == steps  # MFCC targets throughout
        assert got["masking"] == recipe["masking"] and opt["lr"] == recipe["optimizer"]["lr"]
        if name == "demo":  # the recipe as shipped
            assert {k: v for k, v in got.items() if k not in ("data", "run")} == {
                k: v for k, v in recipe.items() if k not in ("data", "run")
            }
        size = 16 if name == "quick" else recipe["model"]["codebook_size"]
        assert cfg.model.codebook_size == size
