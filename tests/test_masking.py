"""Span masking: shapes, fairseq statistics, padding, strategies, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from spidrkit.config import from_dict
from spidrkit.data import MaskingConfig, compute_mask_indices, indices_to_mask, mask_rng
from spidrkit.errors import ConfigError


def _check_rows(idx, sizes):
    assert idx.dtype == np.int64
    for row, size in zip(idx, sizes, strict=True):
        assert np.all(np.diff(row) > 0)  # sorted, unique
        assert row.min() >= 0 and row.max() < size


def test_shape_and_same_m_per_row():
    idx = compute_mask_indices((6, 300), None, MaskingConfig(), rng=mask_rng(0, 0, 0))
    assert idx.shape[0] == 6 and 0 < idx.shape[1] < 300
    _check_rows(idx, [300] * 6)


@pytest.mark.parametrize("frames", [250, 500, 1000])
def test_default_fraction_is_55_to_60_percent(frames):
    # one row: no subsampling to the batch minimum, the number docs/data.md quotes
    fractions = [
        compute_mask_indices((1, frames), None, rng=mask_rng(1, 0, b)).shape[1] / frames
        for b in range(200)
    ]
    assert 0.55 <= np.mean(fractions) <= 0.60, np.mean(fractions)


def test_batch_subsampling_lowers_fraction_a_little():
    fractions = [
        compute_mask_indices((8, 500), None, rng=mask_rng(2, 0, b)).shape[1] / 500
        for b in range(100)
    ]
    assert 0.50 <= np.mean(fractions) <= 0.56, np.mean(fractions)


def test_static_spans_cover_mask_length():
    # few spans in a long row: masked runs are multiples of mask_length, except at the end
    cfg = MaskingConfig(mask_prob=0.05, mask_length=7, min_masks=1)
    idx = compute_mask_indices((1, 2000), None, cfg, rng=mask_rng(0, 0, 3))[0]
    mask = indices_to_mask(idx[None], 2000)[0]
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert len(runs) >= 5
    assert all(r % 7 == 0 or r > 7 for r in runs)


def test_min_masks_and_tiny_rows():
    cfg = MaskingConfig(mask_prob=0.0, min_masks=2)
    idx = compute_mask_indices((2, 100), None, cfg, rng=mask_rng(0, 0, 0))
    assert 10 < idx.shape[1] <= 20  # two spans of 10, possibly overlapping
    for frames in (1, 2, 3, 9):
        idx = compute_mask_indices((3, frames), None, rng=mask_rng(0, 0, frames))
        assert idx.shape[0] == 3 and idx.shape[1] >= 1
        _check_rows(idx, [frames] * 3)
    assert compute_mask_indices((2, 0), None, rng=mask_rng(0, 0, 0)).shape == (2, 0)


def test_padding_counts_from_valid_frames():
    valid = np.array([400, 120, 400])
    idx = compute_mask_indices((3, 400), valid, rng=mask_rng(0, 0, 1))
    _check_rows(idx, valid)
    # M is limited by the short row (about 55% of 120 frames)
    assert 40 <= idx.shape[1] <= 90


@pytest.mark.parametrize(
    ("selection", "other"), [("uniform", 2.0), ("normal", 3.0), ("poisson", 0.0)]
)
def test_other_selections(selection, other):
    cfg = MaskingConfig(mask_selection=selection, mask_other=other)
    fractions = []
    for b in range(50):
        idx = compute_mask_indices((1, 500), None, cfg, rng=mask_rng(0, 0, b))
        _check_rows(idx, [500])
        fractions.append(idx.shape[1] / 500)
    assert 0.4 < np.mean(fractions) < 0.7


def test_no_overlap_keeps_min_space():
    cfg = MaskingConfig(mask_prob=0.3, no_mask_overlap=True, mask_min_space=3)
    for b in range(20):
        idx = compute_mask_indices((1, 400), None, cfg, rng=mask_rng(0, 0, b))[0]
        mask = indices_to_mask(idx[None], 400)[0]
        edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        assert np.all(ends - starts == 10)  # never merged
        assert np.all(starts[1:] - ends[:-1] >= 3)


def test_deterministic_from_seed_epoch_batch():
    def draw(*key):
        return compute_mask_indices((4, 200), np.array([200, 150, 180, 90]), rng=mask_rng(*key))

    np.testing.assert_array_equal(draw(0, 1, 5), draw(0, 1, 5))
    for other in [(1, 1, 5), (0, 2, 5), (0, 1, 6)]:
        a, b = draw(0, 1, 5), draw(*other)
        assert a.shape != b.shape or not np.array_equal(a, b)


def test_masking_config_validation():
    assert MaskingConfig().validate() == []
    with pytest.raises(ConfigError) as exc:
        from_dict(MaskingConfig, {"mask_prob": 1.5, "mask_length": 0, "mask_selection": "nope"})
    text = str(exc.value)
    assert "mask_prob" in text and "mask_length" in text and "mask_selection" in text
