"""Small-scale training controls: off by default (official keys and maths), effective when on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit import configs
from spidrkit.models.codebook import Codebook
from spidrkit.models.config import SpidRConfig, tiny_overrides
from spidrkit.models.spidr import SpidR
from spidrkit.train.config import load_train_config
from spidrkit.train.loop import fit
from spidrkit.train.monitor import read_metrics


def _perplexity(codes: torch.Tensor, size: int) -> float:
    p = torch.bincount(codes, minlength=size).float() / len(codes)
    return float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))


def _low_rank_frames(gen: torch.Generator, w: torch.Tensor) -> torch.Tensor:
    """Unclustered frames on a 4-d subspace of 32-d, standardised per channel (like the teacher's)."""
    x = torch.randn(500, 4, generator=gen) @ w + 0.1 * torch.randn(500, 32, generator=gen)
    return (x - x.mean(0)) / x.std(0)


def _run(cb: Codebook, steps: int = 300) -> float:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 32, generator=gen)
    for _ in range(steps):
        x = _low_rank_frames(gen, w)
        codes = cb.assign(x)
        cb.update(*cb.statistics(x, codes))
    return _perplexity(cb.assign(_low_rank_frames(gen, w)), cb.size)


def test_defaults_are_the_official_codebook():
    cfg = SpidRConfig(**tiny_overrides())
    assert cfg.codebook_distance == "euclidean" and cfg.codebook_balance == 0.0
    keys = set(SpidR(cfg).state_dict())
    assert not any(k.endswith(".bias") and "codebooks" in k for k in keys)
    # spidrkit-only fields stay out of the official config.json while at their defaults
    assert "codebook_distance" not in cfg.to_dict() and "codebook_balance" not in cfg.to_dict()
    on = SpidRConfig(**tiny_overrides(), codebook_distance="cosine", codebook_balance=0.01)
    assert on.to_dict()["codebook_distance"] == "cosine"
    assert SpidRConfig(**on.to_dict()) == on


def test_balance_bias_is_state_for_exact_resume():
    cfg = SpidRConfig(**tiny_overrides(), codebook_balance=0.01)
    model = SpidR(cfg)
    assert "codebooks.0.bias" in model.state_dict()
    cb = model.codebooks[0]
    x = torch.randn(64, 64)
    cb.update(*cb.statistics(x, cb.assign(x)))
    assert cb.bias.abs().sum() > 0
    assert abs(float(cb.bias.sum())) < 1e-5  # kept zero-mean: no drift


def test_cosine_assignment_ignores_centroid_norm():
    cb = Codebook(4, 2, 0.9, distance="cosine")
    cb.codebook.copy_(torch.tensor([[10.0, 0, 0, 0], [0, 0.1, 0, 0]]))
    # a frame nearer (in distance) to the short codeword 1 but pointing along the long codeword 0
    x = torch.tensor([[1.0, 0.5, 0, 0]])
    assert int(cb.assign(x)) == 0
    euclid = Codebook(4, 2, 0.9)
    euclid.codebook.copy_(cb.codebook)
    assert int(euclid.assign(x)) == 1


def test_balancing_keeps_codes_spread_on_unclustered_frames():
    torch.manual_seed(0)
    plain = _run(Codebook(32, 64, 0.9))
    torch.manual_seed(0)
    balanced = _run(Codebook(32, 64, 0.9, distance="cosine", balance=0.03))
    assert plain < 20  # the official rule collapses onto a few codewords here
    assert balanced > 2 * plain


def test_bad_values_are_reported():
    problems = SpidRConfig(codebook_distance="manhattan", codebook_balance=-1.0).validate()
    assert any("codebook_distance" in p for p in problems)
    assert any("codebook_balance" in p for p in problems)
    with pytest.raises(ValueError, match="distance"):
        Codebook(4, 2, 0.9, distance="manhattan")


def test_mfcc_warmup_targets_then_teacher_targets():
    cfg = SpidRConfig(
        **tiny_overrides(),
        warmup_targets="mfcc",
        warmup_target_steps=2,
        warmup_unmasked_weight=1.0,
    )
    torch.manual_seed(0)
    model = SpidR(cfg).train()
    assert {"warmup_codebook.codebook", "warmup_codebook.counts"} <= set(model.state_dict())
    wav = torch.randn(2, 16000)
    mask = torch.stack([torch.randperm(49)[:30] for _ in range(2)])
    before = model.warmup_codebook.counts.clone()
    loss, _ = model(wav, mask_indices=mask)
    assert loss.shape == (60,)
    assert not torch.equal(before, model.warmup_codebook.counts)  # MFCC codebook trained
    # masked + unmasked: about twice the uniform loss at initialisation
    assert 1.8 * math.log(16) < float(loss.detach().mean()) < 2.2 * math.log(16)
    model.current_step.fill_(2)  # warm-up over: the teacher's codes, masked frames only
    before = model.warmup_codebook.counts.clone()
    loss, _ = model(wav, mask_indices=mask)
    assert torch.equal(before, model.warmup_codebook.counts)
    assert float(loss.detach().mean()) < 1.2 * math.log(16)


