"""Minibatch k-means: recovery of separated clusters, seeding, saving, frame sampling, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spidrkit.cli.main import main
from spidrkit.errors import CheckpointError, ConfigError, DataError
from spidrkit.units.kmeans import (
    KMeans,
    KMeansConfig,
    assign,
    fit_kmeans,
    kmeans_plus_plus,
    sample_frames,
)


def blobs(n_per: int = 300, k: int = 6, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    x = centers[labels] + 0.1 * torch.randn(k * n_per, dim, generator=g)
    perm = torch.randperm(len(x), generator=g)
    return x[perm], labels[perm], centers


def test_recovers_well_separated_clusters() -> None:
    x, labels, centers = blobs()
    km = fit_kmeans(x, KMeansConfig(k=6, batch_size=256, max_epochs=10, seed=1))
    # every true centre has a centroid next to it, and the partition is the true one
    d = torch.cdist(centers, km.centroids)
    assert d.min(1).values.max() < 0.1
    pred = km.predict(x)
    for c in range(6):
        assert pred[labels == c].unique().numel() == 1
    assert km.meta["inertia_per_frame"] == pytest.approx(8 * 0.01, rel=0.2)
    assert km.meta["num_frames"] == len(x) and km.meta["k"] == 6


def test_seeded_and_deterministic() -> None:
    x, _, _ = blobs(n_per=100, k=10)
    cfg = KMeansConfig(k=10, batch_size=128, max_epochs=3, seed=5)
    a, b = fit_kmeans(x, cfg), fit_kmeans(x, cfg)
    assert torch.equal(a.centroids, b.centroids)
    c = fit_kmeans(x, KMeansConfig(k=10, batch_size=128, max_epochs=3, seed=6))
    assert not torch.equal(a.centroids, c.centroids)


def test_kmeanspp_spreads_seeds_and_handles_duplicates() -> None:
    x, labels, _ = blobs(n_per=50, k=5)
    seeds = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(0))
    assert assign(seeds, x)[0].numel() == 5
    assert labels[assign(seeds, x)[0]].unique().numel() == 5  # one seed per blob
    dup = torch.zeros(20, 3)
    assert kmeans_plus_plus(dup, 4, torch.Generator().manual_seed(0)).shape == (4, 3)


def test_save_load_weights_only(tmp_path: Path) -> None:
    x, _, _ = blobs(n_per=50, k=4)
    km = fit_kmeans(
        x, KMeansConfig(k=4, batch_size=64, max_epochs=2), meta={"layer": 6, "source": "feats/l6"}
    )
    km.save(tmp_path / "km.pt")
    raw = torch.load(tmp_path / "km.pt", weights_only=True)
    assert set(raw) == {"centroids", "meta"} and raw["meta"]["layer"] == 6
    back = KMeans.load(tmp_path / "km.pt")
    assert torch.equal(back.centroids, km.centroids) and back.meta == km.meta
    assert back.meta["source"] == "feats/l6" and back.meta["inertia"] > 0
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pt"):
        KMeans.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        KMeans.load(tmp_path / "none.pt")


def test_errors_are_clear() -> None:
    with pytest.raises(DataError, match="at least 10 frames"):
        fit_kmeans(torch.randn(5, 2), KMeansConfig(k=10))
    with pytest.raises(ConfigError, match="k: 0 is not in"):
        fit_kmeans(torch.randn(5, 2), KMeansConfig(k=0))
    km = KMeans(torch.randn(3, 4), {"layer": 6})
    with pytest.raises(DataError, match="dimension 4"):
        km.predict(torch.randn(7, 5))


def test_sample_frames_caps_and_is_uniform() -> None:
    g = torch.Generator().manual_seed(0)
    files = [torch.full((n, 2), float(i)) for i, n in enumerate([100, 300, 600] * 20)]
    sample, seen = sample_frames(iter(files), 1000, seed=3)
    assert seen == 20 * 1000 and sample.shape == (1000, 2)
    share = torch.bincount(sample[:, 0].long() % 3, minlength=3).float() / 1000
    # frames of 600-frame files are 60% of all frames: a uniform sample keeps that share
    assert abs(float(share[2]) - 0.6) < 0.06 and abs(float(share[0]) - 0.1) < 0.04
    small, seen = sample_frames([torch.randn(5, 3, generator=g)], 100)
    assert small.shape == (5, 3) and seen == 5
    with pytest.raises(DataError, match="dimension"):
        sample_frames([torch.randn(5, 3), torch.randn(5, 4)], 100)


def test_cli_kmeans_on_features_folder(tmp_path: Path) -> None:
    x, _, _ = blobs(n_per=200, k=4, dim=5)
    feats = tmp_path / "feats" / "layer6"
    for i, chunk in enumerate(x.split(100)):
        (feats / "spk").mkdir(parents=True, exist_ok=True)
        torch.save(chunk.clone(), feats / "spk" / f"u{i}.pt")
    out = tmp_path / "km.pt"
    assert (
        main(
            [
                "kmeans",
                "--features",
                str(feats),
                "-k",
                "4",
                "--out",
                str(out),
                "--max-frames",
                "500",
                "--batch-size",
                "100",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    km = KMeans.load(out)
    assert km.k == 4 and km.dim == 5
    assert km.meta["layer"] == 6 and km.meta["num_frames"] == 500 and km.meta["frames_seen"] == 800
