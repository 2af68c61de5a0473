"""SpidR and DinoSR models (plain nn.Modules, no I/O), their configs and presets."""

from spidrkit.models.components import num_frames as _num_frames
from spidrkit.models.config import DinoSRConfig, SpidRConfig, config_class
from spidrkit.models.presets import PRESETS, Preset
from spidrkit.models.spidr import DinoSR, SpidR, build_model, model_type_of


def num_frames(num_samples, cfg: SpidRConfig | DinoSRConfig | None = None):  # type: ignore[no-untyped-def]
    """Frames out of the model for ``num_samples`` samples (base conv stack by default: 16000 -> 49)."""
    cfg = cfg or SpidRConfig()
    return _num_frames(num_samples, cfg.extractor_conv_layer_config)


__all__ = [
    "DinoSR",
    "DinoSRConfig",
    "PRESETS",
    "Preset",
    "SpidR",
    "SpidRConfig",
    "build_model",
    "config_class",
    "model_type_of",
    "num_frames",
]
