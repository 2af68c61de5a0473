"""Features of a SpidR/DinoSR checkpoint for ABX, computed in memory from audio (no feature files).

The features come from :meth:`spidrkit.api.Encoder.stream`, the path ``spidrkit extract`` takes, so
``abx --model`` scores exactly the features ``spidrkit extract`` would write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch

from spidrkit.api import Encoder
from spidrkit.audio import load_audio
from spidrkit.audio.io import AUDIO_EXTENSIONS, audio_info
from spidrkit.data.manifest import read_manifest
from spidrkit.errors import DataError
from spidrkit.eval.abx.api import compute_abx_modes
from spidrkit.eval.abx.items import Items
from spidrkit.eval.abx.result import ABXConfig, ABXResult
from spidrkit.utils.progress import progress
from spidrkit.utils.textfiles import check_finite_features


def find_audio(fileids: Sequence[str], root: str | Path | None = None, manifest=None) -> dict:
    """``{fileid: audio path}`` from an audio root (``<root>/<fileid>.wav|flac|...``) or a manifest."""
    out: dict[str, Path] = {}
    if manifest is not None:
        m = read_manifest(manifest)
        rows = {m.fileids[i]: i for i in range(len(m))}
        for fid in fileids:
            if fid in rows:
                out[fid] = m.path(rows[fid])
    elif root is not None:
        root = Path(root)
        for fid in fileids:
            for ext in AUDIO_EXTENSIONS:
                p = root / f"{fid}{ext}"
                if p.is_file():
                    out[fid] = p
                    break
    missing = [f for f in fileids if f not in out]
    if missing:
        where = f"manifest {manifest}" if manifest is not None else f"audio root {root}"
        raise DataError(f"{where}: no audio for {len(missing)} item file id(s), e.g. {missing[:3]}")
    return out


def model_features(
    encoder: Encoder,
    audio: Mapping[str, str | Path],
    layers: Sequence[int],
    dtype: torch.dtype = torch.float16,
    show_progress: bool = True,
) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: [T, D]}}`` from ``encoder`` (a :func:`spidrkit.load` encoder), in the
    length-sorted batches of :meth:`~spidrkit.api.Encoder.stream` (lengths read from the headers).

    Features are kept on the CPU in ``dtype`` (float16 halves the memory of many layers; ABX
    distances are computed in float32).
    """
    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    lengths = {f: audio_info(p, name=str(p)).num_samples() for f, p in audio.items()}
    fileids = sorted(audio, key=lambda f: (-lengths[f], f))
    bar = progress(total=len(fileids), desc="features", enabled=show_progress)
    stream = encoder.stream(
        fileids,
        lambda f: torch.from_numpy(load_audio(audio[f], name=str(audio[f]))),
        [lengths[f] for f in fileids],
        layers=layers,
    )
    for fid, per_layer in stream:
        for layer in layers:
            x = check_finite_features(per_layer[layer], f"{audio[fid]} (layer {layer})")
            out[layer][fid] = x.to("cpu", dtype)
        bar.update(1)
    bar.close()
    return out


def model_abx(
    items: Items,
    encoder: Encoder,
    audio: Mapping[str, str | Path],
    layers: Sequence[int],
    config: ABXConfig,
    *,
    label: str,
    speakers: tuple[Literal["within", "across"], ...] = ("within",),
    contexts: tuple[Literal["within", "any"], ...] = ("within",),
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> list[ABXResult]:
    """``spidrkit abx --model``: the ABX results of every layer of ``encoder`` (features of the
    ``audio`` of each item file id, computed in memory by :func:`model_features`), every mode."""
    feats = model_features(encoder, audio, layers, show_progress=show_progress)
    results: list[ABXResult] = []
    for layer in layers:
        results += compute_abx_modes(
            items,
            feats.pop(layer),
            config,
            speakers=speakers,
            contexts=contexts,
            label=label,
            layer=layer,
            device=device,
            show_progress=show_progress,
        )
    return results
