"""Data and masking configs: frozen dataclasses with the official recipe's defaults.

Both load from TOML sections through :func:`spidrkit.config.load_config` (``[data]``, ``[masking]``)
and report every bad value at once through ``validate()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from spidrkit.config import UNIT, Range, count, ranged

MaskSelection = Literal["static", "uniform", "normal", "poisson"]


@dataclass(frozen=True)
class MaskingConfig:
    """Span masking of encoder frames (fairseq semantics and field names, docs/data.md, "Masking").

    mask_prob: expected fraction of frames that start a span, times mask_length [0.8].
    mask_length: span length in frames [10] (the mean for "uniform"/"normal"/"poisson").
    mask_selection: how span lengths are drawn: "static" (all mask_length), "uniform"
        (integers in [mask_other, 2*mask_length]), "normal" (N(mask_length, mask_other), at least 1),
        "poisson" (Poisson(mask_length)) [static].
    mask_other: the second parameter of "uniform"/"normal" [0.0].
    min_masks: at least this many spans per row [2].
    no_mask_overlap: if True, spans never overlap and keep mask_min_space frames apart [False].
    mask_min_space: gap between spans when no_mask_overlap is True [1].
    With defaults, about 55-60% of frames are masked.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "mask_prob": UNIT,
        "mask_length": count(1, 1 << 14),
        "mask_other": Range(0.0, float(1 << 14)),
        "min_masks": count(0, 1 << 14),
        "mask_min_space": count(0, 1 << 14),
    }

    mask_prob: float = 0.8
    mask_length: int = 10
    mask_selection: MaskSelection = "static"
    mask_other: float = 0.0
    min_masks: int = 2
    no_mask_overlap: bool = False
    mask_min_space: int = 1

    @ranged
    def validate(self) -> list[str]:
        errors = []
        if self.mask_selection == "uniform" and self.mask_other > 2 * self.mask_length:
            errors.append(
                f"mask_other: {self.mask_other} exceeds 2*mask_length ({2 * self.mask_length}), "
                "the top of the uniform range"
            )
        return errors


@dataclass(frozen=True)
class DataConfig:
    """Where the audio is and how it is batched (defaults = the official pretraining recipe).

    train_manifests / valid_manifests: manifest files (CSV, archive CSV or fairseq TSV); several are
        concatenated.
    sample_rate: model input rate; other rates are resampled when allow_resample [16000].
    allow_resample: if False, a file at another rate is an error [True].
    max_batch_samples: cap on batch_size * longest (cropped) item of a batch, per rank [3_800_000].
    min_sample_size: shorter items are dropped (counted and logged) [2000].
    max_sample_size: longer items are cropped to this many samples at a random offset [320_000].
    num_buckets: length buckets; batches are built from items of similar length [1000].
    batch_mode: "crop": every item is cropped (random offset) to the batch's shortest, no padding,
        attention_mask None (official); "pad": items are zero-padded to the longest, with an
        attention mask [crop].
    shuffle: shuffle items and batches each epoch (deterministic from seed and epoch) [True].
    num_workers: DataLoader worker processes [4]; prefetch_factor: batches per worker in flight [2].
    pin_memory: pin batches when CUDA is available [True].
    target_manifests: manifests parallel to train_manifests (same fileids and lengths, row by row)
        holding another view of each utterance, e.g. the dry speech of a synthetic corpus
        (``train/clean_manifest.csv``): the teacher and the warm-up targets read this view, the
        student the training audio; empty = both read the training audio (official) [()].
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "sample_rate": count(1000, 384_000),
        "max_batch_samples": count(1, 1 << 31),
        "min_sample_size": count(1, 1 << 31),
        "max_sample_size": count(1, 1 << 31),
        "num_buckets": count(1, 1 << 20),
        "num_workers": count(0, 1024),
        "prefetch_factor": count(1, 1024),
    }

    train_manifests: tuple[str, ...] = ()
    valid_manifests: tuple[str, ...] = ()
    target_manifests: tuple[str, ...] = ()
    sample_rate: int = 16000
    allow_resample: bool = True
    max_batch_samples: int = 3_800_000
    min_sample_size: int = 2000
    max_sample_size: int = 320_000
    num_buckets: int = 1000
    batch_mode: Literal["crop", "pad"] = "crop"
    shuffle: bool = True
    num_workers: int = 4
    prefetch_factor: int = 2
    pin_memory: bool = True

    @ranged
    def validate(self) -> list[str]:
        errors = []
        if self.max_sample_size < self.min_sample_size:
            errors.append(
                f"max_sample_size: {self.max_sample_size} is below min_sample_size "
                f"{self.min_sample_size}"
            )
        if self.max_batch_samples < self.max_sample_size:
            errors.append(
                f"max_batch_samples: {self.max_batch_samples} is below max_sample_size "
                f"{self.max_sample_size}: the longest item would not fit in a batch"
            )
        if self.target_manifests and len(self.target_manifests) != len(self.train_manifests):
            errors.append(
                f"target_manifests: {len(self.target_manifests)} given for "
                f"{len(self.train_manifests)} train_manifests; give one per train manifest"
            )
        return errors
