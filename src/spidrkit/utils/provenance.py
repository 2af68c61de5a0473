"""What produced an output: digests of models and sources, and the record a resumable output keeps.

A resumable output (a features folder of ``spidrkit extract``, a k-means file, a demo stage) is
reused on a re-run. Reusing it is only right when the same thing would be produced again, so it
records what produced it (:func:`source_identity`: the model's weight digest, the layers, the
options) and a re-run compares that record with what it is asked for (:func:`check_record`): the
same -> reuse; different -> a one-line error naming each difference, never a silent mix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spidrkit.errors import ConfigError, DataError
from spidrkit.utils.files import atomic_write

RECORD_NAME = ".spidrkit-record.json"
"""File beside a resumable output's files (inside its folder) that says what produced them."""


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) of names, dtypes, shapes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def source_identity(source: Any, *, before_residual: bool | None = None) -> dict[str, Any]:
    """What a frame encoder computes, as plain data: a model's type and weight digest (and, when
    given, whether features are taken before the residual), or a baseline's name and settings."""
    model = source if isinstance(source, torch.nn.Module) else getattr(source, "model", None)
    if isinstance(model, torch.nn.Module):
        ident: dict[str, Any] = {
            "model": type(model).__name__,
            "model_digest": tensor_digest(model.state_dict()),
        }
        if before_residual is not None:
            ident["before_residual"] = bool(before_residual)
        if hasattr(source, "normalize"):
            ident["normalize"] = bool(source.normalize)
        return ident
    ident = {"baseline": getattr(source, "kind", None) or getattr(source, "name", None)}
    for key in ("hop_ms", "n_mels", "n_ceps", "with_deltas", "cmvn"):
        if hasattr(source, key):
            ident[key] = getattr(source, key)
    return ident


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The record of ``folder`` (None when it has none); a malformed one is a DataError."""
    path = Path(folder) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes()[: 1 << 20].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable record of what produced this folder ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key: saved -> wanted`` for each key whose value differs (missing keys count)."""
    keys = sorted(set(saved) | set(wanted))
    return [
        f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}"
        for k in keys
        if _plain(saved.get(k)) != _plain(wanted.get(k))
    ]


def _plain(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def check_record(
    folder: str | Path, wanted: Mapping[str, Any], *, what: str, has_outputs: bool
) -> None:
    """Refuse to reuse ``folder`` unless its record matches ``wanted``; write the record when the
    folder is new.

    ``has_outputs``: the folder already holds outputs. Outputs without a record (made by an older
    spidrkit, or by hand) cannot be vouched for, so they are refused too.
    """
    folder = Path(folder)
    saved = read_record(folder)
    if saved is None:
        if has_outputs:
            raise ConfigError(
                f"{folder}: holds {what} with no record of what produced them; they may come from "
                "another model, layer or options: use a new output folder (or delete this one)"
            )
        write_record(folder, wanted)
        return
    diff = differences(saved, wanted)
    if diff:
        raise ConfigError(
            f"{folder}: holds {what} made differently ({'; '.join(diff)}); use a new output "
            "folder, or delete this one to redo it"
        )


def write_record(folder: str | Path, record: Mapping[str, Any]) -> None:
    with atomic_write(Path(folder) / RECORD_NAME, "w") as f:
        json.dump(_plain(dict(record)), f, indent=2, sort_keys=True)
        f.write("\n")


def check_producer(folder: str | Path, wanted: Mapping[str, Any], *, what: str) -> bool:
    """For a pipeline stage that is skipped when its output exists (``spidrkit demo``): True when
    ``folder`` holds a record equal to ``wanted`` (reuse the stage), False when it holds no record
    (run the stage, then :func:`write_record`); a different record is a ConfigError naming each
    difference (``seed: 0 -> 1``)."""
    saved = read_record(folder)
    if saved is None:
        return False
    diff = differences(saved, wanted)
    if diff:
        raise ConfigError(
            f"{folder}: holds {what} made differently ({'; '.join(diff)}); use a new output "
            "folder, or delete this one to redo it"
        )
    return True


_OUTPUT_KEYS = ("command", "layers", "format", "dtype")


def features_folder_source(folder: str | Path) -> tuple[dict[str, Any] | None, int | None]:
    """(source identity, layer) of a features folder written by ``spidrkit extract``: from its
    record (or, for ``<out>/layer<L>``, the record of ``<out>``); (None, None) when unrecorded."""
    import re

    folder = Path(folder)
    record, layer = read_record(folder), None
    m = re.fullmatch(r"layer(\d+)", folder.name)
    if record is None and m:
        record, layer = read_record(folder.parent), int(m.group(1))
    if record is None:
        return None, int(m.group(1)) if m else None
    layers = record.get("layers")
    if layer is None and isinstance(layers, list) and len(layers) == 1:
        layer = int(layers[0])
    return {k: v for k, v in record.items() if k not in _OUTPUT_KEYS}, layer
