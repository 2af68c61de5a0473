"""BucketBatchSampler: caps, buckets, rank disjointness, determinism, mid-epoch resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spidrkit.data import BucketBatchSampler, DataConfig
from spidrkit.errors import DataError


def _lengths(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(500, 40_000, size=n)


def _sampler(lengths, **kw):
    args = dict(
        max_batch_samples=120_000,
        min_sample_size=1000,
        max_sample_size=30_000,
        num_buckets=20,
        seed=3,
    )
    args.update(kw)
    return BucketBatchSampler(lengths, **args)


def _batches(sampler):
    return [key.indices for key in sampler]


def test_cap_min_max_and_coverage(caplog):
    lengths = _lengths()
    with caplog.at_level(logging.INFO, logger="spidrkit.data.sampler"):
        s = _sampler(lengths)
    short = int((lengths < 1000).sum())
    assert short > 0 and s.num_dropped == short
    assert f"dropped {short} of 600 items shorter than min_sample_size=1000" in caplog.text
    batches = _batches(s)
    assert len(batches) == len(s) == s.num_batches_per_rank
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))  # each item at most once
    assert set(seen) == set(np.flatnonzero(lengths >= 1000).tolist())  # one rank: all kept items
    for b in batches:
        eff = np.minimum(lengths[list(b)], 30_000)
        assert len(b) * eff.max() <= 120_000
        assert lengths[list(b)].min() >= 1000


def test_buckets_group_similar_lengths():
    lengths = _lengths(2000)
    spread = []
    for b in _batches(_sampler(lengths, num_buckets=50)):
        eff = np.minimum(lengths[list(b)], 30_000)
        spread.append(eff.max() - eff.min())
    assert np.mean(spread) < 0.05 * 30_000
    unbucketed = []
    for b in _batches(_sampler(lengths, num_buckets=1)):
        eff = np.minimum(lengths[list(b)], 30_000)
        unbucketed.append(eff.max() - eff.min())
    assert np.mean(unbucketed) > 5 * np.mean(spread)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_and_equal(world_size):
    lengths = _lengths()
    per_rank = [
        _batches(_sampler(lengths, rank=r, world_size=world_size)) for r in range(3)[:world_size]
    ]
    counts = {len(b) for b in per_rank}
    assert len(counts) == 1 and counts.pop() > 0
    items = [i for batches in per_rank for b in batches for i in b]
    assert len(items) == len(set(items))
    total = len(_batches(_sampler(lengths)))
    assert sum(len(b) for b in per_rank) == total - total % world_size


def test_deterministic_per_seed_and_epoch():
    lengths = _lengths()
    a = _batches(_sampler(lengths, epoch=1))
    assert a == _batches(_sampler(lengths, epoch=1))
    s = _sampler(lengths)
    s.set_epoch(1)
    assert _batches(s) == a
    assert _batches(_sampler(lengths, epoch=2)) != a
    assert _batches(_sampler(lengths, epoch=1, seed=4)) != a
    keys = list(_sampler(lengths, epoch=1, rank=1, world_size=2))
    assert [k.batch_id for k in keys] == [2 * j + 1 for j in range(len(keys))]
    assert [k.index for k in keys] == list(range(len(keys)))


def test_no_shuffle_orders_by_length():
    lengths = _lengths()
    s = _sampler(lengths, shuffle=False)
    firsts = [np.minimum(lengths[list(b)], 30_000).max() for b in _batches(s)]
    assert firsts == sorted(firsts)


def test_resume_mid_epoch():
    lengths = _lengths()
    straight = list(_sampler(lengths, epoch=2, rank=1, world_size=2))
    s = _sampler(lengths, epoch=2, rank=1, world_size=2)
    it = iter(s)
    for _ in range(3):
        next(it)
    state = s.state_dict()
    assert state["batches_consumed"] == 3 and state["epoch"] == 2
    assert s.state_dict(batches_consumed=2)["batches_consumed"] == 2
    resumed = _sampler(lengths, rank=1, world_size=2)
    resumed.load_state_dict(state)
    assert len(resumed) == len(straight) - 3
    assert list(resumed) == straight[3:]  # same batches, same global ids
    with pytest.raises(DataError, match="seed: saved 3, now 9"):
        _sampler(lengths, seed=9, rank=1, world_size=2).load_state_dict(state)
    with pytest.raises(DataError, match="world_size: saved 2, now 1"):
        _sampler(lengths).load_state_dict(state)


def test_errors():
    with pytest.raises(DataError, match="no batch for rank"):
        _sampler(np.full(3, 20_000), world_size=4, rank=0)
    with pytest.raises(DataError, match="longer than max_batch_samples"):
        _sampler(np.full(3, 20_000), max_sample_size=None, max_batch_samples=10_000)
    with pytest.raises(DataError, match="rank 2 is not in"):
        _sampler(_lengths(), rank=2, world_size=2)


def test_data_config_validate():
    assert DataConfig().validate() == []
    errors = DataConfig(
        min_sample_size=10, max_sample_size=5, max_batch_samples=1, num_buckets=0
    ).validate()
    assert len(errors) == 3
    assert any(e.startswith("max_sample_size") for e in errors)


def test_data_config_from_toml(tmp_path):
    from spidrkit.config import load_config
    from spidrkit.errors import ConfigError

    path = tmp_path / "data.toml"
    path.write_text('train_manifests = ["a.csv", "b.csv"]\nbatch_mode = "pad"\nnum_buckets = 10\n')
    cfg = load_config(DataConfig, path, ["max_sample_size=16000"])
    assert cfg.train_manifests == ("a.csv", "b.csv") and cfg.batch_mode == "pad"
    assert cfg.max_sample_size == 16000 and cfg.num_buckets == 10
    with pytest.raises(ConfigError) as exc:
        load_config(DataConfig, path, ["batch_mode=cut", "max_batch_samples=10", "bogus=1"])
    text = str(exc.value)
    assert "batch_mode" in text and "max_batch_samples" in text and "bogus: unknown key" in text
