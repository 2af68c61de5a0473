"""Checkpoint I/O: official layout, safetensors, and conversion of the original fairseq DinoSR.

Official release files are ``torch.save({"model": state_dict})``; training checkpoints add "optimizer",
"scheduler", "scaler", "epoch", "step". spidrkit writes the same layout (the official code can load it)
and adds a ``"spidrkit"`` entry with the model type and config, plus a ``config.json`` beside the file.
Everything is loaded with ``weights_only=True``: a checkpoint never executes code.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spidrkit.config import field_problems, from_dict
from spidrkit.errors import CheckpointError, ConfigError
from spidrkit.models.config import DinoSRConfig, SpidRConfig, config_class
from spidrkit.models.spidr import DinoSR, SpidR, build_model, model_type_of
from spidrkit.utils.files import atomic_path, atomic_write
from spidrkit.utils.integrity import digest_path, verify_checkpoint, verify_digest

log = logging.getLogger(__name__)

Model = SpidR | DinoSR
StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model state read from disk, with what is known about it."""

    state_dict: StateDict
    model_type: str | None
    config: SpidRConfig | DinoSRConfig | None
    step: int | None
    source_format: str  # "official", "spidrkit", "safetensors", "folder" or "fairseq"
    extra: dict[str, Any]  # optimizer, scheduler, ... when present


def read_torch_file(path: str | Path, *, verify: bool = True, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and the problem: the
    one reader of every torch file spidrkit is given (checkpoints, k-means files, LM checkpoints).

    ``verify``: check the ``.sha256`` beside the file (or the zip CRCs) first (skip it when the
    caller just did)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes); the write was interrupted?")
    if verify and (digest_path(path).is_file() or zipfile.is_zipfile(path)):
        problem = verify_checkpoint(path)
        if problem is not None:
            raise CheckpointError(f"{path}: cannot use checkpoint: {problem}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK", b"\x80")):  # a torch zip archive, or a legacy pickle
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (it starts with {head!r}, not a torch.save file)"
        )
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes: the error says it
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        what = _refused_global(str(exc))
        raise CheckpointError(
            f"{path}: holds pickled Python objects{what}, refused (spidrkit reads checkpoints with "
            "weights_only=True and never runs their code); where you trust the file, re-save just "
            "its tensors, e.g. torch.save({'model': ckpt['model']}, 'clean.pt')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a corrupt or foreign file
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: cannot read checkpoint, the file is truncated or corrupt, or not a checkpoint "
            f"({type(exc).__name__}: {first})"
        ) from None


def _refused_global(message: str) -> str:
    """`` (builtins.exec)``: the object torch refused to unpickle, when its message names one."""
    import re

    m = re.search(r"GLOBAL ([\w.]+)", message) or re.search(
        r"Unsupported global: ([\w.]+)", message
    )
    return f" ({m.group(1)})" if m else ""


