"""Model configurations with the official field names and defaults (base size).

Field names are those of the official release's configs (which follow fairseq/torchaudio), so an official
``config.json`` loads as-is: ``SpidRConfig(**json.load(f))``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from spidrkit.config import BIG, PROB, UNIT, Range, count, from_dict, ranged
from spidrkit.errors import ConfigError

ConvLayerConfig = tuple[tuple[int, int, int], ...]

BASE_CONV_LAYERS: ConvLayerConfig = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


EXTENSION_FIELDS: tuple[str, ...] = (
    "codebook_distance",
    "codebook_balance",
    "warmup_targets",
    "warmup_target_steps",
    "warmup_unmasked_weight",
    "warmup_regression_weight",
)
"""Model fields that the official release does not have (small-scale training controls)."""


@dataclass(frozen=True)
class _EncoderConfig:
    """Fields shared by SpidR and DinoSR (the student/teacher encoder and the codebooks)."""

    RANGES: ClassVar[dict[str, Range]] = {
        "extractor_conv_layer_config": count(1, 1 << 14),  # every channel, kernel and stride
        "encoder_embed_dim": count(1, 1 << 14),
        "encoder_projection_dropout": PROB,
        "encoder_pos_conv_kernel": count(1, 1 << 12),
        "encoder_pos_conv_groups": count(1, 1 << 14),
        "encoder_pos_conv_depth": count(1, 64),
        "encoder_num_layers": count(1, 256),
        "encoder_num_heads": count(1, 1 << 10),
        "encoder_attention_dropout": PROB,
        "encoder_ff_interm_features": count(1, 1 << 16),
        "encoder_ff_interm_dropout": PROB,
        "encoder_dropout": PROB,
        "encoder_layer_drop": PROB,
        "codebook_size": count(2, 1 << 20),
        "codebook_decay": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "codebook_balance": UNIT,
        "warmup_target_steps": count(0, BIG),
        "warmup_unmasked_weight": Range(0.0, 100.0),
        "warmup_regression_weight": Range(0.0, 100.0),
        "num_codebooks": count(1, 256),
        "ema_start_decay": UNIT,
        "ema_final_decay": UNIT,
        "ema_final_step": count(0, BIG),
        "freeze_step": count(0, BIG),
    }
    """Domain of each numeric field (checked by :func:`spidrkit.config.field_problems`)."""

    extractor_mode: Literal["layer_norm", "group_norm"] = "layer_norm"
    """Feature-extractor norm: LayerNorm after every conv, or GroupNorm after the first only."""
    extractor_conv_bias: bool = False
    extractor_conv_layer_config: ConvLayerConfig = BASE_CONV_LAYERS
    """(channels, kernel, stride) of each conv block of the feature extractor."""
    encoder_embed_dim: int = 768
    encoder_projection_dropout: float = 0.0
    """Dropout on the projected features before masking (fairseq ``dropout_input``)."""
    encoder_pos_conv_kernel: int = 95
    encoder_pos_conv_groups: int = 16
    encoder_pos_conv_depth: int = 5
    encoder_num_layers: int = 12
    encoder_num_heads: int = 12
    encoder_attention_dropout: float = 0.1
    encoder_ff_interm_features: int = 3072
    encoder_ff_interm_dropout: float = 0.0
    encoder_dropout: float = 0.1
    encoder_layer_norm_first: bool = False
    encoder_layer_drop: float = 0.0
    encoder_qkv_bias: bool = False
    codebook_size: int = 256
    """V: codewords per codebook."""
    codebook_decay: float = 0.9
    codebook_distance: Literal["euclidean", "cosine"] = "euclidean"
    """Nearest-codeword rule: "euclidean" (official) or "cosine" (spherical k-means; a small-scale
    training control that keeps codebooks from collapsing, see docs/training.md)."""
    codebook_balance: float = 0.0
    """Load-balancing rate: > 0 adds a per-codeword bias, raised for under-used codewords and lowered
    for over-used ones by this much each step (a small-scale training control; 0 = official)."""
    warmup_targets: Literal["none", "mfcc"] = "none"
    """Small-scale control: during the first ``warmup_target_steps`` steps every head predicts the
    code of the masked frame's MFCC (39-d, normalised per utterance) under an online k-means codebook
    of its own (``warmup_codebook``), as HuBERT's first iteration, instead of the teacher's code. The
    teacher and its codebooks follow the student throughout. "none" = official."""
    warmup_target_steps: int = 0
    warmup_unmasked_weight: float = 0.0
    """During the MFCC warm-up, also predict the MFCC codes of the unmasked frames, with this weight
    (as HuBERT's ``pred_nomask_weight``): the loss becomes masked + weight x unmasked."""
    warmup_regression_weight: float = 0.0
    """During the MFCC warm-up, also regress the (target view's) normalised MFCC frames themselves
    from every head's input through a linear map per head (``warmup_regressors``), on all frames,
    with this weight (mean squared error): a dense signal that teaches the front end faster than
    64-way codes, and with a clean target view, to denoise (as PASE+'s regression workers)."""
    num_codebooks: int = 8
    """K: one codebook (and one prediction head) for each of the top K teacher layers."""
    ema_start_decay: float = 0.999
    ema_final_decay: float = 0.9999
    ema_final_step: int = 30000
    ema_exclude_layers: tuple[str, ...] = ("pos_conv_embed",)
    """Teacher submodules copied from the student instead of averaged."""
    freeze_step: int = 200000
    """Step at which the feature extractor and projection stop training."""

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so configs stay hashable and frozen.
        conv = tuple(tuple(int(v) for v in layer) for layer in self.extractor_conv_layer_config)
        object.__setattr__(self, "extractor_conv_layer_config", conv)
        object.__setattr__(self, "ema_exclude_layers", tuple(self.ema_exclude_layers))

    @ranged
    def validate(self) -> list[str]:
        """Every problem with this config, as ``field: message`` strings."""
        problems = []  # the range of each field is in RANGES; here, the rules between fields
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append(
                f"encoder_embed_dim: {self.encoder_embed_dim} is not divisible by "
                f"encoder_num_heads={self.encoder_num_heads}"
            )
        if self.encoder_embed_dim % self.encoder_pos_conv_groups:
            problems.append(
                f"encoder_pos_conv_groups: {self.encoder_pos_conv_groups} does not divide "
                f"encoder_embed_dim={self.encoder_embed_dim}"
            )
        if self.num_codebooks > self.encoder_num_layers:
            problems.append(
                f"num_codebooks: {self.num_codebooks} must be in [1, encoder_num_layers="
                f"{self.encoder_num_layers}]"
            )
        if self.codebook_distance not in ("euclidean", "cosine"):
            problems.append(
                f"codebook_distance: {self.codebook_distance!r} is not euclidean/cosine"
            )
        if self.warmup_targets not in ("none", "mfcc"):
            problems.append(f"warmup_targets: {self.warmup_targets!r} is not none/mfcc")
        if self.extractor_mode not in ("layer_norm", "group_norm"):
            problems.append(f"extractor_mode: {self.extractor_mode!r} is not layer_norm/group_norm")
        if not 1 <= len(self.extractor_conv_layer_config) <= 32 or any(
            len(layer) != 3 for layer in self.extractor_conv_layer_config
        ):
            problems.append(
                "extractor_conv_layer_config: need 1 to 32 (channels, kernel, stride) triples"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of tuples), the format of the official ``config.json``.

        spidrkit-only fields (:data:`EXTENSION_FIELDS`) are left out while at their defaults, so a
        config of the official recipe stays loadable by the official code.
        """
        out = dataclasses.asdict(self)
        for name in EXTENSION_FIELDS:
            if name in out and out[name] == type(self).__dataclass_fields__[name].default:
                del out[name]
        out["extractor_conv_layer_config"] = [list(x) for x in self.extractor_conv_layer_config]
        out["ema_exclude_layers"] = list(self.ema_exclude_layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _EncoderConfig:
        """Build from a dict, rejecting unknown keys by name."""
        return from_dict(cls, data)


@dataclass(frozen=True)
class SpidRConfig(_EncoderConfig):
    """SpidR: one prediction head per top-K layer, on the student's same layer.

    Teacher decay ``d(t) = 1 - (1 - ema_start_decay) * exp(-t / ema_timescale)``, 1 once
    ``1 - d <= ema_threshold``.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "ema_timescale": count(1, BIG),
        "ema_threshold": Range(0.0, 1.0, lo_open=True, hi_open=True),
    }

    ema_timescale: int = 20000
    ema_threshold: float = 1e-7


