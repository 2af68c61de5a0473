"""Configs of the unit language model and of its training run (frozen dataclasses, TOML in).

``UnitLMConfig()`` is OPT-125M as used by the SpidR paper's spoken LM (12 layers, 768 wide, 12
heads, 3072 feed-forward, 2048 learned positions, pre-LN, ReLU, tied input/output embeddings).
``LM_PRESETS`` holds that size and tiny ones that train in seconds on a CPU (the tests use
``lm_tiny``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from spidrkit.config import BIG, PROB, Range, count, from_dict, ranged, to_dict
from spidrkit.errors import ConfigError
from spidrkit.lm.vocab import NUM_SPECIALS
from spidrkit.train.config import CommonRunConfig, OptimizerConfig


@dataclass(frozen=True)
class UnitLMConfig:
    """Decoder-only Transformer over discrete units. OPT names in brackets."""

    RANGES: ClassVar[dict[str, Range]] = {
        "num_units": count(1, 1 << 20),
        "num_layers": count(1, 256),
        "embed_dim": count(1, 1 << 14),
        "num_heads": count(1, 1 << 10),
        "ffn_dim": count(1, 1 << 16),
        "max_positions": count(3, 1 << 20),
        "dropout": PROB,
        "attention_dropout": PROB,
    }

    num_units: int = 256
    """Size of the unit inventory (k-means clusters or codewords); special tokens come on top.
    ``lm-train`` sets it from the data unless ``[model] num_units`` is given (see
    :func:`spidrkit.lm.train.num_units_for`)."""
    num_layers: int = 12
    """Transformer blocks [num_hidden_layers]."""
    embed_dim: int = 768
    """Model width [hidden_size]."""
    num_heads: int = 12
    """Attention heads [num_attention_heads]; must divide ``embed_dim``."""
    ffn_dim: int = 3072
    """Feed-forward hidden size [ffn_dim]."""
    max_positions: int = 2048
    """Longest sequence including the bos/eos tokens [max_position_embeddings]."""
    dropout: float = 0.1
    """Dropout on embeddings, attention output and feed-forward output [dropout]."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities [attention_dropout]."""
    activation: Literal["relu", "gelu"] = "relu"
    """Feed-forward activation [activation_function]."""
    tie_embeddings: bool = True
    """Share the token embedding with the output projection [tie_word_embeddings]."""
    bias: bool = True
    """Biases in linear layers (OPT has them)."""

    @property
    def vocab_size(self) -> int:
        """Units plus the special tokens (pad, bos, eos), see :mod:`spidrkit.lm.vocab`."""
        return self.num_units + NUM_SPECIALS

    @ranged
    def validate(self) -> list[str]:
        problems = []  # ranges in RANGES (max_positions >= 3: bos, one unit and eos)
        if self.embed_dim % self.num_heads:
            problems.append(
                f"num_heads: {self.num_heads} does not divide embed_dim {self.embed_dim}"
            )
        return problems


LM_PRESETS: dict[str, UnitLMConfig] = {
    # OPT-125M, the SpidR paper's spoken LM (units V=256 of layer 6)
    "opt_125m": UnitLMConfig(),
    # a few hundred thousand parameters: trains in seconds on a laptop CPU
    "lm_small": UnitLMConfig(
        num_layers=4, embed_dim=128, num_heads=4, ffn_dim=512, max_positions=1024, dropout=0.1
    ),
    # what the tests reuse; 512 positions so that synthetic stories fit when scoring
    "lm_tiny": UnitLMConfig(
        num_units=16,
        num_layers=2,
        embed_dim=32,
        num_heads=2,
        ffn_dim=64,
        max_positions=512,
        dropout=0.0,
    ),
}


