"""Checkpoint I/O: official layout round trip, safetensors, fairseq DinoSR conversion, bad files."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from spidrkit.errors import CheckpointError
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import (
    infer_config,
    load_model,
    read_checkpoint,
    save_model,
    save_safetensors,
)


@pytest.fixture(params=["spidr_tiny", "dinosr_tiny"])
def model(request):
    torch.manual_seed(0)
    preset = PRESETS[request.param]
    return build_model(preset.model_type, preset.config)


def assert_same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_official_layout_round_trip(model, tmp_path) -> None:
    path = save_model(model, tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw["model"]) == set(model.state_dict())  # what the official loader reads
    assert (tmp_path / "config.json").is_file()
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert_same_state(model, loaded)


def test_official_file_without_config_infers_shapes(model, tmp_path) -> None:
    path = tmp_path / ("dinosr.pt" if type(model).__name__ == "DinoSR" else "spidr.pt")
    torch.save({"model": model.state_dict()}, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert_same_state(model, loaded)
    assert infer_config(model.state_dict(), "spidr").encoder_num_heads == 1  # 64-d heads


def test_safetensors_round_trip(model, tmp_path) -> None:
    path = save_safetensors(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert_same_state(model, loaded)


def test_truncated_and_garbage_checkpoints_are_clear_errors(model, tmp_path) -> None:
    path = save_model(model, tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt.*truncated or corrupt"):
        read_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": {}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="odd.pt: not a SpidR checkpoint"):
        read_checkpoint(tmp_path / "odd.pt")


def test_strict_load_reports_missing_keys(model, tmp_path) -> None:
    state = model.state_dict()
    state.pop("mask_embedding")
    torch.save({"model": state}, tmp_path / "m.pt")
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "spidr", **model.config.to_dict()})
    )
    with pytest.raises(CheckpointError, match="missing: mask_embedding"):
        load_model(tmp_path / "m.pt", model_type=type(model).__name__.lower())


def test_pickled_code_is_refused(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(tmp_path / "evil.pt")


def to_fairseq(model) -> dict:
    """Write a spidrkit DinoSR in the original fairseq layout (inverse of SPEC section 3's table)."""
    sd = model.state_dict()
    out, ema = {}, {}
    layer_map = {
        "attention.proj.": "self_attn.out_proj.",
        "layer_norm.": "self_attn_layer_norm.",
        "feed_forward.intermediate_dense.": "fc1.",
        "feed_forward.output_dense.": "fc2.",
        "final_layer_norm.": "final_layer_norm.",
    }

    def enc(rest, dst, prefix):
        p = rest.split(".")
        if p[0] == "layer_norm":
            dst[prefix + rest] = sd_val
        elif p[0] == "pos_conv_embed":
            dst[f"{prefix}pos_conv.{p[2]}.0.{p[3]}"] = sd_val
        else:
            tail = ".".join(p[2:])
            if tail.startswith("attention.qkv."):
                for name, part in zip("qkv", sd_val.chunk(3)):
                    dst[f"{prefix}layers.{p[1]}.self_attn.{name}_proj.{p[-1]}"] = part
                return
            for new, old in layer_map.items():
                if tail.startswith(new):
                    dst[f"{prefix}layers.{p[1]}.{old}{tail[len(new) :]}"] = sd_val
                    return

    for key, sd_val in sd.items():
        p = key.split(".")
        if key == "mask_embedding":
            out["mask_emb"] = sd_val
        elif key.startswith("feature_projection.layer_norm."):
            out["layer_norm." + p[-1]] = sd_val
        elif key.startswith("feature_projection.projection."):
            out["post_extract_proj." + p[-1]] = sd_val
        elif key.startswith("feature_extractor."):
            out[
                f"feature_extractor.conv_layers.{p[2]}."
                + ("0." if p[3] == "conv" else "2.1.")
                + p[-1]
            ] = sd_val
        elif key.startswith("student."):
            enc(key[len("student.") :], out, "encoder.")
        elif key.startswith("teacher."):
            enc(key[len("teacher.") :], ema, "")
        elif key.startswith("codebooks."):
            out[("_codebook" if p[2] == "codebook" else "_codebook_cnts") + p[1]] = sd_val
        elif key.startswith("heads."):
            out[f"heads.{p[1]}.{p[-1]}"] = sd_val
    out["_ema"] = ema
    return {
        "model": out,
        "args": argparse.Namespace(arch="dinosr"),
        "last_optimizer_state": {"state": {0: {"step": torch.tensor(1234)}}},
    }


def test_convert_fairseq_dinosr(tmp_path) -> None:
    from spidrkit.models import DinoSRConfig
    from spidrkit.models.config import tiny_overrides

    cfg = DinoSRConfig(**{**tiny_overrides(), "encoder_qkv_bias": True})
    torch.manual_seed(1)
    model = build_model("dinosr", cfg)
    torch.save(to_fairseq(model), tmp_path / "dinosr.ckpt")
    ckpt = read_checkpoint(tmp_path / "dinosr.ckpt")
    assert ckpt.source_format == "fairseq" and ckpt.step == 1234
    loaded = load_model(tmp_path / "dinosr.ckpt", model_type="dinosr", config=cfg)
    for k, v in model.state_dict().items():
        if k != "current_step":
            assert torch.equal(loaded.state_dict()[k], v), k
    assert int(loaded.current_step) == 1234
    # Through the CLI, to the official layout and back.
    from spidrkit.cli.main import main

    assert main(["convert", str(tmp_path / "dinosr.ckpt"), str(tmp_path / "out" / "d.pt")]) == 0
    again = load_model(tmp_path / "out" / "d.pt")
    assert again.config.encoder_qkv_bias and again.config.encoder_embed_dim == 64
    for k, v in loaded.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
