"""The pretraining config: ``[run]``, ``[data]``, ``[model]``, ``[optimizer]``, ``[masking]``,
``[validation]`` sections of one TOML file, with the official recipe as defaults (docs/training.md, "The config").

``[data]`` and ``[masking]`` are :class:`spidrkit.data.config.DataConfig` and ``MaskingConfig``;
``[model]`` holds :class:`~spidrkit.models.SpidRConfig` or ``DinoSRConfig`` fields, chosen by
``run.model_type``. :func:`load_train_config` reports every unknown key and bad value at once, each
named by its dotted path (``optimizer.lr: expected a number, got 'fast'``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from spidrkit.config import (
    BIG,
    SEED,
    UNIT,
    Range,
    apply_overrides,
    count,
    from_dict,
    ranged,
    read_toml,
    to_dict,
)
from spidrkit.data.config import DataConfig, MaskingConfig
from spidrkit.errors import ConfigError
from spidrkit.models import DinoSRConfig, SpidRConfig, config_class
from spidrkit.utils.precision import Precision


def _typed(validate: Callable[[Any], list[str]]) -> Callable[[Any], list[str]]:
    """Skip range checks when a field has the wrong type (that error is already reported)."""

    @functools.wraps(validate)
    def wrapper(self: Any) -> list[str]:
        try:
            return validate(self)
        except TypeError:
            return []

    return wrapper


@dataclass(frozen=True)
class CommonRunConfig:
    """The ``[run]`` keys of every training command (``spidrkit train`` and ``spidrkit lm-train``):
    what :func:`spidrkit.train.fit.fit` reads. Each command's ``[run]`` adds its own keys and
    defaults.

    output_dir: the run folder: checkpoints, ``config.json``, ``metrics.jsonl`` and ``tb/``.
    max_steps: optimizer steps to train for.
    seed: seeds the model init, data order, crops, masks and dropout [0].
    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N" [auto].
    precision: autocast dtype: "fp32" (none), "bf16", "fp16" (with a GradScaler), "auto" (bf16 on
        GPUs that support it, else fp32), as in :mod:`spidrkit.utils.precision`.
    compile: wrap the model in torch.compile [False].
    log_interval: steps between metrics lines and progress-bar updates.
    save_interval: steps between checkpoints (one is always written at the end).
    keep_last: checkpoints kept (older ones are deleted; 0 keeps all).
    resume: continue from the newest complete checkpoint in ``output_dir`` if there is one; false
        refuses an earlier run there (``--no-resume``; ``--overwrite`` moves it aside) [True].
    progress: show a progress bar (``--no-progress``) [True].
    tensorboard: write TensorBoard event files (needs the ``train`` extra) [True].
    wandb_project / wandb_name: log to Weights & Biases too (needs the ``wandb`` extra) [off].
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "max_steps": count(1, BIG),
        "seed": SEED,
        "log_interval": count(1, BIG),
        "save_interval": count(1, BIG),
        "keep_last": count(0, 1 << 20),
    }

    output_dir: Path = Path("runs/run")
    max_steps: int = 400_000
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"
    compile: bool = False
    log_interval: int = 100
    save_interval: int = 10_000
    keep_last: int = 3
    resume: bool = True
    progress: bool = True
    tensorboard: bool = True
    wandb_project: str | None = None
    wandb_name: str | None = None

    def _device_problems(self) -> list[str]:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            return [f"device: {self.device!r} is not auto, cpu, cuda or cuda:N"]
        return []

    @_typed
    @ranged
    def validate(self) -> list[str]:
        return self._device_problems()


