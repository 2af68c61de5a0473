"""`spidrkit report`: one self-contained HTML page from the files a run writes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from spidrkit.errors import DataError
from spidrkit.eval.abx.result import ABXConfig, ABXResult, write_results_json
from spidrkit.eval.unit_quality import UnitQuality
from spidrkit.report import find_run_files, write_report
from spidrkit.train.monitor import read_metrics

pytest.importorskip("matplotlib")


def _fake_run(root, *, collapsed: bool) -> None:
    (root / "pretrain").mkdir(parents=True)
    (root / "pretrain" / "config.json").write_text(json.dumps({"model": {"codebook_size": 64}}))
    with open(root / "pretrain" / "metrics.jsonl", "w") as f:
        for step in range(20, 220, 20):
            ppl = 3.0 if collapsed else 40.0 + step / 20
            row = {"step": step, "split": "train", "loss": 4.0 - step / 100, "target_ppl": ppl}
            row.update({f"target_ppl_{i}": ppl + i for i in range(3)})
            row.update({f"active_codewords_{i}": 10.0 + i for i in range(3)})
            row["active_codewords"] = 11.0
            f.write(json.dumps(row) + "\n")
        # a step logged again after a resume: the later line wins
        f.write(json.dumps({"step": 200, "split": "train", "loss": 1.0, "target_ppl": ppl}) + "\n")
        f.write(json.dumps({"step": 200, "split": "valid", "dev/loss": 2.0}) + "\n")
    ev = root / "eval"
    ev.mkdir()
    cfg = ABXConfig()
    trained = [
        ABXResult(error=e, config=cfg, n_items=9, n_cells=3, n_triplets=20, label="SpidR", layer=k)
        for k, e in ((1, 0.2), (2, 0.1))
    ]
    untrained = [
        ABXResult(
            error=0.45, config=cfg, n_items=9, n_cells=3, n_triplets=20, label="init", layer=k
        )
        for k in (1, 2)
    ]
    mfcc = ABXResult(error=0.01, config=cfg, n_items=9, n_cells=3, n_triplets=20, label="MFCC")
    write_results_json(trained, ev / "abx_spidr.json")
    write_results_json(untrained, ev / "abx_untrained.json")
    write_results_json([mfcc], ev / "abx_mfcc.json")
    q = UnitQuality(
        pnmi=0.3,
        phone_purity=0.4,
        cluster_purity=0.2,
        perplexity=30.0,
        active_codewords=3,
        vocab_size=4,
        bitrate=50.0,
        units_per_second=25.0,
        n_frames=100,
        n_utterances=2,
        phones=["a", "b"],
        units=[0, 1, 3],
        counts=np.array([[30, 5, 15], [2, 40, 8]]),
    )
    q.write_json(ev / "unit_quality.json")
    (ev / "slm").mkdir()
    (ev / "slm" / "scores.json").write_text(
        json.dumps(
            {"results": [{"name": "lexical/dev", "accuracy": 0.61, "num_pairs": 40, "by": {}}]}
        )
    )


def test_report_embeds_every_section(tmp_path):
    _fake_run(tmp_path, collapsed=False)
    files = find_run_files(tmp_path)
    assert files.metrics == tmp_path / "pretrain" / "metrics.jsonl"
    assert len(files.abx) == 3 and files.unit_quality and files.slm_scores
    out = write_report(tmp_path)
    page = out.read_text()
    assert out == tmp_path / "report.html"
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4  # curves, ABX, heatmap, sLM
    assert "http://" not in page and "https://" not in page  # self-contained
    for text in ("Training curves", "ABX per layer", "P(phone | unit)", "lexical/dev", "61.0"):
        assert text in page
    assert "healthy" in page and "of V = 64" in page


def test_collapsed_run_is_called_collapsed(tmp_path):
    _fake_run(tmp_path, collapsed=True)
    assert "collapsed" in write_report(tmp_path, tmp_path / "r.html").read_text()


def test_metrics_resume_duplicates_keep_the_last_line(tmp_path):
    _fake_run(tmp_path, collapsed=False)
    rows = read_metrics(tmp_path / "pretrain" / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == list(range(20, 220, 20))
    assert rows[-1]["loss"] == 1.0


def test_curves_only_for_a_bare_training_folder(tmp_path):
    _fake_run(tmp_path, collapsed=False)
    train_dir = tmp_path / "pretrain"
    page = write_report(train_dir, tmp_path / "t.html").read_text()
    assert page.count("data:image/png") == 1


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no metrics.jsonl"):
        find_run_files(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        find_run_files(tmp_path / "missing")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _fake_run(tmp_path, collapsed=False)
    page = write_report(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a page with pictures, not blank


def test_codebook_size_from_a_training_folder_config(tmp_path):
    _fake_run(tmp_path, collapsed=False)
    train_dir = tmp_path / "pretrain"
    (train_dir / "config.json").unlink()
    (train_dir / "checkpoints").mkdir()
    (train_dir / "checkpoints" / "config.json").write_text(
        json.dumps({"run": {}, "model": {"codebook_size": 64}})
    )
    assert "of V = 64" in write_report(train_dir, tmp_path / "t.html").read_text()


def _abx(error, speaker, label, layer=None):
    cfg = ABXConfig(speaker=speaker)
    return ABXResult(
        error=error, config=cfg, n_items=9, n_cells=3, n_triplets=20, label=label, layer=layer
    )


@pytest.mark.parametrize(
    "across_error, verdict", [(0.15, "beats every reference"), (0.3, "does not beat")]
)
def test_difficulty_table_within_and_across(tmp_path, across_error, verdict):
    """The report says, per speaker mode, whether the trained model beats MFCC and the untrained
    model, and the ABX figure has one panel per mode."""
    _fake_run(tmp_path, collapsed=False)
    ev = tmp_path / "eval"
    write_results_json(
        [_abx(0.05, "within", "SpidR", 1), _abx(across_error, "across", "SpidR", 1)],
        ev / "abx_spidr.json",
    )
    write_results_json(
        [_abx(0.08, "within", "MFCC", 0), _abx(0.2, "across", "MFCC", 0)], ev / "abx_mfcc.json"
    )
    page = write_report(tmp_path).read_text()
    assert "within speaker: <b>SpidR</b> 5.00 % vs MFCC 8.00 %" in page
    across = page.split("across speaker: <b>SpidR</b>")[1].split("<br>")[0].split("</p>")[0]
    assert verdict in across
    assert "best ABX error %" in page


def test_lm_references_sit_beside_the_run_units(tmp_path):
    _fake_run(tmp_path, collapsed=False)
    refs = {
        "MFCC units": {"results": [{"name": "lexical/dev", "accuracy": 0.52, "num_pairs": 40}]},
        "gold phones": {"results": [{"name": "lexical/dev", "accuracy": 0.93, "num_pairs": 40}]},
    }
    (tmp_path / "summary.json").write_text(json.dumps({"slm_references": refs}))
    # a reference LM's own scores.json is not taken for the run's
    (tmp_path / "references" / "slm_mfcc").mkdir(parents=True)
    (tmp_path / "references" / "slm_mfcc" / "scores.json").write_text(
        json.dumps(refs["MFCC units"])
    )
    assert find_run_files(tmp_path).slm_scores == tmp_path / "eval" / "slm" / "scores.json"
    page = write_report(tmp_path).read_text()
    row = re.search(r"<tr><td>lexical/dev</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td>([^<]*)</td>", row) == ["40", "61.0", "52.0", "93.0"]
    assert "<th>MFCC units</th><th>gold phones</th>" in page


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_loss_panel_shows_the_uniform_guess_only_for_a_code_loss(tmp_path, weight):
    import matplotlib.pyplot as plt

    from spidrkit.report import _model_config, _regression_weight, training_curves_figure

    _fake_run(tmp_path, collapsed=False)
    config = {"model": {"codebook_size": 64, "warmup_regression_weight": weight}}
    (tmp_path / "pretrain" / "config.json").write_text(json.dumps(config))
    model = _model_config(find_run_files(tmp_path / "pretrain"))
    assert _regression_weight(model) == weight
    rows = read_metrics(tmp_path / "pretrain" / "metrics.jsonl", "train")
    fig = training_curves_figure(rows, 64, _regression_weight(model))
    loss_axes = fig.axes[0]
    labels = [line.get_label() for line in loss_axes.get_lines()]
    plt.close(fig)
    assert ("uniform guess" in labels) == (weight == 0.0)
    assert ("MFCC regression" in loss_axes.get_title()) == (weight > 0)