def is_fairseq_dinosr(obj: Any) -> bool:
    """True for the original fairseq DinoSR layout (teacher under ``model["_ema"]``)."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), dict)
        and ("mask_emb" in obj["model"] or "_ema" in obj["model"])
    )


def read_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read any supported checkpoint: official/spidrkit ``.pt``, ``.safetensors``, fairseq, or a
    model folder (``config.json`` + ``model.safetensors``, :func:`save_model_folder`)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = read_torch_file(path)
    if is_fairseq_dinosr(obj):
        state, step = convert_fairseq_dinosr(obj)
        return LoadedCheckpoint(state, "dinosr", None, step, "fairseq", {})
    if isinstance(obj, dict) and "centroids" in obj:
        raise CheckpointError(
            f"{path}: is a k-means file (spidrkit kmeans), not a SpidR/DinoSR checkpoint; give it "
            "to --kmeans"
        )
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(
            f"{path}: holds one tensor {tuple(obj.shape)} (a features file?), not a checkpoint"
        )
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise CheckpointError(
            f"{path}: not a SpidR checkpoint: expected a dict with a 'model' state dict, found "
            f"{type(obj).__name__} with keys {sorted(obj)[:8] if isinstance(obj, dict) else '-'}"
        )
    if "lm_config" in obj:
        raise CheckpointError(
            f"{path}: is a unit-LM checkpoint (spidrkit lm-train), not a SpidR/DinoSR speech "
            "encoder; give it to slm-eval --lm"
        )
    meta = obj.get("spidrkit") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its 'spidrkit' entry is not a table")
    model_type = meta.get("model_type")
    config = None
    if meta.get("config") is not None and model_type:
        config = model_config(model_type, meta["config"], f"{path} (its 'spidrkit' config)")
    elif (path.parent / "config.json").is_file():
        model_type, config = _read_config_json(path.parent / "config.json", model_type)
    state = obj["model"]
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if odd:
        raise CheckpointError(
            f"{path}: not a model state dict ({len(odd)} entries are not named tensors, e.g. "
            f"{str(odd[0])[:60]!r})"
        )
    step = obj.get("step")
    if step is None and "current_step" in state:
        step = int(state["current_step"].reshape(-1)[0])
    extra = {k: v for k, v in obj.items() if k not in ("model", "spidrkit")}
    return LoadedCheckpoint(
        state, model_type, config, step, "spidrkit" if meta else "official", extra
    )


def model_config(model_type: Any, data: Any, source: str) -> SpidRConfig | DinoSRConfig:
    """A model config read from a file, type- and range-checked as a TOML one (unknown keys are
    skipped: official files carry a few more); CheckpointError naming ``source`` otherwise."""
    if model_type not in ("spidr", "dinosr"):
        raise CheckpointError(f"{source}: model type {model_type!r} is not spidr or dinosr")
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the model config is not a table")
    cls = config_class(model_type)
    known = set(cls.__dataclass_fields__)
    try:
        return from_dict(cls, {k: v for k, v in data.items() if k in known})
    except ConfigError as exc:
        problems = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        raise CheckpointError(f"{source}: bad model config: {problems}") from None


def _read_config_json(path: Path, model_type: str | None) -> tuple[str | None, Any]:
    try:
        raw = path.read_bytes()[: 1 << 22]
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path}: the config beside the checkpoint is not valid JSON ({exc}); restore it or "
            "remove it (a spidrkit checkpoint carries its own config)"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    # spidrkit training runs write the whole run config: take its model section.
    if "model" in data and isinstance(data["model"], dict):
        run = data.get("run")
        model_type = run.get("model_type", model_type) if isinstance(run, dict) else model_type
        data = data["model"]
    model_type = data.pop("model_type", model_type)
    if model_type is None:
        return None, None
    return model_type, model_config(model_type, data, str(path))


def infer_config(state: StateDict, model_type: str) -> SpidRConfig | DinoSRConfig:
    """Recover a config from state-dict shapes (heads are assumed 64-wide, as in the base models)."""
    convs = sorted(
        (int(k.split(".")[2]), v.shape)
        for k, v in state.items()
        if k.startswith("feature_extractor.conv_layers.") and k.endswith("conv.weight")
    )
    base = config_class(model_type)()
    strides = [layer[2] for layer in base.extractor_conv_layer_config]
    conv_cfg = tuple((s[0], s[2], strides[i] if i < len(strides) else 2) for i, s in convs)
    dim = state["mask_embedding"].shape[0]
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("student.layers."))
    depth = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("student.pos_conv_embed."))
    pos_w = state["student.pos_conv_embed.convs.0.weight"]
    kernel = pos_w.shape[2]
    return config_class(model_type)(
        extractor_mode="layer_norm"
        if "feature_extractor.conv_layers.1.layer_norm.weight" in state
        else "group_norm",
        extractor_conv_bias="feature_extractor.conv_layers.0.conv.bias" in state,
        extractor_conv_layer_config=conv_cfg,
        encoder_embed_dim=dim,
        encoder_pos_conv_kernel=base.encoder_pos_conv_kernel
        if max(3, base.encoder_pos_conv_kernel // depth) == kernel
        else kernel * depth,
        encoder_pos_conv_groups=dim // pos_w.shape[1],
        encoder_pos_conv_depth=depth,
        encoder_num_layers=layers,
        encoder_num_heads=max(1, dim // 64),
        encoder_ff_interm_features=state[
            "student.layers.0.feed_forward.intermediate_dense.weight"
        ].shape[0],
        encoder_qkv_bias="student.layers.0.attention.qkv.bias" in state,
        codebook_size=state["codebooks.0.codebook"].shape[0],
        num_codebooks=1 + max(int(k.split(".")[1]) for k in state if k.startswith("codebooks.")),
    )


def load_model(
    path: str | Path,
    *,
    model_type: str | None = None,
    config: SpidRConfig | DinoSRConfig | None = None,
    strict: bool = True,
) -> Model:
    """Build the model a checkpoint describes and load its weights (strictly by default).

    The config comes from, in order: ``config``, the checkpoint's own metadata, a ``config.json``
    beside it, else it is inferred from tensor shapes. ``model_type`` ("spidr"/"dinosr") is needed
    only for official files without a config (the state dicts of both look alike); the file name is
    used as a hint otherwise.
    """
    ckpt = read_checkpoint(path)
    mtype = (
        model_type
        or ckpt.model_type
        or ("dinosr" if "dinosr" in Path(path).name.lower() else "spidr")
    )
    if mtype not in ("spidr", "dinosr"):
        raise CheckpointError(f"{path}: model type {mtype!r} is not spidr or dinosr")
    cfg = config or ckpt.config
    if cfg is None:
        try:
            cfg = infer_config(ckpt.state_dict, mtype)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise CheckpointError(
                f"{path}: not a SpidR/DinoSR checkpoint (its state dict lacks {exc}; "
                f"{len(ckpt.state_dict)} tensors, e.g. {sorted(ckpt.state_dict)[:3]})"
            ) from None
        problems = field_problems(cfg) or cfg.validate()
        if problems:
            raise CheckpointError(f"{path}: tensor shapes give a bad config: {problems[0]}")
    model = build_model(mtype, cfg)
    load_state(model, ckpt.state_dict, strict=strict, source=str(path))
    return model


def load_state(
    model: Model, state: StateDict, *, strict: bool = True, source: str = "state"
) -> None:
    """``model.load_state_dict`` with an error that lists missing/unexpected/mismatched keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if shapes or (strict and (missing or unexpected)):
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch (file vs model)", shapes),
        ):
            if items:
                parts.append(
                    f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                    f" ({len(items)})"
                )
        raise CheckpointError(f"{source}: checkpoint does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=strict)


def checkpoint_dict(model: Model, **extra: Any) -> dict[str, Any]:
    """The official layout ``{"model": state_dict, ...}`` plus spidrkit metadata."""
    return {
        "model": model.state_dict(),
        **extra,
        "spidrkit": {"model_type": model_type_of(model), "config": model.config.to_dict()},
    }


def save_model(
    model: Model, path: str | Path, *, write_config_json: bool = True, **extra: Any
) -> Path:
    """Write ``{"model": state_dict}`` atomically (official layout) and ``config.json`` beside it."""
    path = Path(path)
    with atomic_write(path, digest=True) as f:
        torch.save(checkpoint_dict(model, **extra), f)
    if write_config_json:
        data = {"model_type": model_type_of(model), **model.config.to_dict()}
        beside = path.parent / "config.json"
        if beside.exists() and _json_or_none(beside) != json.loads(json.dumps(data)):
            # a run's config.json (or another model's): not ours to replace; the checkpoint
            # carries its config in its "spidrkit" entry anyway
            log.warning(
                "%s exists and is left as it is (the model's config is inside %s)",
                beside,
                path.name,
            )
        else:
            with atomic_write(beside, "w") as f:
                json.dump(data, f, indent=2)
    return path


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes()[: 1 << 22].decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def save_safetensors(model: Model, path: str | Path) -> Path:
    """Export the weights to safetensors with the model type and config in the metadata."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise CheckpointError(
            "safetensors export needs: pip install 'spidrkit[safetensors]'"
        ) from None
    path = Path(path)
    meta = {
        "model_type": model_type_of(model),
        "config": json.dumps(model.config.to_dict()),
        "format": "spidrkit",
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, digest=True) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def _read_safetensors(path: Path) -> LoadedCheckpoint:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            "reading .safetensors needs: pip install 'spidrkit[safetensors]'"
        ) from None
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    problem = verify_digest(path)
    if problem is not None:
        raise CheckpointError(f"{path}: cannot use checkpoint: {problem}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read safetensors file ({exc})") from None
    mtype = meta.get("model_type")
    cfg = None
    if mtype and "config" in meta:
        try:
            data = json.loads(meta["config"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata 'config' is not valid JSON ({exc})") from None
        cfg = model_config(mtype, data, f"{path} (metadata)")
    elif mtype is not None and mtype not in ("spidr", "dinosr"):
        raise CheckpointError(f"{path}: metadata model_type {mtype!r} is not spidr or dinosr")
    step = int(state["current_step"].reshape(-1)[0]) if "current_step" in state else None
    return LoadedCheckpoint(state, mtype, cfg, step, "safetensors", {})


# -- self-describing model folders ------------------------------------------------------------

FOLDER_WEIGHTS = "model.safetensors"
FOLDER_CONFIG = "config.json"


def folder_weights(folder: str | Path) -> Path:
    """The weights file of a model folder, or a CheckpointError saying what is missing."""
    folder = Path(folder)
    weights = folder / FOLDER_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(
            f"{folder}: not a model folder: no {FOLDER_WEIGHTS} (a model folder holds "
            f"{FOLDER_CONFIG} + {FOLDER_WEIGHTS}, as `spidrkit convert CKPT FOLDER` writes)"
        )
    return weights


def save_model_folder(model: Model, folder: str | Path) -> Path:
    """Write a self-describing model folder: ``config.json`` (``model_type`` and every config
    field) and ``model.safetensors`` (the weights, with the config in its metadata too), the layout
    models are shared in on model hubs. :func:`read_checkpoint` / ``spidrkit.load`` read it back."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, folder / FOLDER_WEIGHTS)
    data = {"model_type": model_type_of(model), **model.config.to_dict()}
    with atomic_write(folder / FOLDER_CONFIG, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return folder


def _read_folder(folder: Path) -> LoadedCheckpoint:
    weights = folder_weights(folder)
    ckpt = _read_safetensors(weights)
    config_file = folder / FOLDER_CONFIG
    if not config_file.is_file():
        if ckpt.config is None:
            raise CheckpointError(f"{folder}: model folder without {FOLDER_CONFIG}")
        return ckpt
    try:
        model_type, config = _read_config_json(config_file, ckpt.model_type)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_file}: not a model config ({exc})") from None
    if config is None:
        raise CheckpointError(f"{config_file}: no model_type (spidr or dinosr)")
    return LoadedCheckpoint(ckpt.state_dict, model_type, config, ckpt.step, "folder", {})


# -- original fairseq DinoSR (key mapping: docs/models.md, "Original fairseq DinoSR") ------------

_LAYER_MAP = {
    "self_attn.out_proj.": "attention.proj.",
    "self_attn_layer_norm.": "layer_norm.",
    "fc1.": "feed_forward.intermediate_dense.",
    "fc2.": "feed_forward.output_dense.",
    "final_layer_norm.": "final_layer_norm.",
}


def _map_encoder_key(rest: str, prefix: str) -> str | None:
    """Map a fairseq encoder key (without "encoder."/"_ema.") onto ``prefix`` (student./teacher.)."""
    parts = rest.split(".")
    if parts[0] == "layer_norm":
        return f"{prefix}layer_norm.{parts[-1]}"
    if parts[0] == "pos_conv" and len(parts) == 4 and parts[2] == "0":
        return f"{prefix}pos_conv_embed.convs.{parts[1]}.{parts[3]}"
    if parts[0] == "layers":
        tail = ".".join(parts[2:]) + ("" if len(parts) > 2 else "")
        for old, new in _LAYER_MAP.items():
            if tail.startswith(old):
                return f"{prefix}layers.{parts[1]}.{new}{tail[len(old) :]}"
    return None


def _merge_qkv(src: dict[str, Tensor], out: StateDict, src_prefix: str, dst_prefix: str) -> None:
    layers = {k.split(".")[1] for k in src if k.startswith("layers.") and ".self_attn.q_proj." in k}
    for i in sorted(layers, key=int):
        for kind in ("weight", "bias"):
            names = [f"layers.{i}.self_attn.{p}_proj.{kind}" for p in "qkv"]
            if all(n in src for n in names):
                out[f"{dst_prefix}layers.{i}.attention.qkv.{kind}"] = torch.cat(
                    [src[n] for n in names]
                )


def convert_fairseq_dinosr(ckpt: dict[str, Any]) -> tuple[StateDict, int | None]:
    """Convert an original fairseq DinoSR checkpoint to spidrkit/official keys; returns (state, step)."""
    model = ckpt["model"]
    out: StateDict = {}
    unmapped: list[str] = []
    student = {k[len("encoder.") :]: v for k, v in model.items() if k.startswith("encoder.")}
    _merge_qkv(student, out, "encoder.", "student.")
    for key, value in model.items():
        if (
            key == "_ema"
            or key.startswith("encoder.layers.")
            and ".self_attn." in key
            and "out_proj" not in key
        ):
            continue
        new = None
        if key == "mask_emb":
            new = "mask_embedding"
        elif key.startswith("layer_norm."):
            new = "feature_projection." + key
        elif key.startswith("post_extract_proj."):
            new = "feature_projection.projection." + key.split(".")[-1]
        elif key.startswith("encoder."):
            new = _map_encoder_key(key[len("encoder.") :], "student.")
        elif key.startswith("feature_extractor.conv_layers."):
            p = key.split(".")
            if p[3] == "0":
                new = f"feature_extractor.conv_layers.{p[2]}.conv.{p[-1]}"
            elif p[3] == "2":  # layer norm "2.1.*" or group norm "2.*"
                new = f"feature_extractor.conv_layers.{p[2]}.layer_norm.{p[-1]}"
        elif key.startswith("_codebook_cnts"):
            new = f"codebooks.{key[len('_codebook_cnts') :]}.counts"
        elif key.startswith("_codebook"):
            new = f"codebooks.{key[len('_codebook') :]}.codebook"
        elif key.startswith("heads."):
            p = key.split(".")
            new = f"heads.{p[1]}.0.{p[-1]}"
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    ema = model.get("_ema") or {}
    _merge_qkv(ema, out, "", "teacher.")
    for key, value in ema.items():
        if key.startswith("layers.") and ".self_attn." in key and "out_proj" not in key:
            continue
        new = _map_encoder_key(key, "teacher.")
        if new is None:
            unmapped.append("_ema." + key)
        else:
            out[new] = value
    if unmapped:
        log.warning("fairseq keys with no spidrkit equivalent, ignored: %s", ", ".join(unmapped))
    step = None
    try:
        step = int(ckpt["last_optimizer_state"]["state"][0]["step"])
    except (KeyError, TypeError, IndexError, ValueError):
        pass
    out["current_step"] = torch.tensor([step or 0], dtype=torch.long)
    return out, step