@dataclass(frozen=True)
class RunConfig(CommonRunConfig):
    """What to pretrain, where to write it, and how to run it: the :class:`CommonRunConfig` keys
    (official defaults: output_dir [runs/spidr], max_steps [400_000], precision [bf16],
    log_interval [100], save_interval [10_000], keep_last [3]) and:

    model_type: "spidr" or "dinosr" (selects the ``[model]`` fields) [spidr].
    init_checkpoint: start from a pretrained model (continued pretraining, adaptation): a preset
        with published weights (``spidr_base``, ...), an official/spidrkit checkpoint, a model
        folder, a ``.safetensors`` file or a fairseq DinoSR checkpoint. The ``[model]`` section then
        comes from the checkpoint (keys given override its training controls; architecture keys
        must agree); the optimizer and LR schedule start fresh (:mod:`spidrkit.train.adapt`).
        ``""`` (the ``adapt`` recipe) means: required, give it with ``--init`` [none].
    init_teacher: "checkpoint" (the checkpoint's teacher) or "student" (a copy of its student)
        [checkpoint].
    init_codebooks: "checkpoint" (its codebooks) or "kmeans" (k-means of the teacher's layer
        outputs on ``init_kmeans_seconds`` of the training audio) [checkpoint].
    init_kmeans_seconds: audio sampled for ``init_codebooks = "kmeans"`` [600].
    freeze_extractor: never train the feature extractor and its projection [False].
    freeze_layers: never train the first N student encoder layers [0].
    max_nonfinite_steps: stop with an error after this many non-finite losses in a row [20].
    collapse_min_active: warn when a codebook used fewer than this fraction of its codewords
        between two logs [0.1]; collapse_min_target_ppl: warn below this target perplexity [2.0].
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "max_nonfinite_steps": count(1, 1 << 20),
        "collapse_min_active": UNIT,
        "collapse_min_target_ppl": Range(0.0, float(1 << 20)),
        "init_kmeans_seconds": Range(0.0, 1e7, lo_open=True),
        "freeze_layers": count(0, 1 << 10),
    }

    output_dir: Path = Path("runs/spidr")
    precision: Precision = "bf16"
    model_type: Literal["spidr", "dinosr"] = "spidr"
    init_checkpoint: str | None = None
    init_teacher: Literal["checkpoint", "student"] = "checkpoint"
    init_codebooks: Literal["checkpoint", "kmeans"] = "checkpoint"
    init_kmeans_seconds: float = 600.0
    freeze_extractor: bool = False
    freeze_layers: int = 0
    max_nonfinite_steps: int = 20
    collapse_min_active: float = 0.1
    collapse_min_target_ppl: float = 2.0

    @_typed
    @ranged
    def validate(self) -> list[str]:
        errors = self._device_problems()
        if self.init_checkpoint == "":
            errors.append(
                "init_checkpoint: empty: this config starts from a pretrained model; give it with "
                "spidrkit train CONFIG --init CKPT_OR_PRESET"
            )
        elif not self.init_checkpoint:
            for name, default in (("init_teacher", "checkpoint"), ("init_codebooks", "checkpoint")):
                if getattr(self, name) != default:
                    errors.append(
                        f"{name}: {getattr(self, name)!r} needs run.init_checkpoint "
                        "(spidrkit train CONFIG --init CKPT_OR_PRESET)"
                    )
        return errors


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and its learning-rate schedule (official recipe in brackets).

    lr [5e-4], betas [(0.9, 0.95)], eps [1e-6], weight_decay [0.01]: AdamW (fused on CUDA and CPU).
    clip_norm: clip the global gradient norm to this (0 disables) [10.0].
    scheduler: "tristage" (official), "cosine" or "constant" [tristage].
    warmup_steps [12_000], hold_steps [188_000], decay_steps [200_000]: tri-stage phases;
        cosine uses warmup_steps and decays until run.max_steps; constant uses warmup_steps.
    init_lr_scale: warm-up starts at this fraction of lr [0.01].
    final_lr_scale: decay ends at this fraction of lr [0.01].
    fused: force fused AdamW on/off; None = fused on CUDA and CPU [None].
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "lr": Range(0.0, 10.0, lo_open=True),
        "betas": Range(0.0, 1.0, hi_open=True),
        "eps": Range(0.0, 1.0, lo_open=True),
        "weight_decay": Range(0.0, 100.0),
        "clip_norm": Range(0.0, 1e9),
        "warmup_steps": count(0, BIG),
        "hold_steps": count(0, BIG),
        "decay_steps": count(0, BIG),
        "init_lr_scale": UNIT,
        "final_lr_scale": UNIT,
    }

    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 10.0
    scheduler: Literal["tristage", "cosine", "constant"] = "tristage"
    warmup_steps: int = 12_000
    hold_steps: int = 188_000
    decay_steps: int = 200_000
    init_lr_scale: float = 0.01
    final_lr_scale: float = 0.01
    fused: bool | None = None

    @_typed
    @ranged
    def validate(self) -> list[str]:
        errors = []
        if self.scheduler == "tristage" and self.decay_steps == 0 and self.final_lr_scale != 1.0:
            errors.append("decay_steps: must be > 0 for the tristage scheduler")
        if self.scheduler == "tristage" and self.final_lr_scale == 0.0:
            errors.append("final_lr_scale: must be > 0 for the (exponential) tristage decay")
        return errors


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out loss on ``data.valid_manifests``, in the training process.

    interval: steps between validations (0 = only at the end) [10_000].
    max_batches: cap on batches per manifest (None = all) [None].
    seed: seeds the validation crops and masks, identical at every validation [1234].
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "interval": count(0, BIG),
        "max_batches": count(1, BIG),
        "seed": SEED,
    }

    interval: int = 10_000
    max_batches: int | None = None
    seed: int = 1234

    @ranged
    def validate(self) -> list[str]:
        return []


@dataclass(frozen=True)
class _Sections:
    """Everything but ``[model]``, whose class depends on ``run.model_type``."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass(frozen=True)
