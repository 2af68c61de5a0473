"""Small-scale training controls: off by default (official keys and maths), effective when on."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.models.codebook import Codebook
from spidrkit.models.config import SpidRConfig, tiny_overrides
from spidrkit.models.spidr import SpidR


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


def test_shipped_small_config_is_the_demo_recipe(tmp_path):
    from pathlib import Path

    from spidrkit import configs
    from spidrkit.config import read_toml
    from spidrkit.demo import PLANS, pretrain_config
    from spidrkit.train.config import load_train_config

    shipped = read_toml(configs.path("small"))
    demo = pretrain_config(PLANS["demo"], Path("corpus"), Path("runs/small"))
    for section in ("model", "optimizer", "masking"):
        assert shipped[section] == demo[section], section
    for key in ("max_steps", "precision"):
        assert shipped["run"][key] == demo["run"][key]
    cfg = load_train_config(configs.path("small"), ["data.train_manifests=x.csv"])
    assert cfg.model.codebook_distance == "cosine" and cfg.model.warmup_target_steps == 800
