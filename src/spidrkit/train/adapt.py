"""Start a training run from a pretrained model: continued pretraining on new audio (adaptation).

``run.init_checkpoint`` (``spidrkit train CONFIG --init CKPT_OR_PRESET``) names the model: a preset
with published weights (``spidr_base``, ``dinosr_base_reproduced``, ``dinosr_base_original``), an
official or spidrkit checkpoint file, a model folder (``config.json`` + ``model.safetensors``), a
``.safetensors`` file or an original fairseq DinoSR checkpoint. What it does:

- :func:`resolve_init_config`: the ``[model]`` section starts from the checkpoint's own config;
  keys the TOML (or ``--set``) gives explicitly override it. Keys that change the weights' shapes
  or what they compute (:data:`ARCHITECTURE_FIELDS`) must agree with the checkpoint, and so must
  ``run.model_type``: otherwise one :class:`~spidrkit.errors.ConfigError` line lists each
  disagreement. Training controls (dropouts, teacher decay, freeze step, MFCC warm-up, codebook
  decay and balancing) may change.
- :func:`load_init_weights`: student, teacher, heads and codebooks from the checkpoint, the step
  counter back to 0 (the optimizer and LR schedule are fresh: they are built by the trainer), buffers
  that exist only for a training control (``warmup_codebook.*``, ``codebooks.*.bias``) taken when
  both sides have them and otherwise left fresh. ``run.init_teacher = "student"`` replaces the
  teacher by a copy of the student.
- :func:`kmeans_codebooks` (``run.init_codebooks = "kmeans"``): the teacher's codebooks are
  re-initialised by k-means (:func:`lloyd_kmeans`: k-means++ and Lloyd) of the teacher's layer
  outputs on ``run.init_kmeans_seconds`` of the training audio, so targets are spread over the new
  data from the first step.
- :func:`frozen_prefixes`: ``run.freeze_extractor`` and ``run.freeze_layers`` (parameters that the
  optimizer never sees).

The checkpoint records where it started (:meth:`InitSource.record`: the name given, the file, its
SHA-256 and format) under ``"init"``; resuming an adaptation run loads the run's own checkpoint and
never re-reads the initial model's weights.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spidrkit.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from spidrkit.models import DinoSR, SpidR

log = logging.getLogger(__name__)

ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "extractor_mode",
    "extractor_conv_bias",
    "extractor_conv_layer_config",
    "encoder_embed_dim",
    "encoder_pos_conv_kernel",
    "encoder_pos_conv_groups",
    "encoder_pos_conv_depth",
    "encoder_num_layers",
    "encoder_num_heads",
    "encoder_ff_interm_features",
    "encoder_layer_norm_first",
    "encoder_qkv_bias",
    "codebook_size",
    "codebook_distance",
    "num_codebooks",
)
"""Model fields a run started from a checkpoint must share with it (the rest are training controls)."""

TRAINING_ONLY_BUFFERS: tuple[str, ...] = ("warmup_codebook.", ".bias")
"""State keys that exist only with some training controls (MFCC warm-up, codebook balancing)."""


@dataclass(frozen=True)
class InitSource:
    """A pretrained model read for ``run.init_checkpoint``."""

    name: str
    """As given: a preset name or a path."""
    path: Path
    """The file read (the cached download for a preset; ``model.safetensors`` of a folder)."""
    sha256: str
    model_type: str | None
    config: Any
    """Its :class:`~spidrkit.models.SpidRConfig` / ``DinoSRConfig`` when known (else inferred)."""
    state_dict: dict[str, torch.Tensor]
    source_format: str
    step: int | None

    def record(self) -> dict[str, Any]:
        """What a run's checkpoints store under ``"init"``."""
        return {
            "source": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "format": self.source_format,
            "model_type": self.model_type,
            "step": self.step,
        }


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _read_file(key: tuple[str, int, int], source: str) -> tuple[Any, str]:
    from spidrkit.models.checkpoint import read_checkpoint
    from spidrkit.utils.integrity import file_sha256

    return read_checkpoint(source), file_sha256(Path(key[0]))


