"""A zoo of files for the bad-input tests: one good file of each kind spidrkit writes or reads, and
files that are not what their name claims (text named .pt, bit flips, wrong kinds of checkpoint...).

``make_zoo(folder)`` returns ``{name: path}``; ``SLOTS`` lists the command lines that take a file,
with ``{}`` where the file goes and the kinds that slot accepts. The tests cross every kind with
every slot (tests/test_bad_inputs.py): a file of another kind must end in a one-line error.
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import torch


def _flip(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x40
    dst.write_bytes(bytes(data))
    sha = src.with_name(src.name + ".sha256")
    if sha.exists():  # the flipped copy keeps the original's checksum: it must not match
        dst.with_name(dst.name + ".sha256").write_text(
            sha.read_text().split()[0] + f"  {dst.name}\n"
        )
    return dst


def make_zoo(folder: Path) -> dict[str, Path]:
    import soundfile as sf

    from spidrkit.lm.config import LM_PRESETS
    from spidrkit.lm.model import UnitLM
    from spidrkit.lm.train import save_lm
    from spidrkit.models import PRESETS, build_model
    from spidrkit.models.checkpoint import save_model, save_safetensors
    from spidrkit.units.kmeans import KMeans

    folder.mkdir(parents=True, exist_ok=True)
    z: dict[str, Path] = {}
    torch.manual_seed(0)
    # --- good files of each kind
    audio = folder / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sf.write(audio / f"{name}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    z["manifest"] = folder / "m.csv"
    z["manifest"].write_text(
        f"fileid,path,num_samples\na,{audio}/a.wav,8000\nb,{audio}/b.wav,8000\n"
    )
    z["wav"] = audio / "a.wav"
    model = build_model("spidr", PRESETS["spidr_tiny"].config)
    (folder / "model").mkdir()
    z["model"] = save_model(model, folder / "model" / "spidr.pt")
    z["safetensors"] = save_safetensors(model, folder / "model" / "spidr.safetensors")
    lm = UnitLM(LM_PRESETS["lm_tiny"])
    z["lm"] = save_lm(folder / "lm.pt", lm)
    z["kmeans"] = folder / "km.pt"
    KMeans(torch.randn(4, model.config.encoder_embed_dim), {"layer": 2}).save(z["kmeans"])
    feats = folder / "feats"
    feats.mkdir()
    for name in ("a", "b"):
        torch.save(torch.randn(24, model.config.encoder_embed_dim), feats / f"{name}.pt")
    z["features"] = feats
    z["units"] = folder / "units.jsonl"
    z["units"].write_text(
        '{"audio": "a", "units": [1, 2, 3], "durations": [4, 4, 4]}\n'
        '{"audio": "b", "units": [0, 1], "durations": [6, 6]}\n'
    )
    z["labels"] = folder / "labels.jsonl"
    z["labels"].write_text(
        json.dumps({"name": "a", "phones": ["p"] * 12 + ["a"] * 12})
        + "\n"
        + json.dumps({"name": "b", "phones": ["a"] * 12 + ["t"] * 12})
        + "\n"
    )
    z["items"] = folder / "x.item"
    z["items"].write_text(
        "#file onset offset #phone prev-phone next-phone speaker\n"
        "a 0.0 0.1 p # a s1\na 0.1 0.2 a p # s1\nb 0.0 0.1 a # t s1\nb 0.1 0.2 t a # s1\n"
    )
    z["lexical"] = folder / "lexical"
    z["lexical"].mkdir()
    (z["lexical"] / "gold.csv").write_text("filename,id,voice,correct\na,1,v,1\nb,1,v,0\n")
    z["toml"] = folder / "c.toml"
    z["toml"].write_text("[run]\nmax_steps = 1\n")
    z["abx_json"] = folder / "abx.json"
    z["abx_json"].write_text(json.dumps({"results": [{"error": 0.2, "layer": 3}]}))
    z["quality_json"] = folder / "q.json"
    z["quality_json"].write_text(
        json.dumps(
            {
                "pnmi": 0.5,
                "phone_purity": 0.5,
                "cluster_purity": 0.5,
                "perplexity": 2.0,
                "active_codewords": 2,
                "vocab_size": 2,
                "bitrate": 10.0,
                "units_per_second": 10.0,
                "n_frames": 4,
                "n_utterances": 1,
                "phones": ["a", "b"],
                "units": [0, 1],
                "counts": [[1, 1], [1, 1]],
            }
        )
    )
    # --- files that are not what they claim
    z["text_pt"] = folder / "text.pt"
    z["text_pt"].write_text("just some text\n")
    z["empty_pt"] = folder / "empty.pt"
    z["empty_pt"].write_bytes(b"")
    z["zeros"] = folder / "zeros.pt"
    z["zeros"].write_bytes(bytes(3 << 20))
    z["binary"] = folder / "binary.jsonl"
    z["binary"].write_bytes(bytes(range(256)) * 64)
    z["latin1"] = folder / "latin1.json"
    z["latin1"].write_bytes('{"phones": ["\xe9"]}'.encode("latin-1"))
    z["json_list"] = folder / "list.json"
    z["json_list"].write_text("[1, 2, 3]\n")
    z["tensor_pt"] = folder / "tensor.pt"
    torch.save(torch.randn(3, 4), z["tensor_pt"])
    z["pickle_pt"] = folder / "pickle.pt"
    with open(z["pickle_pt"], "wb") as f:  # a payload weights_only must refuse (never run)
        torch.save({"model": {}, "x": argparse.ArgumentParser}, f, pickle_protocol=2)
    z["raw_pickle"] = folder / "raw.pt"
    z["raw_pickle"].write_bytes(pickle.dumps({"model": [1, 2]}))
    z["garbage_safetensors"] = folder / "garbage.safetensors"
    z["garbage_safetensors"].write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    from safetensors.torch import save_file

    z["badmeta_safetensors"] = folder / "badmeta.safetensors"
    save_file(
        {"w": torch.zeros(2)},
        str(z["badmeta_safetensors"]),
        metadata={"model_type": "spidr", "config": "{not json"},
    )
    z["flipped_model"] = _flip(z["model"], folder / "model" / "flipped.pt")
    z["flipped_safetensors"] = _flip(z["safetensors"], folder / "model" / "flipped.safetensors")
    z["flipped_kmeans"] = _flip(z["kmeans"], folder / "flipped_km.pt")
    z["flipped_lm"] = _flip(z["lm"], folder / "flipped_lm.pt")
    bad_cfg = folder / "badcfg"
    bad_cfg.mkdir()
    state = torch.load(z["model"], weights_only=True)
    torch.save({"model": state["model"]}, bad_cfg / "official.pt")  # no config inside
    (bad_cfg / "config.json").write_text('{"model_type": "spidr", "encoder_embed')  # truncated
    z["truncated_config_json"] = bad_cfg / "official.pt"
    z["missing"] = folder / "does-not-exist.pt"
    z["folder"] = folder / "model"
    return z


# (command line with {} for the file, kinds that slot takes, kinds that may also succeed there)
SLOTS: list[tuple[str, frozenset[str]]] = [
    ("info {}", frozenset({"model", "safetensors"})),
    ("convert {} {out}/c.pt", frozenset({"model", "safetensors"})),
    ("abx {} {features}", frozenset({"items"})),
    ("abx {items} --model {} --layers 2 --audio {audio}", frozenset({"model", "safetensors"})),
    ("units --features {features} --kmeans {} --out {out}/u.jsonl", frozenset({"kmeans"})),
    (
        "units {manifest} --model {} --layer 2 --out {out}/u.jsonl",
        frozenset({"model", "safetensors"}),
    ),
    ("units {} --model {model} --layer 2 --out {out}/u.jsonl", frozenset({"manifest"})),
    ("unit-quality {} {units}", frozenset({"labels"})),
    ("unit-quality {labels} {}", frozenset({"units"})),
    ("plot abx-layers {} --out {out}/p.png", frozenset({"abx_json"})),
    ("plot phone-unit {} --out {out}/p.png", frozenset({"quality_json"})),
    ("check-config {}", frozenset({"toml", "empty_pt"})),  # an empty TOML is all defaults
    ("lm-train {}", frozenset()),
    ("manifest --validate {}", frozenset({"manifest"})),
    ("slm-eval --lm {} --units {units} --lexical {lexical}", frozenset({"lm"})),
    ("abx {items} {}", frozenset({"features", "units"})),
    ("kmeans --features {} -k 2 --out {out}/k.pt", frozenset({"features"})),
    ("extract {} --baseline mfcc --out {out}/e", frozenset({"manifest"})),
    ("train {} --set run.max_steps=1", frozenset()),
]