@dataclass(frozen=True)
class LMDataConfig:
    """Where the unit sequences come from and how they are batched."""

    RANGES: ClassVar[dict[str, Range]] = {
        "valid_fraction": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "block_size": count(3, 1 << 20),
        "max_tokens": count(3, 1 << 28),
        "num_workers": count(0, 1024),
    }

    train: Path = Path("units/train.jsonl")
    """Units JSONL of the training set (``spidrkit units`` output)."""
    valid: Path | None = None
    """Units JSONL for validation perplexity; None holds out ``valid_fraction`` of ``train``."""
    kmeans: Path | None = None
    """The k-means model (``spidrkit kmeans`` output) the units come from: its k is the number of
    units of the LM. Without it (and without ``[model] num_units``) the largest unit + 1 is used."""
    valid_fraction: float = 0.01
    """Share of training utterances held out when ``valid`` is not given (at least one)."""
    deduplicate: bool = True
    """Merge consecutive repeated units (the SpidR/GSLM recipe) unless the file already is."""
    batching: Literal["pack", "bucket"] = "pack"
    """``pack``: concatenate ``bos u... eos`` sequences into blocks of ``block_size`` tokens (no
    padding, as fairseq's ``sample_break_mode=none``); ``bucket``: one utterance per row, rows of
    similar length batched together up to ``max_tokens`` (padding masked out of the loss)."""
    block_size: int = 1024
    """Tokens per packed row (``pack``), or the length at which utterances are cut (``bucket``)."""
    max_tokens: int = 16384
    """Tokens per batch per device (``block_size`` x rows for ``pack``)."""
    num_workers: int = 0
    """DataLoader worker processes."""

    @ranged
    def validate(self) -> list[str]:
        problems = []
        if self.max_tokens < self.block_size:
            problems.append(
                f"max_tokens: {self.max_tokens} is smaller than block_size {self.block_size}"
            )
        return problems


@dataclass(frozen=True)
class LMOptimizerConfig(OptimizerConfig):
    """``[optimizer]``: the pretraining :class:`~spidrkit.train.config.OptimizerConfig` (same
    fields, same AdamW and schedules), with the unit LM's defaults: betas (0.9, 0.98), eps 1e-8,
    clip_norm 1.0, 1000 warm-up steps, then a cosine decay to 0 at ``run.max_steps``."""

    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    clip_norm: float = 1.0
    scheduler: Literal["tristage", "cosine", "constant"] = "cosine"
    warmup_steps: int = 1000
    final_lr_scale: float = 0.0


@dataclass(frozen=True)
class LMValidationConfig:
    """``[validation]``: validation loss on ``data.valid`` (or the held-out share)."""

    RANGES: ClassVar[dict[str, Range]] = {"interval": count(0, BIG)}

    interval: int = 1000
    """Steps between validations (0 = only at the end), as pretraining's ``validation.interval``."""

    @ranged
    def validate(self) -> list[str]:
        return []


@dataclass(frozen=True)
class LMRunConfig(CommonRunConfig):
    """``[run]``: the keys of pretraining's ``[run]`` that every training command has
    (:class:`~spidrkit.train.config.CommonRunConfig`: output_dir, max_steps, seed, device,
    precision, compile (CUDA only here), log_interval, save_interval, keep_last, resume, progress,
    tensorboard, wandb_project, wandb_name) with the unit LM's defaults, and ``grad_accum``.
    ``keep_last`` counts ``checkpoint_<step>.pt`` files; ``best.pt`` (the lowest validation loss)
    is kept too."""

    RANGES: ClassVar[dict[str, Range]] = {"grad_accum": count(1, 1 << 16)}

    output_dir: Path = Path("runs/lm")
    max_steps: int = 20000
    log_interval: int = 50
    save_interval: int = 1000
    keep_last: int = 2
    grad_accum: int = 1
    """Micro-batches per optimizer step."""


@dataclass(frozen=True)
class LMTrainConfig:
    """The whole ``spidrkit lm-train`` config: ``preset`` picks a size, ``[model]`` overrides it."""

    preset: str = "opt_125m"
    """Name in :data:`LM_PRESETS`; keys in ``[model]`` override the preset's fields."""
    model: dict = field(default_factory=dict)
    data: LMDataConfig = field(default_factory=LMDataConfig)
    optimizer: LMOptimizerConfig = field(default_factory=LMOptimizerConfig)
    validation: LMValidationConfig = field(default_factory=LMValidationConfig)
    run: LMRunConfig = field(default_factory=LMRunConfig)

    @ranged
    def validate(self) -> list[str]:
        if self.preset not in LM_PRESETS:
            return [f"preset: {self.preset!r} is not one of {sorted(LM_PRESETS)}"]

        try:
            self.model_config()
        except ConfigError as exc:  # one line per problem, after the "invalid config:" header
            return [f"model.{line.strip()}" for line in str(exc).splitlines()[1:]]
        return []

    def model_config(self) -> UnitLMConfig:
        """The preset with the ``[model]`` keys applied (validated)."""
        base = to_dict(LM_PRESETS[self.preset])
        base.update(self.model)
        return from_dict(UnitLMConfig, base)


def model_config_from_dict(data: dict) -> UnitLMConfig:
    """Rebuild a :class:`UnitLMConfig` saved by :func:`dataclasses.asdict` in a checkpoint."""
    names = {f.name for f in dataclasses.fields(UnitLMConfig)}
    return UnitLMConfig(**{k: v for k, v in data.items() if k in names})
