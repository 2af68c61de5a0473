"""Plots: PNGs written from ABX / unit-quality JSON, heatmap ordering."""

from __future__ import annotations

import numpy as np
import pytest

from spidrkit.cli.main import main
from spidrkit.eval.abx import ABXConfig, ABXResult, write_results_json
from spidrkit.eval.plots import phone_unit_order
from spidrkit.eval.unit_quality import UnitQuality, compute_unit_quality

pytest.importorskip("matplotlib")


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_abx_layers_png(tmp_path, capsys):
    for name, base in (("spidr", 4.0), ("dinosr", 5.0)):
        res = [
            ABXResult(
                error=(base + (layer - 6) ** 2 / 10) / 100,
                config=ABXConfig(),
                n_items=10,
                n_cells=2,
                n_triplets=30,
                label=name,
                layer=layer,
            )
            for layer in range(1, 9)
        ]
        write_results_json(res, tmp_path / f"{name}.json")
    out = tmp_path / "abx.png"
    args = ["plot", "abx-layers", str(tmp_path / "spidr.json"), str(tmp_path / "dinosr.json")]
    assert main(args + ["--out", str(out)]) == 0
    assert _is_png(out)
    no_layer = ABXResult(0.1, ABXConfig(), 1, 1, 1)
    write_results_json([no_layer], tmp_path / "nolayer.json")
    assert main(["plot", "abx-layers", str(tmp_path / "nolayer.json"), "--out", str(out)]) == 2
    assert "layer" in capsys.readouterr().err


def test_phone_unit_order_and_png(tmp_path):
    # phone b is the most frequent; unit 9 -> b, unit 3 -> a (mostly), unit 1 -> c
    labels = {"u": list("bbbbbbbbaaaaaacc")}
    units = {"u": [9, 9, 9, 9, 3, 3, 3, 1]}
    q = compute_unit_quality(labels, units)
    rows, cols = phone_unit_order(q)
    assert [q.phones[i] for i in rows] == ["b", "a", "c"]
    assert [q.units[j] for j in cols] == [9, 3, 1]
    path = tmp_path / "q.json"
    q.write_json(path)
    out = tmp_path / "pu.png"
    assert main(["plot", "phone-unit", str(path), "--out", str(out)]) == 0
    assert _is_png(out)
    assert np.array_equal(UnitQuality.read_json(path).counts, q.counts)