@dataclass(frozen=True)
class DinoSRConfig(_EncoderConfig):
    """DinoSR: all K prediction heads on the student's last layer.

    Teacher decay: linear from ``ema_start_decay`` to ``ema_final_decay`` over ``ema_final_step``
    steps, then constant, then 1 (teacher frozen) from ``freeze_step``.
    """

    encoder_layer_drop: float = 0.05


ModelConfig = SpidRConfig | DinoSRConfig
ModelType = Literal["spidr", "dinosr"]


def config_class(model_type: str) -> type[SpidRConfig] | type[DinoSRConfig]:
    """The config class of a model type ("spidr" or "dinosr")."""
    try:
        return {"spidr": SpidRConfig, "dinosr": DinoSRConfig}[model_type]
    except KeyError:
        raise ConfigError(f"model type {model_type!r}: expected 'spidr' or 'dinosr'") from None


def tiny_overrides() -> dict[str, Any]:
    """Sizes of the tiny test configuration (as in the parity fixtures)."""
    return dict(
        extractor_conv_layer_config=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
        encoder_embed_dim=64,
        encoder_num_layers=4,
        encoder_num_heads=4,
        encoder_ff_interm_features=128,
        codebook_size=16,
        num_codebooks=3,
        encoder_attention_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_drop=0.0,
    )
