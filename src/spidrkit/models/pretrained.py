"""A model by preset name (random or published weights, cached) or by checkpoint path."""

from __future__ import annotations

from pathlib import Path

from spidrkit.errors import CheckpointError
from spidrkit.models.checkpoint import load_model, load_state, read_checkpoint
from spidrkit.models.hub import fetch_preset
from spidrkit.models.presets import PRESETS
from spidrkit.models.spidr import DinoSR, SpidR, build_model


def load_pretrained(
    name_or_path: str | Path, *, model_type: str | None = None, offline: bool | None = None
) -> SpidR | DinoSR:
    """Preset name ("spidr_base", "spidr_tiny", ...) or checkpoint path (.pt, .safetensors,
    fairseq) -> the model (train mode, on the CPU); published weights are downloaded once."""
    name = str(name_or_path)
    preset = PRESETS.get(name)
    if preset is not None:
        model = build_model(preset.model_type, preset.config)
        if preset.url is not None:
            ckpt = read_checkpoint(fetch_preset(name, offline=offline))
            load_state(model, ckpt.state_dict, source=name)
        return model
    path = Path(name)
    if not path.exists():
        known = ", ".join(PRESETS)
        raise CheckpointError(f"{name}: no such checkpoint file or preset (presets: {known})")
    return load_model(path, model_type=model_type)
