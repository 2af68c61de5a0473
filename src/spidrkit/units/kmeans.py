"""Minibatch k-means in torch (CPU or GPU), k-means++ initialisation, seeded.

The algorithm is Sculley's minibatch k-means (as in scikit-learn's ``MiniBatchKMeans``): each
centroid is the running mean of every frame ever assigned to it (per-centroid learning rate
``1 / count``), centroids that attract almost nothing are re-seeded on random frames, and training
stops after ``max_epochs`` passes over the sample or when the smoothed minibatch inertia has not
improved for ``patience`` minibatches. Initialisation is greedy k-means++ (``2 + log k`` candidate
draws per centroid) on a random subset of the sample.

Saved files are ``torch.save({"centroids": [k, dim] float32, "meta": {...}})`` with only tensors,
numbers and strings, so ``torch.load(path, weights_only=True)`` reads them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from spidrkit.config import BIG, PROB, SEED, Range, count, field_problems
from spidrkit.errors import CheckpointError, ConfigError, DataError
from spidrkit.models.checkpoint import read_torch_file
from spidrkit.utils.files import atomic_write
from spidrkit.utils.progress import progress as bar
from spidrkit.utils.provenance import differences
from spidrkit.utils.textfiles import check_finite_features

log = logging.getLogger(__name__)

_CHUNK = 16384  # rows per distance block: bounds memory at _CHUNK * k floats


def _sq_dists(x: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances ``[n, k]`` between rows of ``x`` [n, d] and ``c`` [k, d]."""
    c_sq = (c * c).sum(1) if c_sq is None else c_sq
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + c_sq[None, :]
    return d.clamp_(min=0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: (labels int64 [n], squared distances float32 [n]).

    Computed in float32 in blocks of rows, on the centroids' device.
    """
    c = centroids.float()
    c_sq = (c * c).sum(1)
    labels, dists = [], []
    for start in range(0, x.shape[0], _CHUNK):
        xb = x[start : start + _CHUNK].to(c.device, torch.float32)
        d = _sq_dists(xb, c, c_sq)
        dmin, idx = d.min(1)
        labels.append(idx)
        dists.append(dmin)
    if not labels:
        return torch.zeros(0, dtype=torch.long, device=c.device), torch.zeros(0, device=c.device)
    return torch.cat(labels), torch.cat(dists)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding: ``k`` rows of ``x`` [n, d] chosen with D^2 weighting.

    For each new centroid, ``2 + floor(log k)`` candidates are drawn and the one that lowers the
    total potential most is kept (Arthur & Vassilvitskii 2007; the greedy variant of scikit-learn).
    """
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    closest = _sq_dists(x, x[first : first + 1])[:, 0]
    for _ in range(1, k):
        pot = closest.sum()
        if pot <= 0:  # fewer distinct points than k: take random rows
            cand = torch.randint(n, (trials,), generator=generator)
        else:
            probs = (closest / pot).cpu().double()
            cand = torch.multinomial(probs, trials, replacement=True, generator=generator)
        cand = cand.to(x.device)
        d_cand = torch.minimum(closest[None, :], _sq_dists(x, x[cand]).T)  # [trials, n]
        best = int(d_cand.sum(1).argmin())
        centers.append(x[cand[best]])
        closest = d_cand[best]
    return torch.stack(centers)


@dataclass
class KMeans:
    """Fitted centroids ``[k, dim]`` and how they were made.

    meta: layer (int or None), k, inertia (sum of squared distances over the training sample),
    inertia_per_frame, num_frames, dim, seed, epochs, source (where the frames came from).
    """

    centroids: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """The file it was loaded from (for messages)."""

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Unit of each frame: ``[frames, dim]`` -> int64 ``[frames]`` (on the features' device)."""
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise DataError(
                f"features of shape {tuple(features.shape)} do not match k-means centroids of "
                f"dimension {self.dim} (layer {self.meta.get('layer')}); extract the same layer "
                "with the same model as the k-means was trained on"
            )
        check_finite_features(features, "features given to k-means")
        c = self.centroids.to(features.device)
        return assign(features, c)[0]

    def to(self, device: torch.device | str) -> KMeans:
        return KMeans(self.centroids.to(device), dict(self.meta), self.path)

    def check_source(self, identity: dict[str, Any] | None, layer: int | None) -> None:
        """Refuse features of another layer or another model than the k-means was trained on.

        ``meta["layer"]`` and ``meta["source_id"]`` (the :func:`spidrkit.utils.provenance.
        source_identity` of the features, as JSON) are written by ``spidrkit kmeans``; a file
        without them (older, or trained on unrecorded features) is not checked.
        """
        name = self.path or "k-means"
        trained = self.meta.get("layer")
        if trained is not None and layer is not None and int(trained) != int(layer):
            raise ConfigError(
                f"{name}: trained on layer {trained}, but the units are asked for layer {layer}; "
                f"use --layer {trained} or a k-means trained on layer {layer}"
            )
        saved = self.meta.get("source_id")
        if saved and identity is not None:
            diff = differences(json.loads(saved), identity)
            if diff:
                raise ConfigError(
                    f"{name}: trained on features of another source ({'; '.join(diff)}); "
                    "use the k-means trained on this model, or retrain it"
                )

    def save(self, path: str | Path) -> None:
        """Atomically write ``{"centroids", "meta"}`` (readable with ``weights_only=True``)."""
        meta: dict[str, str | int | float | None] = {
            k: v for k, v in self.meta.items() if isinstance(v, str | int | float | bool)
        }
        meta.update({k: None for k, v in self.meta.items() if v is None})
        with atomic_write(path, "wb", digest=True) as f:
            torch.save({"centroids": self.centroids.detach().cpu().float(), "meta": meta}, f)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> KMeans:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"k-means file {path} does not exist; train it with spidrkit kmeans"
            )
        try:
            obj = read_torch_file(path)  # verified against its .sha256, weights only
        except CheckpointError as exc:
            raise CheckpointError(f"k-means file {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("centroids"), torch.Tensor):
            raise CheckpointError(
                f"{path} is not a spidrkit k-means file (expected a dict with 'centroids')"
            )
        centroids = obj["centroids"]
        if centroids.dim() != 2 or centroids.shape[0] < 1 or not centroids.is_floating_point():
            raise CheckpointError(
                f"{path}: 'centroids' must be a float tensor [k, dim], found "
                f"{centroids.dtype} {tuple(centroids.shape)}"
            )
        if not bool(torch.isfinite(centroids).all()):
            raise CheckpointError(f"{path}: centroids hold NaN or infinite values; retrain it")
        meta = obj.get("meta")
        return cls(centroids.float().to(device), dict(meta) if isinstance(meta, dict) else {}, path)


@dataclass(frozen=True)
class KMeansConfig:
    """Settings of :func:`fit_kmeans` (defaults follow common practice for 256-unit HuBERT k-means).

    k: number of centroids; batch_size: frames per minibatch; max_epochs: passes over the sample;
    init_size: frames used by k-means++ (default ``max(3 k, batch_size)``); patience: minibatches
    without improvement of the smoothed inertia before stopping (0 = never stop early);
    reassign_ratio: centroids whose count is below this fraction of the largest are re-seeded;
    seed: controls every random draw.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "k": count(1, 1 << 20),
        "batch_size": count(1, 1 << 28),
        "max_epochs": count(1, 1 << 20),
        "init_size": count(1, 1 << 31),
        "patience": count(0, BIG),
        "reassign_ratio": PROB,
        "seed": SEED,
    }

    k: int = 256
    batch_size: int = 10000
    max_epochs: int = 100
    init_size: int | None = None
    patience: int = 20
    reassign_ratio: float = 0.01
    seed: int = 0

    def validate(self) -> list[str]:
        """Every out-of-range field (see ``RANGES``)."""
        return field_problems(self)


def fit_kmeans(
    frames: torch.Tensor,
    config: KMeansConfig = KMeansConfig(),
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> KMeans:
    """Fit minibatch k-means on ``frames`` ``[n, dim]``; same seed, same data -> same centroids."""
    errs = config.validate()
    if errs:
        raise ConfigError("; ".join(errs))
    if frames.ndim != 2:
        raise DataError(f"k-means needs frames of shape [n, dim], got {tuple(frames.shape)}")
    check_finite_features(frames, "k-means training frames")
    n, dim = frames.shape
    k = config.k
    if n < k:
        raise DataError(f"k-means with k={k} needs at least {k} frames, got {n}; add more data")
    device = torch.device(device) if device is not None else frames.device
    x = frames.to(device, torch.float32)
    gen = torch.Generator().manual_seed(config.seed)

    init_size = min(n, config.init_size or max(3 * k, config.batch_size))
    init_idx = torch.randperm(n, generator=gen)[:init_size].to(device)
    centroids = kmeans_plus_plus(x[init_idx], k, gen).clone()
    counts = torch.zeros(k, device=device)

    bs = min(config.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = config.max_epochs * steps_per_epoch
    ewa, best, stale = None, math.inf, 0
    alpha = min(1.0, 2.0 * bs / (n + 1))

    pbar = bar(total=total, desc=f"k-means k={k}", enabled=progress, unit="batch")
    step = epochs = 0
    for _ in range(config.max_epochs):
        epochs += 1
        perm = torch.randperm(n, generator=gen).to(device)
        for b in range(steps_per_epoch):
            xb = x[perm[b * bs : (b + 1) * bs]]
            labels, d = assign(xb, centroids)
            batch_inertia = float(d.mean())
            # running-mean update: c <- (c * count + sum) / (count + n_b)
            nb = torch.bincount(labels, minlength=k).float()
            sums = torch.zeros_like(centroids).index_add_(0, labels, xb)
            hit = nb > 0
            new_counts = counts + nb
            centroids[hit] = (centroids[hit] * counts[hit, None] + sums[hit]) / new_counts[
                hit, None
            ]
            counts = new_counts
            step += 1
            if config.reassign_ratio > 0 and step % 10 == 0:
                low = counts < config.reassign_ratio * counts.max()
                n_low = int(low.sum())
                if n_low:
                    pick = torch.randint(xb.shape[0], (n_low,), generator=gen).to(device)
                    centroids[low] = xb[pick]
                    counts[low] = counts[~low].min() if bool((~low).any()) else 1.0
            ewa = batch_inertia if ewa is None else (1 - alpha) * ewa + alpha * batch_inertia
            pbar.update(1)
            if ewa < best * (1 - 1e-4):
                best, stale = ewa, 0
            else:
                stale += 1
            if config.patience and stale >= config.patience:
                break
        if config.patience and stale >= config.patience:
            break
    pbar.close()
    _, d_all = assign(x, centroids)
    inertia = float(d_all.double().sum())
    info = {
        "k": k,
        "dim": dim,
        "num_frames": n,
        "inertia": inertia,
        "inertia_per_frame": inertia / n,
        "seed": config.seed,
        "epochs": epochs,
        "steps": step,
    }
    info.update(meta or {})
    log.info("k-means: k=%d, %d frames, inertia/frame %.4f, %d steps", k, n, inertia / n, step)
    return KMeans(centroids.cpu(), info)


def sample_frames(
    features: Iterable[torch.Tensor], max_frames: int, *, seed: int = 0
) -> tuple[torch.Tensor, int]:
    """A uniform random sample of at most ``max_frames`` rows from a stream of ``[T, dim]`` tensors.

    Every frame gets a random key and the ``max_frames`` smallest keys are kept (reservoir sampling
    with bounded memory), so the sample does not depend on the order of files. Returns the sample
    ``[n, dim]`` float32 (in stream order) and the number of frames seen.
    """
    if max_frames < 1:
        raise ConfigError(f"max_frames must be >= 1, got {max_frames}")
    gen = torch.Generator().manual_seed(seed)
    keep_x: list[torch.Tensor] = []
    keep_k: list[torch.Tensor] = []
    held, seen, dim = 0, 0, None
    for feats in features:
        if feats.ndim != 2:
            raise DataError(f"expected features of shape [frames, dim], got {tuple(feats.shape)}")
        if dim is None:
            dim = feats.shape[1]
        elif feats.shape[1] != dim:
            raise DataError(f"features change dimension from {dim} to {feats.shape[1]}")
        seen += feats.shape[0]
        keep_x.append(feats.detach().float().cpu())
        keep_k.append(torch.rand(feats.shape[0], generator=gen))
        held += feats.shape[0]
        if held > 2 * max_frames:
            keep_x, keep_k = _prune(keep_x, keep_k, max_frames)
            held = max_frames
    if dim is None:
        raise DataError("no features to sample frames from")
    keep_x, _ = _prune(keep_x, keep_k, max_frames)
    return keep_x[0], seen


def _prune(
    xs: list[torch.Tensor], ks: list[torch.Tensor], m: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    x, keys = torch.cat(xs), torch.cat(ks)
    if x.shape[0] > m:
        idx = keys.topk(m, largest=False).indices.sort().values
        x, keys = x[idx], keys[idx]
    return [x], [keys]


def kmeans_of_frames(
    features: Iterable[torch.Tensor],
    config: KMeansConfig,
    *,
    max_frames: int,
    layer: int | None,
    source: str,
    identity: dict[str, Any] | None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> KMeans:
    """``spidrkit kmeans``: a uniform sample of at most ``max_frames`` frames of ``features`` (a
    stream of ``[T, dim]``, e.g. the features of :func:`spidrkit.units.extract.run_corpus`), then
    :func:`fit_kmeans`. ``layer``, ``source`` (a description) and ``identity`` (the
    :meth:`spidrkit.api.Encoder.identity` of what made the features) go into ``meta``, so that
    ``spidrkit units`` refuses this k-means on another model or layer."""
    frames, seen = sample_frames(features, max_frames, seed=config.seed)
    log.info("sampled %d of %d frames (dim %d)", frames.shape[0], seen, frames.shape[1])
    return fit_kmeans(
        frames,
        config,
        device=device,
        progress=progress,
        meta={
            "layer": layer,
            "source": source,
            "frames_seen": seen,
            "source_id": json.dumps(identity, sort_keys=True) if identity is not None else None,
        },
    )