def read_init_source(name: str, *, offline: bool | None = None) -> InitSource:
    """Read a preset's published weights (downloaded once into the cache) or a checkpoint path.

    The last two files read are kept in memory: the config and the trainer read the same file.
    """
    from spidrkit.models.presets import PRESETS

    preset = PRESETS.get(name)
    config = None
    model_type = None
    if preset is not None:
        if preset.url is None:
            with_weights = ", ".join(k for k, p in PRESETS.items() if p.url)
            raise ConfigError(
                f"run.init_checkpoint: preset {name!r} has no published weights (random init); "
                f"give a checkpoint path or one of: {with_weights}"
            )
        from spidrkit.models.hub import fetch_preset

        path = fetch_preset(name, offline=offline)
        config, model_type = preset.config, preset.model_type
    else:
        path = Path(name)
        if not path.exists():
            raise CheckpointError(
                f"{name}: no such checkpoint file, model folder or preset "
                f"(presets with weights: {', '.join(k for k, p in PRESETS.items() if p.url)})"
            )
    source = str(path)
    if path.is_dir():
        from spidrkit.models.checkpoint import folder_weights

        path = folder_weights(path)
    loaded, digest = _read_file(_file_key(path), source)
    if preset is not None and loaded.source_format == "fairseq" and loaded.config is None:
        loaded = dataclasses.replace(loaded, config=config)
    return InitSource(
        name=name,
        path=path,
        sha256=digest,
        model_type=loaded.model_type or model_type,
        config=loaded.config or config,
        state_dict=loaded.state_dict,
        source_format=loaded.source_format,
        step=loaded.step,
    )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return str([list(v) if isinstance(v, tuple) else v for v in value]).replace(" ", "")
    return repr(value)


def resolve_init_config(data: dict[str, Any]) -> dict[str, Any]:
    """The config dict with ``[model]`` and ``run.model_type`` taken from ``run.init_checkpoint``.

    ``data`` is the TOML dict with ``--set`` overrides applied; keys given in ``[model]`` win over
    the checkpoint's, and architecture keys (and ``run.model_type``) that disagree with it raise one
    ConfigError line. Returns ``data`` unchanged when no init checkpoint is set.
    """
    run = data.get("run")
    if not isinstance(run, dict) or not run.get("init_checkpoint"):
        return data
    name = run["init_checkpoint"]
    if not isinstance(name, str):
        return data  # the type error is reported by the normal validation
    from spidrkit.config import from_dict
    from spidrkit.models import config_class
    from spidrkit.models.checkpoint import infer_config

    src = read_init_source(name)
    given_type = run.get("model_type")
    if given_type is not None and src.model_type is not None and given_type != src.model_type:
        raise ConfigError(
            f"run.init_checkpoint {name}: a {src.model_type} checkpoint, but the config trains "
            f"run.model_type = {given_type!r}; drop run.model_type or set it to {src.model_type!r}"
        )
    model_type = src.model_type or given_type or "spidr"
    if model_type not in ("spidr", "dinosr"):
        return data
    base = src.config or infer_config(src.state_dict, model_type)
    given = data.get("model") or {}
    if not isinstance(given, dict):
        return data
    try:
        merged = from_dict(config_class(model_type), {**base.to_dict(), **given})
    except ConfigError:
        merged = None  # reported with its key by the normal validation below
    if merged is not None:
        clash = [
            f"model.{k} = {_show(getattr(merged, k))} in the config, "
            f"{_show(getattr(base, k))} in the checkpoint"
            for k in ARCHITECTURE_FIELDS
            if k in given and getattr(merged, k) != getattr(base, k)
        ]
        if clash:
            raise ConfigError(
                f"run.init_checkpoint {name}: the config does not fit this checkpoint: "
                + "; ".join(clash)
                + " (remove these keys to take the checkpoint's architecture, as the adapt recipe does)"
            )
    out = dict(data)
    out["run"] = {**run, "model_type": model_type}
    out["model"] = {**base.to_dict(), **given}
    return out


# ------------------------------------------------------------------------------------- weights


