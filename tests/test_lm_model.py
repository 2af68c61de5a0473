"""Unit LM: shapes, causality, presets, vocabulary and batched log-likelihood scoring."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.config import from_dict
from spidrkit.errors import ConfigError, DataError
from spidrkit.lm.config import LM_PRESETS, LMTrainConfig, UnitLMConfig
from spidrkit.lm.model import UnitLM
from spidrkit.lm.score import score_sequences
from spidrkit.lm.vocab import BOS, EOS, NUM_SPECIALS, decode, encode
from spidrkit.units.files import dedup_list

TINY = LM_PRESETS["lm_tiny"]


def test_forward_shape_and_tied_weights():
    torch.manual_seed(0)
    model = UnitLM(TINY)
    tokens = torch.randint(0, TINY.vocab_size, (3, 11))
    assert model(tokens).shape == (3, 11, TINY.num_units + NUM_SPECIALS)
    assert model.output_projection.weight is model.embed_tokens.weight
    untied = UnitLM(UnitLMConfig(**{**TINY.__dict__, "tie_embeddings": False}))
    assert untied.output_projection.weight is not untied.embed_tokens.weight
    assert untied.num_parameters() == model.num_parameters() + TINY.vocab_size * TINY.embed_dim


def test_causal_future_tokens_do_not_change_the_past():
    torch.manual_seed(0)
    model = UnitLM(TINY).eval()
    a = torch.randint(NUM_SPECIALS, TINY.vocab_size, (1, 12))
    b = a.clone()
    b[0, 7:] = torch.randint(NUM_SPECIALS, TINY.vocab_size, (5,))
    la, lb = model(a), model(b)
    torch.testing.assert_close(la[:, :7], lb[:, :7])
    assert not torch.allclose(la[:, 7:], lb[:, 7:])


def test_opt125m_preset_size():
    cfg = LM_PRESETS["opt_125m"]
    assert (cfg.num_layers, cfg.embed_dim, cfg.num_heads, cfg.ffn_dim, cfg.max_positions) == (
        12,
        768,
        12,
        3072,
        2048,
    )
    assert cfg.activation == "relu" and cfg.tie_embeddings
    with torch.device("meta"):
        model = UnitLM(cfg)
    # OPT-125M body (85M) + 2048 positions + 259 tokens, tied embedding counted once
    body = 12 * (4 * 768 * 768 + 4 * 768 + 2 * 768 * 3072 + 3072 + 768 + 4 * 768)
    expected = body + 2048 * 768 + 259 * 768 + 2 * 768
    assert model.num_parameters() == expected
    assert 86e6 < expected < 88e6


def test_too_long_input_is_refused():
    model = UnitLM(TINY)
    with pytest.raises(ValueError, match="max_positions"):
        model(torch.ones(1, TINY.max_positions + 1, dtype=torch.long))


def test_config_errors_reported_with_paths():
    with pytest.raises(ConfigError) as exc:
        from_dict(
            LMTrainConfig,
            {"preset": "lm_tiny", "model": {"num_heads": 3}, "run": {"max_steps": 0}},
        )
    msg = str(exc.value)
    assert "model.num_heads" in msg and "run.max_steps" in msg
    with pytest.raises(ConfigError, match="preset"):
        from_dict(LMTrainConfig, {"preset": "nope"})
    cfg = from_dict(LMTrainConfig, {"preset": "lm_tiny", "model": {"num_units": 50}})
    assert cfg.model_config().num_units == 50 and cfg.model_config().embed_dim == 32


def test_vocab_roundtrip_and_dedup():
    assert dedup_list([3, 3, 5, 5, 5, 3]) == [3, 5, 3]
    assert dedup_list(torch.tensor([1, 1])) == [1]
    assert dedup_list([]) == []
    tokens = encode([0, 4, 2], num_units=5)
    assert tokens.tolist() == [BOS, 3, 7, 5, EOS]
    assert decode(tokens) == [0, 4, 2]
    with pytest.raises(DataError, match="unit 5 is outside"):
        encode([1, 5], num_units=5, where="file.wav")


def _reference_loglik(model, units, include_eos=True):
    tokens = encode(units, model.cfg.num_units)
    logp = torch.log_softmax(model(tokens[None, :-1])[0].double(), -1)
    picked = logp.gather(-1, tokens[1:, None])[:, 0]
    if not include_eos:
        picked = picked[:-1]
    return picked.sum().item(), picked.numel()


def test_batched_scores_match_one_by_one():
    torch.manual_seed(0)
    model = UnitLM(TINY)
    gen = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, 16, (int(n),), generator=gen) for n in [1, 9, 4, 30, 0, 17, 9]]
    batched = score_sequences(model, seqs, max_tokens=40)
    for s, r in zip(seqs, batched, strict=True):
        total, n = _reference_loglik(model.eval(), s)
        assert r.num_tokens == n == len(s) + 1
        assert r.total == pytest.approx(total, abs=1e-4)
        assert r.mean == pytest.approx(total / n, abs=1e-5)
    no_eos = score_sequences(model, seqs[:2], include_eos=False)
    assert no_eos[1].num_tokens == 9
    assert no_eos[1].total == pytest.approx(_reference_loglik(model, seqs[1], False)[0], abs=1e-4)
    assert no_eos[0].num_tokens == 1 and not math.isnan(no_eos[0].mean)


def test_identical_sequences_tie_exactly_across_batches():
    torch.manual_seed(0)
    model = UnitLM(TINY)
    same = [2, 5, 7, 1, 9]
    # the duplicates sit at both ends of a length-sorted list: different batches and paddings
    seqs = [same, list(range(16)) * 3, [1], same]
    out = score_sequences(model, seqs, max_tokens=20)
    assert out[0] == out[3]


def test_scoring_refuses_sequences_longer_than_positions():
    model = UnitLM(TINY)
    with pytest.raises(DataError, match="long.wav.*max_positions"):
        score_sequences(model, [[1] * TINY.max_positions], names=["long.wav"])
