"""Plots: what the PNGs show (axes, series, heatmap cells, pixel colours), heatmap ordering."""

from __future__ import annotations

import numpy as np
import pytest

from spidrkit.cli.main import main
from spidrkit.eval.abx import ABXConfig, ABXResult, write_results_json
from spidrkit.eval.plots import phone_unit_order
from spidrkit.eval.unit_quality import UnitQuality, compute_unit_quality

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting code closes, kept for inspection."""
    kept = []
    close = plt.close

    def keep(fig=None):
        kept.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return kept


def _pixels_near(png, rgb, tol: float = 0.02) -> int:
    img = mpimg.imread(png)[..., :3]
    return int((np.abs(img - np.asarray(rgb)).max(-1) < tol).sum())


def _abx_error(base: float, layer: int) -> float:
    return (base + (layer - 6) ** 2 / 10) / 100


def test_abx_layers_png(tmp_path, capsys, figures):
    for name, base in (("spidr", 4.0), ("dinosr", 5.0)):
        res = [
            ABXResult(
                error=_abx_error(base, layer),
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
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (fig,) = figures
    (ax,) = fig.axes[:1]
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "ABX error (%)"
    assert "within speaker, within context" in ax.get_title()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["dinosr", "spidr"]  # one series per file
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dinosr", "spidr"]
    for name, base in (("spidr", 4.0), ("dinosr", 5.0)):
        line = lines[name]
        assert list(line.get_xdata()) == list(range(1, 9))
        want = [100 * _abx_error(base, layer) for layer in range(1, 9)]
        assert np.allclose(line.get_ydata(), want)
    assert sorted(t.get_text() for t in ax.texts) == ["4.00", "5.00"]  # each best layer marked
    assert list(ax.get_xticks()) == list(range(1, 9))
    # in the image: the two series' colours (C0, C1), not a third one (C2)
    c0, c1, c2 = (to_rgb(f"C{i}") for i in range(3))
    assert to_rgb(lines["dinosr"].get_color()) == c0 and to_rgb(lines["spidr"].get_color()) == c1
    assert _pixels_near(out, c0) > 300 and _pixels_near(out, c1) > 300
    assert _pixels_near(out, c2) == 0

    no_layer = ABXResult(0.1, ABXConfig(), 1, 1, 1)
    write_results_json([no_layer], tmp_path / "nolayer.json")
    assert main(["plot", "abx-layers", str(tmp_path / "nolayer.json"), "--out", str(out)]) == 2
    assert "layer" in capsys.readouterr().err


def test_phone_unit_order_and_png(tmp_path, figures):
    # phone b is the most frequent; unit 9 -> b, unit 3 -> a, unit 1 -> c (units at 20 ms, labels at
    # 10 ms: each unit covers two labels)
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
    assert np.array_equal(UnitQuality.read_json(path).counts, q.counts)

    (fig,) = figures
    ax = fig.axes[0]
    (image,) = ax.get_images()
    assert np.allclose(image.get_array(), np.eye(3))  # each unit is one phone: a diagonal
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["9", "3", "1"]
    assert ax.get_title() == "P(phone | unit), PNMI 1.000"
    assert ax.get_xlabel().startswith("unit (3 active")
    # in the image: 3 of the 9 cells at the top of the colour scale, 6 at the bottom
    viridis = colormaps["viridis"]
    top, bottom = _pixels_near(out, viridis(1.0)[:3]), _pixels_near(out, viridis(0.0)[:3])
    assert bottom > 10_000 and top / bottom == pytest.approx(0.5, abs=0.05)
