"""One table of named models: config, weights URL and SHA-256 (docs/models.md, "Named models")."""

from __future__ import annotations

from dataclasses import dataclass

from spidrkit.models.config import DinoSRConfig, SpidRConfig, tiny_overrides


@dataclass(frozen=True)
class Preset:
    """A named model: its type, config, and (for published weights) where to get them."""

    model_type: str
    config: SpidRConfig | DinoSRConfig
    url: str | None = None
    sha256: str | None = None
    """Pinned SHA-256 of the file at ``url``; None means not pinned (the hash is printed on download)."""
    fairseq: bool = False
    """True when the file at ``url`` is in the original fairseq DinoSR layout."""
    description: str = ""


_BASE_URL = "https://dl.fbaipublicfiles.com/shared/devai/assets/models"

PRESETS: dict[str, Preset] = {
    "spidr_base": Preset(
        "spidr",
        SpidRConfig(),
        f"{_BASE_URL}/spidr_base.pt",
        description="SpidR base (official release, LibriSpeech 960 h, 400k steps)",
    ),
    "dinosr_base_reproduced": Preset(
        "dinosr",
        DinoSRConfig(),
        f"{_BASE_URL}/dinosr_base_reproduced.pt",
        description="DinoSR base reproduced with the SpidR code (official release)",
    ),
    "dinosr_base_original": Preset(
        "dinosr",
        DinoSRConfig(encoder_qkv_bias=True),
        "https://data.csail.mit.edu/placesaudio/dinosr/dinosr.ckpt",
        fairseq=True,
        description="original fairseq DinoSR (Liu et al. 2023), converted on load",
    ),
    "spidr_tiny": Preset(
        "spidr",
        SpidRConfig(**tiny_overrides()),
        description="tiny SpidR for tests and CPU smoke runs (random weights)",
    ),
    "dinosr_tiny": Preset(
        "dinosr",
        DinoSRConfig(**tiny_overrides()),
        description="tiny DinoSR for tests and CPU smoke runs (random weights)",
    ),
}
