"""AudioDataset / collate / make_dataloader: crops, padding, masks, workers, resume, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")

from spidrkit.audio import load_audio, standardize  # noqa: E402
from spidrkit.data import (  # noqa: E402
    AudioItem,
    DataConfig,
    MaskingConfig,
    collate,
    conv_num_frames,
    make_dataloader,
    mask_rng,
    scan_directory,
    write_manifest,
)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    for i in range(24):
        n = int(rng.integers(3000, 20000))
        wav = (rng.standard_normal(n) * rng.uniform(0.05, 0.5) + rng.uniform(-0.1, 0.1)).astype(
            np.float32
        )
        sf.write(root / f"u{i:02d}.wav", wav, 16000)
    sf.write(root / "short.wav", np.zeros(500, np.float32) + 0.1, 16000)  # < min_sample_size
    sf.write(
        root / "stereo44k.wav", rng.standard_normal((30000, 2)).astype(np.float32) * 0.1, 44100
    )
    return write_manifest(scan_directory(root, show_progress=False), root / "train.csv")


def _cfg(**kw):
    args = dict(
        max_batch_samples=60_000,
        min_sample_size=1000,
        max_sample_size=16_000,
        num_buckets=4,
        num_workers=0,
    )
    args.update(kw)
    return DataConfig(**args)


def _run(path, cfg, **kw):
    args = dict(seed=7, epoch=0)
    args.update(kw)
    return list(make_dataloader(path, cfg, MaskingConfig(), **args))


def test_conv_num_frames():
    assert conv_num_frames(16000) == 49 and conv_num_frames(400) == 1 and conv_num_frames(399) == 0
    assert conv_num_frames(np.array([16000, 320_000])).tolist() == [49, 999]


def test_crop_mode_batches(manifest_path):
    batches = _run(manifest_path, _cfg())
    assert batches
    seen = []
    for b in batches:
        assert b.attention_mask is None
        assert b.waveforms.dtype == torch.float32 and b.waveforms.ndim == 2
        size = b.waveforms.shape[1]
        assert size <= 16_000 and b.lengths.tolist() == [size] * len(b)
        assert b.num_frames == conv_num_frames(size)
        assert b.mask_indices.dtype == torch.int64 and b.mask_indices.shape[0] == len(b)
        assert int(b.mask_indices.max()) < b.num_frames
        assert len(b) * size <= 60_000
        seen += b.fileids
    assert "short" not in seen and "stereo44k" in seen
    assert [b.index for b in batches] == list(range(len(batches)))


def test_items_standardised_before_crop(manifest_path):
    from spidrkit.data import AudioDataset, read_manifest

    m = read_manifest(manifest_path)
    ds = AudioDataset(m, _cfg())
    item = ds[3]
    ref = standardize(load_audio(m.path(3)))
    np.testing.assert_array_equal(item.waveform, ref)
    assert abs(float(item.waveform.mean())) < 1e-4 and abs(float(item.waveform.std()) - 1) < 1e-3


def test_pad_mode_attention_mask(manifest_path):
    batches = _run(manifest_path, _cfg(batch_mode="pad"))
    padded = 0
    for b in batches:
        size = b.waveforms.shape[1]
        assert int(b.lengths.max()) == size
        if b.attention_mask is None:
            assert (b.lengths == size).all()
            continue
        padded += 1
        assert b.attention_mask.shape == (len(b), 1, 1, b.num_frames)
        assert b.attention_mask.dtype == torch.bool
        valid = b.attention_mask[:, 0, 0].sum(-1)
        assert valid.tolist() == [conv_num_frames(int(n)) for n in b.lengths]
        for row, n in enumerate(b.lengths.tolist()):
            assert torch.all(b.waveforms[row, n:] == 0)
            assert int(b.mask_indices[row].max()) < int(valid[row])
    assert padded > 0


def test_collate_crops_at_random_offsets():
    wav = np.arange(1000, dtype=np.float32)
    items = [AudioItem(0, "a", wav), AudioItem(1, "b", wav[:600])]
    starts = set()
    for b in range(20):
        batch = collate(items, rng=mask_rng(0, 0, b), masking=None)
        assert batch.waveforms.shape == (2, 600) and batch.mask_indices is None
        starts.add(int(batch.waveforms[0, 0]))
        assert torch.equal(batch.waveforms[1], torch.from_numpy(wav[:600]))
    assert len(starts) > 5


def test_workers_do_not_change_batches(manifest_path):
    a = _run(manifest_path, _cfg(num_workers=0), epoch=1)
    b = _run(manifest_path, _cfg(num_workers=2), epoch=1)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.fileids == y.fileids
        assert torch.equal(x.waveforms, y.waveforms)
        assert torch.equal(x.mask_indices, y.mask_indices)


def test_resume_mid_epoch_reproduces_batches(manifest_path):
    cfg = _cfg()
    full = _run(manifest_path, cfg, epoch=3, rank=1, world_size=2)
    assert len(full) >= 3
    loader = make_dataloader(
        manifest_path, cfg, MaskingConfig(), seed=7, epoch=3, rank=1, world_size=2
    )
    it = iter(loader)
    first = [next(it), next(it)]
    state = loader.sampler.state_dict(first[-1].index + 1)
    resumed = _run(
        manifest_path,
        cfg,
        epoch=state["epoch"],
        rank=1,
        world_size=2,
        start_batch=state["batches_consumed"],
    )
    assert len(resumed) == len(full) - 2
    for x, y in zip(full[2:], resumed, strict=True):
        assert (x.batch_id, x.index) == (y.batch_id, y.index)
        assert torch.equal(x.waveforms, y.waveforms)
        assert torch.equal(x.mask_indices, y.mask_indices)
    other_epoch = _run(manifest_path, cfg, epoch=4, rank=1, world_size=2)
    assert [b.fileids for b in other_epoch] != [b.fileids for b in full]


def test_ranks_get_disjoint_equal_shares(manifest_path):
    cfg = _cfg()
    shares = [_run(manifest_path, cfg, rank=r, world_size=3) for r in range(3)]
    assert len({len(s) for s in shares}) == 1
    ids = [f for s in shares for b in s for f in b.fileids]
    assert len(ids) == len(set(ids))


def test_batch_to_device(manifest_path):
    b = _run(manifest_path, _cfg())[0]
    moved = b.to("cpu")
    assert torch.equal(moved.waveforms, b.waveforms) and moved.fileids == b.fileids
    if torch.cuda.is_available():
        assert b.to("cuda").mask_indices.is_cuda