def load_init_weights(model: nn.Module, src: InitSource, *, teacher: str = "checkpoint") -> None:
    """Copy ``src``'s weights into ``model`` (strictly, but for training-only buffers), reset the
    step counter to 0 and, with ``teacher="student"``, make the teacher a copy of the student."""
    own = model.state_dict()
    state = dict(src.state_dict)
    for key in list(state):
        if key not in own and _training_only(key):
            del state[key]
    for key, value in own.items():
        if key not in state and _training_only(key):
            state[key] = value  # keep the fresh buffer
    if "current_step" in own:
        state["current_step"] = torch.zeros_like(own["current_step"])
    from spidrkit.models.checkpoint import load_state

    load_state(model, state, source=f"run.init_checkpoint {src.name}")  # type: ignore[arg-type]
    if teacher == "student":
        student = getattr(model, "student", None)
        target = getattr(model, "teacher", None)
        if not isinstance(student, nn.Module) or not isinstance(target, nn.Module):
            raise ConfigError("run.init_teacher = 'student': the model has no student/teacher")
        target.load_state_dict(student.state_dict())
    log.info(
        "initialised from %s (%s, sha256 %s, step %s; teacher from the %s)",
        src.name,
        src.source_format,
        src.sha256[:12],
        src.step,
        "student" if teacher == "student" else "checkpoint",
    )


def _training_only(key: str) -> bool:
    return key.startswith(TRAINING_ONLY_BUFFERS[0]) or (
        key.startswith("codebooks.") and key.endswith(TRAINING_ONLY_BUFFERS[1])
    )


def frozen_prefixes(freeze_extractor: bool, freeze_layers: int) -> tuple[str, ...]:
    """Parameter-name prefixes that ``run.freeze_extractor`` / ``run.freeze_layers`` keep fixed."""
    out = ["feature_extractor.", "feature_projection."] if freeze_extractor else []
    out += [f"student.layers.{i}." for i in range(freeze_layers)]
    return tuple(out)


# ----------------------------------------------------------------------------------- codebooks


@torch.no_grad()
def teacher_targets(
    model: SpidR | DinoSR, batches: Iterable[Any], max_frames: int
) -> list[torch.Tensor]:
    """For each codebook, the teacher's targets (the instance-normalised layer outputs the
    codebooks quantise) of the unpadded frames of ``batches``, up to ``max_frames`` frames."""
    from spidrkit.models.spidr import _instance_norm

    layers = list(model.codebook_layers)
    device = next(model.parameters()).device
    out: list[list[torch.Tensor]] = [[] for _ in layers]
    held = 0
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            wav = batch.waveforms.to(device)
            am = batch.attention_mask
            am = None if am is None else am.to(device)
            feats = model.features(wav)  # type: ignore[operator]
            _, results, _ = model.teacher(feats, am)  # type: ignore[operator]
            valid = (
                torch.ones(feats.shape[:2], dtype=torch.bool, device=device)
                if am is None
                else am.reshape(feats.shape[0], -1)[:, : feats.shape[1]]
            )
            for j, i in enumerate(layers):
                out[j].append(_instance_norm(results[i])[valid].float().cpu())
            held += int(valid.sum())
            if held >= max_frames:
                break
    finally:
        model.train(was_training)
    if held == 0:
        raise ConfigError("run.init_codebooks = 'kmeans': the training data gave no frames")
    return [torch.cat(x)[:max_frames] for x in out]


