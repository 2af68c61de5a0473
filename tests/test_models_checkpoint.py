"""Checkpoint I/O: official layout round trip, safetensors, fairseq DinoSR conversion, bad files."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

from spidrkit.errors import CheckpointError
from spidrkit.models import PRESETS, build_model
from spidrkit.models.checkpoint import (
    convert_fairseq_dinosr,
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


FIXTURES = Path(__file__).parent / "fixtures"
# base size -> tiny size (tests.models.config.tiny_overrides): conv channels, width, feed-forward,
# codewords, and channels per positional-conv group (768 / 16 -> 64 / 16)
TINY_DIMS = {512: 32, 768: 64, 3072: 128, 256: 16, 48: 4}


def fairseq_base_keys() -> dict[str, tuple[int, ...]]:
    """The fixture: every key of an original fairseq DinoSR base checkpoint, with its shape."""
    keys = {}
    for line in (FIXTURES / "fairseq-dinosr-base-keys.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape, _ = line.split("\t")
            keys[name] = tuple(int(x) for x in shape.strip("(),").split(",") if x.strip())
    return keys


def nest_ema(flat: dict) -> dict:
    """fairseq keeps the teacher as a dict under ``model["_ema"]``."""
    model = {k: v for k, v in flat.items() if not k.startswith("_ema.")}
    model["_ema"] = {k[len("_ema.") :]: v for k, v in flat.items() if k.startswith("_ema.")}
    return model


def test_fairseq_base_keys_convert_to_the_official_base_layout(caplog) -> None:
    """Every key of the fairseq list lands on a key of the official SpidR/DinoSR base layout (the
    official fixture's key list) with the same shape, and nothing is left over or missing."""
    src = {k: torch.empty(shape, device="meta") for k, shape in fairseq_base_keys().items()}
    picked = {  # a few real tensors, to follow values through the renaming
        "mask_emb": torch.randn(768),
        "encoder.layers.3.self_attn.q_proj.weight": torch.randn(768, 768),
        "encoder.layers.3.self_attn.k_proj.weight": torch.randn(768, 768),
        "encoder.layers.3.self_attn.v_proj.weight": torch.randn(768, 768),
        "_ema.layers.11.self_attn.q_proj.bias": torch.randn(768),
        "_ema.layers.11.self_attn.k_proj.bias": torch.randn(768),
        "_ema.layers.11.self_attn.v_proj.bias": torch.randn(768),
        "_ema.layers.11.fc1.weight": torch.randn(3072, 768),
        "_ema.layer_norm.bias": torch.randn(768),
        "_ema.pos_conv.4.0.weight": torch.randn(768, 48, 19),
        "feature_extractor.conv_layers.6.2.1.bias": torch.randn(512),
        "encoder.layers.0.self_attn_layer_norm.weight": torch.randn(768),
        "layer_norm.weight": torch.randn(512),
        "post_extract_proj.bias": torch.randn(768),
        "_codebook_cnts5": torch.rand(256),
        "heads.7.weight": torch.randn(256, 768),
    }
    src.update(picked)
    ckpt = {
        "model": nest_ema(src),
        "last_optimizer_state": {"state": {0: {"step": torch.tensor(400000)}}},
    }
    with caplog.at_level("WARNING"):
        state, step = convert_fairseq_dinosr(ckpt)
    assert "no spidrkit equivalent" not in caplog.text
    assert step == 400000 and state["current_step"].tolist() == [400000]

    official = {}
    for line in (
        (FIXTURES / "official-spidr-0.2.0" / "spidr-base-keys.txt").read_text().splitlines()
    ):
        name, shape, _ = line.split("\t")
        official[name] = tuple(int(x) for x in shape.strip("(),").split(",") if x.strip())
    for model in ("student", "teacher"):  # the original DinoSR has biases on q, k, v
        for i in range(12):
            official[f"{model}.layers.{i}.attention.qkv.bias"] = (3 * 768,)
    assert {k: tuple(v.shape) for k, v in state.items()} == official

    q, k, v = (picked[f"encoder.layers.3.self_attn.{p}_proj.weight"] for p in "qkv")
    assert torch.equal(state["student.layers.3.attention.qkv.weight"], torch.cat([q, k, v]))
    q, k, v = (picked[f"_ema.layers.11.self_attn.{p}_proj.bias"] for p in "qkv")
    assert torch.equal(state["teacher.layers.11.attention.qkv.bias"], torch.cat([q, k, v]))
    for fairseq, ours in [
        ("mask_emb", "mask_embedding"),
        ("_ema.layers.11.fc1.weight", "teacher.layers.11.feed_forward.intermediate_dense.weight"),
        ("_ema.layer_norm.bias", "teacher.layer_norm.bias"),
        ("_ema.pos_conv.4.0.weight", "teacher.pos_conv_embed.convs.4.weight"),
        (
            "feature_extractor.conv_layers.6.2.1.bias",
            "feature_extractor.conv_layers.6.layer_norm.bias",
        ),
        ("encoder.layers.0.self_attn_layer_norm.weight", "student.layers.0.layer_norm.weight"),
        ("layer_norm.weight", "feature_projection.layer_norm.weight"),
        ("post_extract_proj.bias", "feature_projection.projection.bias"),
        ("_codebook_cnts5", "codebooks.5.counts"),
        ("heads.7.weight", "heads.7.0.weight"),
    ]:
        assert torch.equal(state[ours], picked[fairseq]), fairseq


def test_fairseq_dinosr_file_loads_strictly(tmp_path) -> None:
    """A fairseq DinoSR file with the fixture's keys at the tiny size (layers, codebooks and
    widths cut down) loads into the tiny DinoSR with qkv bias; through the CLI to the official
    layout and back. Every number of the file ends up in the model exactly once."""
    from spidrkit.cli.main import main
    from spidrkit.models import DinoSRConfig
    from spidrkit.models.config import tiny_overrides

    flat = tiny_fairseq_dinosr_weights(seed=0)
    torch.save(
        {
            "model": nest_ema(flat),
            "args": argparse.Namespace(arch="dinosr"),  # fairseq files carry their arguments
            "last_optimizer_state": {"state": {0: {"step": torch.tensor(1234)}}},
        },
        tmp_path / "dinosr.ckpt",
    )
    ckpt = read_checkpoint(tmp_path / "dinosr.ckpt")
    assert ckpt.source_format == "fairseq" and ckpt.step == 1234
    cfg = DinoSRConfig(**{**tiny_overrides(), "encoder_qkv_bias": True})
    loaded = load_model(tmp_path / "dinosr.ckpt", model_type="dinosr", config=cfg)  # strict
    state = loaded.state_dict()
    assert int(loaded.current_step) == 1234
    total = sum(v.numel() for k, v in state.items() if k != "current_step")
    assert total == sum(v.numel() for v in flat.values())
    got = torch.cat([v.reshape(-1) for k, v in state.items() if k != "current_step"]).sort()[0]
    want = torch.cat([v.reshape(-1) for v in flat.values()]).sort()[0]
    assert torch.equal(got, want)  # a permutation of the file's numbers: none lost, none doubled
    assert torch.equal(state["mask_embedding"], flat["mask_emb"])
    assert torch.equal(
        state["teacher.layers.2.feed_forward.output_dense.weight"], flat["_ema.layers.2.fc2.weight"]
    )

    assert main(["convert", str(tmp_path / "dinosr.ckpt"), str(tmp_path / "out" / "d.pt")]) == 0
    again = load_model(tmp_path / "out" / "d.pt")
    assert again.config.encoder_qkv_bias and again.config.encoder_embed_dim == 64
    for k, v in state.items():
        assert torch.equal(again.state_dict()[k], v), k


def tiny_fairseq_dinosr_weights(seed: int) -> dict[str, torch.Tensor]:
    """Random weights under the fixture's fairseq DinoSR keys, at the tiny size (4 layers, 3
    codebooks and heads), flat (``nest_ema`` makes the file's layout); counts are positive."""

    def keep(name: str) -> bool:
        layer = re.search(r"(?:^|\.)layers\.(\d+)\.", name)  # not conv_layers
        codebook = re.search(r"(?:_codebook|_codebook_cnts|heads\.)(\d+)", name)
        return (layer is None or int(layer[1]) < 4) and (codebook is None or int(codebook[1]) < 3)

    torch.manual_seed(seed)
    flat = {
        k: torch.randn(tuple(TINY_DIMS.get(d, d) for d in shape))
        for k, shape in fairseq_base_keys().items()
        if keep(k)
    }
    return {k: (v.abs() + 1 if "_codebook_cnts" in k else v) for k, v in flat.items()}
