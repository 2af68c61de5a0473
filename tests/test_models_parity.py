"""Parity with the official release (spidr 0.2.0): every tensor of the three fixture cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spidrkit.models import DinoSRConfig, SpidRConfig, build_model

FIXTURES = Path(__file__).parent / "fixtures" / "official-spidr-0.2.0"
CASES = {"spidr-tiny": "spidr", "dinosr-tiny": "dinosr", "dinosr-tiny-qkvbias-groupnorm": "dinosr"}
TOL = dict(atol=1e-5, rtol=1e-5)


def load_case(case: str):
    mt = CASES[case]
    cfg_cls = SpidRConfig if mt == "spidr" else DinoSRConfig
    cfg = cfg_cls(**json.loads((FIXTURES / case / "config.json").read_text()))
    model = build_model(mt, cfg)
    state = torch.load(FIXTURES / case / "state_dict.pt", weights_only=True)
    model.load_state_dict(state, strict=True)
    inputs = torch.load(FIXTURES / case / "inputs.pt", weights_only=True)
    expected = torch.load(FIXTURES / case / "expected.pt", weights_only=True)
    return model, inputs, expected


@pytest.mark.parametrize("case", CASES)
def test_keys_and_dtypes_match_fixture(case: str) -> None:
    model, _, _ = load_case(case)
    want = [line.split("\t") for line in (FIXTURES / case / "keys.txt").read_text().splitlines()]
    got = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in model.state_dict().items()]
    assert [tuple(w) for w in want] == got


@pytest.mark.parametrize("case", CASES)
def test_eval_outputs(case: str) -> None:
    model, inputs, exp = load_case(case)
    model.eval()
    wav = inputs["waveforms"]
    with torch.no_grad():
        feats = model.features(wav)
        torch.testing.assert_close(feats, exp["features"], **TOL)
        before = model.get_intermediate_outputs(wav)
        torch.testing.assert_close(
            torch.stack(before), exp["student_layers_before_residual"], **TOL
        )
        after = model.get_intermediate_outputs(wav, before_residual=False)
        torch.testing.assert_close(torch.stack(after), exp["student_layers_after_residual"], **TOL)
        final, _, _ = model.student(feats)
        torch.testing.assert_close(final, exp["student_final"], **TOL)
        _, teacher_results, _ = model.teacher(feats)
        torch.testing.assert_close(
            torch.stack(teacher_results), exp["teacher_layers_before_residual"], **TOL
        )
        probs = model.get_codebooks(wav)
        torch.testing.assert_close(torch.stack(probs), exp["codebook_probs"], **TOL)
        assert model.codebook_layers == exp["codebook_layers"].tolist()
        padded = model.get_intermediate_outputs(
            inputs["waveforms_padded"], attention_mask=inputs["attention_mask"]
        )
        torch.testing.assert_close(
            torch.stack(padded), exp["padded_student_layers_before_residual"], **TOL
        )


@pytest.mark.parametrize("case", CASES)
def test_train_step_losses_gradients_codebooks_and_ema(case: str) -> None:
    model, inputs, exp = load_case(case)
    model.train()
    loss, monitors = model(inputs["waveforms"], mask_indices=inputs["mask_indices"])
    torch.testing.assert_close(loss.detach(), exp["train_loss_per_frame"], **TOL)
    torch.testing.assert_close(monitors["target_ppl"], exp["train_target_ppl"], **TOL)
    torch.testing.assert_close(monitors["pred_ppl"], exp["train_pred_ppl"], **TOL)
    loss.mean().backward()
    torch.testing.assert_close(model.mask_embedding.grad, exp["grad_mask_embedding"], **TOL)
    conv0 = model.feature_extractor.conv_layers[0].conv.weight
    torch.testing.assert_close(conv0.grad, exp["grad_first_conv"], **TOL)
    for k, cb in enumerate(model.codebooks):
        torch.testing.assert_close(cb.codebook, exp[f"codebook_{k}_after_step"], **TOL)
        torch.testing.assert_close(cb.counts, exp[f"codebook_{k}_counts_after_step"], **TOL)
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.01)
    decay = model.update_ema(int(exp["ema_step"]))
    assert decay == pytest.approx(exp["ema_decay"].item(), abs=1e-12)
    assert int(model.current_step) == int(exp["ema_step"])
    teacher = model.teacher.state_dict()
    assert set(teacher) == set(exp["teacher_after_ema"])
    for key, value in exp["teacher_after_ema"].items():
        torch.testing.assert_close(teacher[key], value, **TOL, msg=key)


def test_base_spidr_has_official_keys_and_shapes() -> None:
    lines = (FIXTURES / "spidr-base-keys.txt").read_text().splitlines()
    want = [tuple(line.split("\t")) for line in lines]
    with torch.device("meta"):
        model = build_model("spidr", SpidRConfig())
    got = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in model.state_dict().items()]
    assert got == want
    assert len(got) == 347


def test_num_layers_stops_early() -> None:
    """Asking for k layers must not run layers after k."""
    model, inputs, _ = load_case("spidr-tiny")
    model.eval()
    calls: list[int] = []
    for i, layer in enumerate(model.student.layers):
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
    out = model.get_intermediate_outputs(inputs["waveforms"], num_layers=2)
    assert len(out) == 2 and calls == [0, 1]
    full = model.get_intermediate_outputs(inputs["waveforms"])
    torch.testing.assert_close(out[1], full[1])
