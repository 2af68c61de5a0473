"""Target views: the teacher and warm-up targets read another view of each utterance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

from spidrkit.data import (  # noqa: E402
    AudioItem,
    DataConfig,
    MaskingConfig,
    collate,
    make_dataloader,
    scan_directory,
    write_manifest,
)
from spidrkit.errors import DataError  # noqa: E402
from spidrkit.models import SpidR, SpidRConfig  # noqa: E402


@pytest.fixture(scope="module")
def two_views(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    (root / "noisy").mkdir()
    (root / "clean").mkdir()
    for i in range(12):
        n = int(rng.integers(6000, 20000))
        clean = (np.sin(np.arange(n) * 0.05 * (i + 1)) * 0.3).astype(np.float32)
        sf.write(root / "clean" / f"u{i:02d}.wav", clean, 16000)
        noisy = clean + rng.standard_normal(n).astype(np.float32) * 0.1
        sf.write(root / "noisy" / f"u{i:02d}.wav", noisy, 16000)
    noisy = write_manifest(scan_directory(root / "noisy", show_progress=False), root / "n.csv")
    clean = write_manifest(scan_directory(root / "clean", show_progress=False), root / "c.csv")
    return noisy, clean


def _cfg(**kw):
    args = dict(
        max_batch_samples=60_000,
        min_sample_size=1000,
        max_sample_size=8000,
        num_buckets=2,
        num_workers=0,
    )
    args.update(kw)
    return DataConfig(**args)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_views_are_cropped_alike(mode):
    rng = np.random.default_rng(1)
    items = []
    for i, n in enumerate([9000, 12000, 7000]):
        w = rng.standard_normal(n).astype(np.float32)
        items.append(AudioItem(i, f"u{i}", w, w * 2.0))  # target = 2 x waveform, sample for sample
    batch = collate(
        items,
        rng=np.random.default_rng(3),
        batch_mode=mode,
        max_sample_size=8000,
        masking=MaskingConfig(),
    )
    assert batch.target_waveforms is not None
    assert torch.equal(batch.target_waveforms, batch.waveforms * 2.0)
    plain = collate(
        [AudioItem(it.index, it.fileid, it.waveform) for it in items],
        rng=np.random.default_rng(3),
        batch_mode=mode,
        max_sample_size=8000,
        masking=MaskingConfig(),
    )
    # the same crops and masks as without a target view
    assert torch.equal(plain.waveforms, batch.waveforms)
    assert torch.equal(plain.mask_indices, batch.mask_indices)
    assert plain.target_waveforms is None


def test_loader_reads_parallel_views(two_views):
    noisy, clean = two_views
    batches = list(make_dataloader(noisy, _cfg(), MaskingConfig(), seed=0, targets=clean))
    assert batches and all(b.target_waveforms is not None for b in batches)
    b = batches[0]
    assert b.target_waveforms.shape == b.waveforms.shape
    assert not torch.equal(b.target_waveforms, b.waveforms)
    # views of one utterance are strongly correlated (same crop)
    corr = torch.corrcoef(torch.stack([b.waveforms[0], b.target_waveforms[0]]))[0, 1]
    assert corr > 0.8


def test_mismatched_views_are_refused(two_views, tmp_path):
    noisy, clean = two_views
    text = clean.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(text[:-1]) + "\n")
    short = tmp_path / "short.csv"
    text_fixed = [line.replace("clean/", str(clean.parent / "clean") + "/") for line in text]
    with pytest.raises(DataError, match="target views"):
        make_dataloader(noisy, _cfg(), MaskingConfig(), seed=0, targets=short)
    swapped = text_fixed[:1] + text_fixed[2:3] + text_fixed[1:2] + text_fixed[3:]
    (tmp_path / "swapped.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(DataError, match="does not match"):
        make_dataloader(noisy, _cfg(), MaskingConfig(), seed=0, targets=tmp_path / "swapped.csv")


def test_config_needs_one_target_manifest_per_train_manifest():
    errors = DataConfig(train_manifests=("a.csv", "b.csv"), target_manifests=("c.csv",)).validate()
    assert any("target_manifests" in e for e in errors)


def _tiny_model(**kw):
    torch.manual_seed(0)
    cfg = SpidRConfig(
        extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 2, 2), (16, 2, 2)],
        encoder_embed_dim=32,
        encoder_num_layers=2,
        encoder_num_heads=2,
        encoder_ff_interm_features=64,
        encoder_pos_conv_kernel=8,
        encoder_pos_conv_groups=4,
        codebook_size=8,
        num_codebooks=2,
        encoder_dropout=0.0,
        **kw,
    )
    return SpidR(cfg)


@pytest.mark.parametrize("warmup", ["none", "mfcc"])
def test_teacher_reads_the_target_view(warmup):
    model = _tiny_model(warmup_targets=warmup, warmup_target_steps=100)
    model.eval()  # no codebook updates: compare pure functions
    wav = torch.randn(2, 4000)
    other = torch.randn(2, 4000)
    t = model.num_frames(4000)
    mask = torch.stack([torch.arange(0, t, 2)] * 2)
    base, _ = model(wav, mask_indices=mask)
    same, _ = model(wav, mask_indices=mask, target_waveforms=wav)
    assert torch.equal(base, same)  # the target view = the input: the official objective
    diff, _ = model(wav, mask_indices=mask, target_waveforms=other)
    assert not torch.allclose(base, diff)


def test_regression_warmup_adds_a_dense_loss_and_trains_its_maps():
    model = _tiny_model(
        warmup_targets="mfcc", warmup_target_steps=100, warmup_regression_weight=1.0
    )
    assert len(model.warmup_regressors) == 2
    wav = torch.randn(2, 4000)
    t = model.num_frames(4000)
    mask = torch.stack([torch.arange(0, t, 2)] * 2)
    loss, _ = model(wav, mask_indices=mask)
    loss.sum().backward()
    assert model.warmup_regressors[0].weight.grad.abs().sum() > 0
    plain = _tiny_model(warmup_targets="mfcc", warmup_target_steps=100)
    assert not hasattr(plain, "warmup_regressors")  # off: the state dict is unchanged
    # past the warm-up the regression term is gone
    model.current_step.fill_(100)
    model.zero_grad()
    loss, _ = model(wav, mask_indices=mask)
    loss.sum().backward()
    assert model.warmup_regressors[0].weight.grad is None