def test_idle_teacher_in_warmup_changes_nothing_but_the_teacher_work():
    """MFCC targets for the whole run: skipping the teacher gives the same losses and gradients;
    the teacher's codebooks are left alone and their per-codebook perplexities are not reported."""
    cfg = SpidRConfig(
        **tiny_overrides(),
        warmup_targets="mfcc",
        warmup_target_steps=10,
        warmup_unmasked_weight=1.0,
        warmup_regression_weight=1.0,
    )
    torch.manual_seed(0)
    wav = torch.randn(2, 16000)
    mask = torch.stack([torch.randperm(49)[:30] for _ in range(2)])
    runs = {}
    for idle in (False, True):
        torch.manual_seed(1)
        model = SpidR(cfg).train()
        model.idle_teacher_in_warmup = idle
        books = [cb.counts.clone() for cb in model.codebook_modules()]
        torch.manual_seed(2)  # same dropout draws
        loss, monitors = model(wav, mask_indices=mask, target_waveforms=wav.flip(-1))
        loss.sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        changed = [not torch.equal(b, cb.counts) for b, cb in zip(books, model.codebook_modules())]
        runs[idle] = (loss.detach(), monitors, grads, changed)
    (loss_on, mon_on, grads_on, changed_on), (loss_off, mon_off, grads_off, changed_off) = (
        runs[False],
        runs[True],
    )
    assert torch.equal(loss_on, loss_off)
    assert grads_on.keys() == grads_off.keys()
    assert all(torch.equal(grads_on[n], grads_off[n]) for n in grads_on)
    assert all(changed_on) and not any(changed_off)
    assert mon_on["target_ppl"] == mon_off["target_ppl"]
    assert "target_ppl_0" in mon_on and "target_ppl_0" not in mon_off


def test_trainer_idles_the_teacher_only_when_no_self_distillation_follows(tmp_path):
    from spidrkit.train.trainer import Trainer

    base = ['run.device="cpu"', f'run.output_dir="{tmp_path}"', "data.num_workers=0"]
    shipped = load_train_config(configs.path("small"), base)
    assert shipped.model.warmup_target_steps == shipped.run.max_steps  # MFCC targets throughout
    assert Trainer(shipped).model.idle_teacher_in_warmup
    base.append("model.warmup_target_steps=800")
    for steps, idle in ((800, True), (1200, False)):
        cfg = load_train_config(configs.path("small"), [*base, f"run.max_steps={steps}"])
        assert Trainer(cfg).model.idle_teacher_in_warmup is idle


def _phone_like_corpus(folder: Path, n: int = 8) -> Path:
    """``n`` 2-3 s wavs of 20 "phones" each (50-150 ms of a pair of tones from 8 frequencies, 28
    pairs in all) with a little noise, and their manifest."""
    sf = pytest.importorskip("soundfile")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["fileid,path,num_samples"]
    for i in range(n):
        segments = []
        for _ in range(20):
            t = np.arange(int(rng.integers(800, 2400))) / 16000
            f1, f2 = rng.choice([200, 350, 500, 700, 900, 1200, 1600, 2200], 2, replace=False)
            segments.append(0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t))
        x = np.concatenate(segments)
        x += 0.02 * rng.standard_normal(len(x))
        sf.write(folder / f"u{i}.wav", x.astype(np.float32), 16000)
        lines.append(f"u{i},u{i}.wav,{len(x)}")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder / "train.csv"


def test_shipped_small_config_learns_and_keeps_its_codebooks(tmp_path):
    """`spidrkit train small` as shipped (model, codebooks, masking, lr), 80 steps with a 10-step
    warm-up instead of 100: the loss falls and no codebook collapses (with the official codebook
    rule, `model.codebook_distance="euclidean"` and no balancing, this run falls to 3-4 active
    codewords by step 25 and the test fails)."""
    manifest = _phone_like_corpus(tmp_path / "corpus")
    cfg = load_train_config(
        configs.path("small"),
        [
            f'data.train_manifests=["{manifest}"]',
            f'run.output_dir="{tmp_path / "run"}"',
            'run.device="cpu"',
            "run.progress=false",
            "run.tensorboard=false",
            "run.max_steps=80",
            "run.log_interval=10",
            "run.save_interval=80",
            "validation.interval=0",
            "data.num_workers=0",
            "data.max_batch_samples=64000",
            "optimizer.warmup_steps=10",
            # self-distillation for the last 10 steps, so the teacher runs (and is checked)
            # during the warm-up as well
            "model.warmup_target_steps=70",
        ],
    )
    assert cfg.model.codebook_distance == "cosine"
    fit(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == list(range(10, 81, 10))
    size = cfg.model.codebook_size
    # MFCC targets, masked and unmasked frames: 2 log(V) at the start, plus the regression of the
    # normalised MFCC frames (mean squared error about 1 from an untrained map), then falling
    assert cfg.model.warmup_regression_weight == 1.0
    warm = [r["loss"] for r in rows if r["step"] <= 70]
    assert warm[0] == pytest.approx(2 * math.log(size) + 1.0, abs=0.3)
    assert warm[-1] < warm[0] - 0.25, warm
    # every teacher codebook keeps using at least a quarter of its codewords, and its codes spread
    assert min(r["active_codewords_min"] for r in rows) >= size / 4
    assert min(r["target_ppl"] for r in rows) > 8
