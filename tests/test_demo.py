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
