"""Summaries of a checkpoint for ``spidrkit info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spidrkit.models.checkpoint import load_model, read_checkpoint
from spidrkit.models.codebook import Codebook
from spidrkit.models.presets import PRESETS
from spidrkit.models.spidr import build_model, model_type_of


def describe(source: str, model_type: str | None = None) -> dict[str, Any]:
    """Model type, config, parameter counts, step and codebook usage of a checkpoint or preset."""
    step: int | None
    if source in PRESETS and not Path(source).exists():
        preset = PRESETS[source]
        model = build_model(preset.model_type, preset.config)
        fmt, step = "preset (random weights)", 0
    else:
        ckpt = read_checkpoint(source)
        model = load_model(source, model_type=model_type)
        fmt, step = ckpt.source_format, ckpt.step
    groups: dict[str, int] = {}
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        groups[top] = groups.get(top, 0) + p.numel()
    groups["total"] = sum(groups.values())
    codebooks = []
    for i, (cb, layer) in enumerate(zip(model.codebooks, model.codebook_layers)):
        assert isinstance(cb, Codebook)
        counts = cb.counts.double()
        share = counts / counts.sum()
        ppl = float(torch.exp(-(share * share.clamp_min(1e-30).log()).sum()))
        codebooks.append(
            {
                "index": i,
                "layer": layer + 1,
                "size": cb.size,
                "active": int((counts > 1.0).sum()),
                "count_perplexity": ppl,
            }
        )
    return {
        "source": str(source),
        "format": fmt,
        "model_type": model_type_of(model),
        "step": step,
        "parameters": groups,
        "codebooks": codebooks,
        "config": model.config.to_dict(),
    }