class TrainConfig(_Sections):
    """The resolved pretraining config (``config.json`` beside the checkpoints is ``to_dict`` of it)."""

    model: SpidRConfig | DinoSRConfig = field(default_factory=SpidRConfig)

    @property
    def output_dir(self) -> Path:
        return self.run.output_dir

    @property
    def checkpoint_dir(self) -> Path:
        return self.run.output_dir / "checkpoints"

    def to_dict(self) -> dict[str, Any]:
        out = to_dict(self)
        out["model"] = self.model.to_dict()
        return out


def _shortcut_lists(data: dict[str, Any]) -> dict[str, Any]:
    """Let ``data.train_manifests = "a.csv"`` (e.g. from ``--set``) mean a one-item list."""
    section = data.get("data")
    if isinstance(section, dict):
        for key in ("train_manifests", "valid_manifests"):
            if isinstance(section.get(key), str):
                section[key] = [section[key]]
    return data


def train_config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts; every problem is reported at once.

    With ``run.init_checkpoint``, ``[model]`` and ``run.model_type`` come from that checkpoint
    (:func:`spidrkit.train.adapt.resolve_init_config`; a config that does not fit it is one error).
    """
    data = _shortcut_lists(apply_overrides(data, overrides))
    from spidrkit.train.adapt import resolve_init_config

    data = resolve_init_config(data)
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(TrainConfig)})
    errors = [
        f"{k}: unknown section (known: data, masking, model, optimizer, run, validation)"
        for k in unknown
    ]
    sections = {
        k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(_Sections)}
    }
    base = None
    try:
        base = from_dict(_Sections, sections)
    except ConfigError as exc:
        errors += _problems(exc)
    model_type = (sections.get("run") or {}).get("model_type", "spidr")
    model = None
    if model_type in ("spidr", "dinosr"):
        model_data = data.get("model", {})
        if not isinstance(model_data, dict):
            errors.append(f"model: expected a table, got {model_data!r}")
        else:
            try:
                model = from_dict(config_class(model_type), model_data)
            except ConfigError as exc:
                errors += [f"model.{p}" for p in _problems(exc)]
    if base is not None and model is not None:
        errors += _cross_checks(base, model)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    assert base is not None and model is not None
    return TrainConfig(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(_Sections)}, model=model
    )


def min_samples_for_one_frame(model: SpidRConfig | DinoSRConfig) -> int:
    """Shortest waveform (samples) the feature extractor turns into one frame (400 officially)."""
    need = 1
    for _, kernel, stride in reversed(model.extractor_conv_layer_config):
        need = (need - 1) * stride + kernel
    return need


def _cross_checks(base: _Sections, model: SpidRConfig | DinoSRConfig) -> list[str]:
    """Problems that involve two sections."""
    errors: list[str] = []
    try:
        need = min_samples_for_one_frame(model)
    except (TypeError, ValueError):  # a malformed conv config is reported by its own check
        return errors
    if base.run.freeze_layers > model.encoder_num_layers:
        errors.append(
            f"run.freeze_layers: {base.run.freeze_layers} is more than the model's "
            f"{model.encoder_num_layers} encoder layers"
        )
    if base.data.min_sample_size < need:
        errors.append(
            f"data.min_sample_size: {base.data.min_sample_size} samples is shorter than the "
            f"feature extractor's receptive field ({need} samples, one frame); set it >= {need}"
        )
    return errors


def _problems(exc: ConfigError) -> list[str]:
    text = str(exc)
    head = "invalid config:\n  "
    return text[len(head) :].split("\n  ") if text.startswith(head) else [text]


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a pretraining TOML (see configs/tiny.toml) and apply ``--set section.key=value``."""
    data = read_toml(path)
    try:
        return train_config_from_dict(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
