"""Features of a SpidR/DinoSR checkpoint for ABX, computed in memory from audio (no feature files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from spidrkit.audio import load_audio
from spidrkit.audio.io import AUDIO_EXTENSIONS, SAMPLE_RATE
from spidrkit.data.manifest import read_manifest
from spidrkit.errors import DataError
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
    encoder,
    audio: Mapping[str, str | Path],
    layers: Sequence[int],
    batch_files: int = 8,
    dtype: torch.dtype = torch.float16,
    show_progress: bool = True,
) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer: {fileid: [T, D]}}`` from ``encoder.features`` (a :func:`spidrkit.load` encoder).

    Features are kept on the CPU in ``dtype`` (float16 halves the memory of many layers; ABX
    distances are computed in float32).
    """
    out: dict[int, dict[str, torch.Tensor]] = {layer: {} for layer in layers}
    fileids = sorted(audio)
    bar = progress(total=len(fileids), desc="features", enabled=show_progress)
    for k in range(0, len(fileids), batch_files):
        chunk = fileids[k : k + batch_files]
        wavs = [torch.from_numpy(load_audio(audio[f], name=str(audio[f]))) for f in chunk]
        feats = encoder.features(wavs, sample_rate=SAMPLE_RATE, layers=list(layers))
        for fid, per_layer in zip(chunk, feats, strict=True):
            for layer in layers:
                x = check_finite_features(
                    per_layer[layer].detach(), f"{audio[fid]} (layer {layer})"
                )
                out[layer][fid] = x.to("cpu", dtype)
        bar.update(len(chunk))
    bar.close()
    return out