def lloyd_kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 30) -> tuple[torch.Tensor, float]:
    """k-means of ``x`` [N, D]: k-means++ seeding then Lloyd iterations (an empty cluster is
    re-seeded on the frame farthest from its centroid); deterministic for a seed. Returns the
    centroids [k, D] and the mean squared distance of a frame to its centroid."""
    gen = torch.Generator().manual_seed(seed)
    x = x.float().cpu()
    n = x.shape[0]
    sq = (x * x).sum(1)
    centroids = x[torch.randint(n, (1,), generator=gen)]
    best = (sq - 2 * x @ centroids[0] + centroids[0].dot(centroids[0])).clamp_min(0)
    for _ in range(1, k):  # k-means++: the next seed with probability ~ squared distance
        pick = torch.multinomial(best + 1e-12, 1, generator=gen)
        centroids = torch.cat([centroids, x[pick]])
        c = x[pick][0]
        best = torch.minimum(best, (sq - 2 * x @ c + c.dot(c)).clamp_min(0))
    for _ in range(iters):
        dist = (
            sq[:, None] - 2 * x @ centroids.t() + (centroids * centroids).sum(1)[None]
        ).clamp_min(0)
        d, labels = dist.min(1)
        counts = torch.bincount(labels, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        empty = counts == 0
        new = torch.where(empty[:, None], centroids, sums / counts.clamp_min(1)[:, None])
        if bool(empty.any()):
            far = d.topk(int(empty.sum())).indices
            new[empty] = x[far]
        if torch.equal(new, centroids):
            break
        centroids = new
    dist = (sq[:, None] - 2 * x @ centroids.t() + (centroids * centroids).sum(1)[None]).clamp_min(0)
    return centroids, float(dist.min(1).values.mean())


@torch.no_grad()
def kmeans_codebooks(model: SpidR | DinoSR, targets: list[torch.Tensor], seed: int) -> list[float]:
    """Set each codebook to the k-means centroids of its targets (counts 1, balancing bias 0);
    returns the inertia per frame of each. Cosine codebooks cluster L2-normalised targets."""
    import torch.nn.functional as F

    from spidrkit.models.codebook import Codebook

    inertia = []
    codebooks = model.codebooks
    for i, (cb, x) in enumerate(zip(codebooks, targets)):
        assert isinstance(cb, Codebook)
        if cb.distance == "cosine":
            x = F.normalize(x, dim=-1)
        if x.shape[0] < cb.size:
            raise ConfigError(
                f"run.init_codebooks = 'kmeans': {x.shape[0]} frames for {cb.size} codewords; "
                "raise run.init_kmeans_seconds or give more training audio"
            )
        centroids, per_frame = lloyd_kmeans(x, cb.size, seed + i)
        cb.codebook.copy_(centroids.to(cb.codebook.device, cb.codebook.dtype))
        cb.counts.fill_(1.0)
        bias = getattr(cb, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()
        inertia.append(per_frame)
    return inertia


def sample_batches(cfg: Any) -> Iterable[Any]:
    """Batches of the training data for the codebook k-means: the same on every rank (drawn with
    ``run.seed + 1``, no masking, in this process)."""
    from spidrkit.data import conv_num_frames, make_dataloader

    layers = tuple((k, s) for _, k, s in cfg.model.extractor_conv_layer_config)
    return make_dataloader(
        list(cfg.data.train_manifests),
        dataclasses.replace(cfg.data, num_workers=0),
        None,
        seed=cfg.run.seed + 1,
        frames_fn=functools.partial(conv_num_frames, conv_layers=layers),
    )


def init_codebooks_from_data(model: SpidR | DinoSR, cfg: Any) -> None:
    """``run.init_codebooks = "kmeans"``: k-means of the teacher's targets on
    ``run.init_kmeans_seconds`` of the training audio into every codebook."""
    from spidrkit.audio.io import SAMPLE_RATE

    frames = max(1, int(model.num_frames(int(cfg.run.init_kmeans_seconds * SAMPLE_RATE))))  # type: ignore[operator]
    targets = teacher_targets(model, sample_batches(cfg), frames)
    inertia = kmeans_codebooks(model, targets, cfg.run.seed)
    log.info(
        "codebooks re-initialised by k-means on %d frames of the training audio (inertia/frame %s)",
        targets[0].shape[0],
        ", ".join(f"{x:.3g}" for x in inertia),
    )


__all__ = [
    "ARCHITECTURE_FIELDS",
    "InitSource",
    "init_codebooks_from_data",
    "frozen_prefixes",
    "kmeans_codebooks",
    "lloyd_kmeans",
    "load_init_weights",
    "read_init_source",
    "resolve_init_config",
    "teacher_targets",
]
