"""Dataset, collate and DataLoader for pretraining: manifest rows -> :class:`Batch`.

```python
loader = make_dataloader("train.csv", DataConfig(), MaskingConfig(), seed=0, epoch=0,
                         rank=rank, world_size=world_size)
for batch in loader:                       # Batch: waveforms [B, S], mask_indices [B, M], ...
    batch = batch.to(device, non_blocking=True)
    loss = model(batch.waveforms, mask_indices=batch.mask_indices,
                 attention_mask=batch.attention_mask)
    sampler_state = loader.sampler.state_dict(batch.index + 1)   # save with the checkpoint
# resume: make_dataloader(..., epoch=state["epoch"], start_batch=state["batches_consumed"])
```

Each item is decoded (mono, 16 kHz), standardised over the whole utterance, then cropped: to
``max_sample_size`` at a random offset, and in "crop" mode every item to the batch's shortest at a
random offset (no padding, ``attention_mask`` None). In "pad" mode items are zero-padded to the longest
and ``attention_mask`` is bool ``[B, 1, 1, frames]`` (True = attend), or None when no item is padded.
Crop offsets and masks are drawn in the workers from ``mask_rng(seed, epoch, batch_id)``
(a numpy Generator; ``batch_id`` is the global batch position), so they do not depend on the
number of workers and a resumed run reproduces them exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.audio.io import standardize
from spidrkit.data.config import DataConfig, MaskingConfig
from spidrkit.data.frames import conv_num_frames
from spidrkit.data.manifest import Manifest, read_manifest
from spidrkit.data.masking import compute_mask_indices, mask_rng
from spidrkit.data.sampler import BatchKey, BucketBatchSampler
from spidrkit.errors import DataError

FramesFn = Callable[[int], int]


@dataclass(frozen=True)
class AudioItem:
    """One decoded, standardised utterance: ``waveform`` float32 ``[samples]``; ``target``: the
    same utterance's target view (same length), when the dataset has one."""

    index: int
    fileid: str
    waveform: np.ndarray
    target: np.ndarray | None = None


@dataclass
class Batch:
    """What the training step reads.

    waveforms: float32 [batch, samples], standardised per utterance (zeros in padding).
    attention_mask: bool [batch, 1, 1, frames], True = attend; None when nothing is padded.
    mask_indices: int64 [batch, M] masked frame indices (same M per row); None without masking.
    lengths: int64 [batch] valid samples per row. fileids: [batch] utterance names.
    num_frames: encoder frames of ``samples``. epoch, batch_id (global), index (this rank's).
    target_waveforms: float32 [batch, samples], the target view cropped like ``waveforms``, or None.
    """

    waveforms: torch.Tensor
    attention_mask: torch.Tensor | None
    mask_indices: torch.Tensor | None
    lengths: torch.Tensor
    fileids: list[str]
    num_frames: int
    epoch: int = 0
    batch_id: int = 0
    index: int = 0
    target_waveforms: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.waveforms.shape[0])

    @property
    def num_masked(self) -> int:
        """Masked frames in this batch (batch * M)."""
        return 0 if self.mask_indices is None else int(self.mask_indices.numel())

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        return replace(
            self,
            waveforms=fn(self.waveforms),
            attention_mask=None if self.attention_mask is None else fn(self.attention_mask),
            mask_indices=None if self.mask_indices is None else fn(self.mask_indices),
            lengths=fn(self.lengths),
            target_waveforms=None if self.target_waveforms is None else fn(self.target_waveforms),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True)."""
        return self._map(lambda t: t.pin_memory())


def _crop(wav: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size``-sample window of ``wav`` [samples] or [views, samples] (same offset)."""
    n = wav.shape[-1]
    if n <= size:
        return wav
    start = int(rng.integers(0, n - size + 1))
    return wav[..., start : start + size]


def collate(
    items: Sequence[AudioItem],
    *,
    rng: np.random.Generator,
    batch_mode: str = "crop",
    max_sample_size: int | None = None,
    masking: MaskingConfig | None = None,
    frames_fn: FramesFn = conv_num_frames,
    epoch: int = 0,
    batch_id: int = 0,
    index: int = 0,
) -> Batch:
    """Crop/pad standardised items into a :class:`Batch` and draw its masks from ``rng``."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    with_target = items[0].target is not None
    if any((it.target is not None) != with_target for it in items):
        raise ValueError("either every item of a batch has a target view or none has")
    # [samples], or [2, samples] = (waveform, target) so that both views are cropped alike
    wavs = [
        it.waveform if it.target is None else np.stack([it.waveform, it.target]) for it in items
    ]
    if max_sample_size is not None:
        wavs = [_crop(w, max_sample_size, rng) for w in wavs]
    lengths = np.array([w.shape[-1] for w in wavs], dtype=np.int64)
    attention_mask = None
    valid_frames = None
    targets = None
    if batch_mode == "crop":
        size = int(lengths.min())
        wavs = [_crop(w, size, rng) for w in wavs]
        lengths[:] = size
        stacked = torch.from_numpy(np.stack(wavs).astype(np.float32, copy=False))
        waveforms, targets = (
            (stacked[:, 0].contiguous(), stacked[:, 1]) if with_target else (stacked, None)
        )
        frames = int(frames_fn(size))
    elif batch_mode == "pad":
        size = int(lengths.max())
        out = np.zeros((len(wavs), 2 if with_target else 1, size), dtype=np.float32)
        for row, w in enumerate(wavs):
            out[row, :, : w.shape[-1]] = w
        both = torch.from_numpy(out)
        waveforms = both[:, 0].contiguous()
        targets = both[:, 1] if with_target else None
        frames = int(frames_fn(size))
        if (lengths < size).any():
            valid_frames = np.array([frames_fn(int(n)) for n in lengths], dtype=np.int64)
            attend = np.arange(frames)[None, :] < valid_frames[:, None]
            attention_mask = torch.from_numpy(attend).view(len(wavs), 1, 1, frames)
    else:
        raise ValueError(f"batch_mode must be 'crop' or 'pad', got {batch_mode!r}")
    mask_indices = None
    if masking is not None:
        idx = compute_mask_indices((len(wavs), frames), valid_frames, masking, rng=rng)
        mask_indices = torch.from_numpy(idx)
    return Batch(
        waveforms=waveforms,
        attention_mask=attention_mask,
        mask_indices=mask_indices,
        lengths=torch.from_numpy(lengths),
        fileids=[it.fileid for it in items],
        num_frames=frames,
        epoch=epoch,
        batch_id=batch_id,
        index=index,
        target_waveforms=None if targets is None else targets.contiguous(),
    )


class AudioDataset(torch.utils.data.Dataset):
    """Manifest rows as standardised waveforms; ``dataset[BatchKey]`` returns a whole :class:`Batch`.

    ``dataset[i]`` -> :class:`AudioItem` (full utterance, 16 kHz, standardised).
    ``dataset[key]`` (a :class:`BatchKey` from :class:`BucketBatchSampler`) -> collated Batch with
    crops and masks from ``mask_rng(seed, key.epoch, key.batch_id)``.
    ``targets``: a manifest parallel to ``manifest`` (same fileids and lengths) of target views.
    """

    def __init__(
        self,
        manifest: Manifest,
        data_cfg: DataConfig | None = None,
        masking_cfg: MaskingConfig | None = None,
        *,
        seed: int = 0,
        frames_fn: FramesFn = conv_num_frames,
        targets: Manifest | None = None,
    ) -> None:
        if targets is not None:
            check_parallel(manifest, targets)
        self.manifest = manifest
        self.targets = targets
        self.cfg = data_cfg or DataConfig()
        self.masking = masking_cfg
        self.seed = int(seed)
        self.frames_fn = frames_fn

    def __len__(self) -> int:
        return len(self.manifest)

    def item(self, i: int) -> AudioItem:
        wav = self.manifest.load(
            i, target_sr=self.cfg.sample_rate, allow_resample=self.cfg.allow_resample
        )
        expected = int(self.manifest.num_samples[i])
        if len(wav) != expected:
            # batches are sized from the manifest's lengths: a wrong one would overflow them
            raise DataError(
                f"{self.manifest.describe(i)}: the manifest {self.manifest.label} says "
                f"{expected} samples, the audio has {len(wav)}; rebuild the manifest "
                "(spidrkit manifest)"
            )
        target = None
        if self.targets is not None:
            view = self.targets.load(
                i, target_sr=self.cfg.sample_rate, allow_resample=self.cfg.allow_resample
            )
            if len(view) != len(wav):
                raise DataError(
                    f"{self.targets.describe(i)}: the target view has {len(view)} samples, the "
                    f"training audio {len(wav)}; the two manifests must list the same utterances"
                )
            target = standardize(view)
        return AudioItem(int(i), self.manifest.fileids[i], standardize(wav), target)

    def load_batch(self, key: BatchKey) -> Batch:
        return collate(
            [self.item(i) for i in key.indices],
            rng=mask_rng(self.seed, key.epoch, key.batch_id),
            batch_mode=self.cfg.batch_mode,
            max_sample_size=self.cfg.max_sample_size,
            masking=self.masking,
            frames_fn=self.frames_fn,
            epoch=key.epoch,
            batch_id=key.batch_id,
            index=key.index,
        )

    def __getitem__(self, key: int | BatchKey) -> Any:
        if isinstance(key, BatchKey):
            return self.load_batch(key)
        return self.item(int(key))


def _identity(batch: Any) -> Any:
    return batch


def check_parallel(manifest: Manifest, targets: Manifest) -> None:
    """Refuse a target-view manifest whose rows are not the training manifest's utterances."""
    if len(targets) != len(manifest):
        raise DataError(
            f"{targets.label}: {len(targets)} target views for {len(manifest)} training "
            f"utterances in {manifest.label}"
        )
    for i in range(len(manifest)):
        if targets.fileids[i] != manifest.fileids[i] or int(targets.num_samples[i]) != int(
            manifest.num_samples[i]
        ):
            raise DataError(
                f"{targets.label} row {i + 1}: {targets.fileids[i]} "
                f"({int(targets.num_samples[i])} samples) does not match {manifest.label} row "
                f"{i + 1}: {manifest.fileids[i]} ({int(manifest.num_samples[i])} samples)"
            )


def load_manifests(manifests: Manifest | str | os.PathLike | Sequence[Any]) -> Manifest:
    """A Manifest from a Manifest, a path, or a list of them (concatenated)."""
    if isinstance(manifests, Manifest):
        return manifests
    if isinstance(manifests, (str, os.PathLike)):
        return read_manifest(Path(manifests))
    return Manifest.concat([load_manifests(m) for m in manifests])


def make_dataloader(
    manifest: Manifest | str | os.PathLike | Sequence[Any],
    data_cfg: DataConfig,
    masking_cfg: MaskingConfig | None,
    *,
    seed: int,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    frames_fn: FramesFn = conv_num_frames,
    targets: Manifest | str | os.PathLike | Sequence[Any] | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`Batch` for one rank and one epoch, starting at ``start_batch``.

    ``loader.sampler`` is the :class:`BucketBatchSampler` (``len(loader)`` batches left this epoch,
    the same on every rank). ``frames_fn``: samples -> encoder frames; pass
    ``functools.partial(spidrkit.models.num_frames, cfg=model_cfg)`` for a non-standard extractor.
    ``targets``: manifests of target views parallel to ``manifest`` (``Batch.target_waveforms``).
    """
    manifest = load_manifests(manifest)
    sampler = BucketBatchSampler(
        manifest.num_samples,
        max_batch_samples=data_cfg.max_batch_samples,
        min_sample_size=data_cfg.min_sample_size,
        max_sample_size=data_cfg.max_sample_size,
        num_buckets=data_cfg.num_buckets,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        shuffle=data_cfg.shuffle,
        start_batch=start_batch,
    )
    target_manifest = None if targets is None or targets == [] else load_manifests(targets)
    dataset = AudioDataset(
        manifest, data_cfg, masking_cfg, seed=seed, frames_fn=frames_fn, targets=target_manifest
    )
    workers = data_cfg.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        collate_fn=_identity,
        num_workers=workers,
        prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
        pin_memory=data_cfg.pin_memory and torch.cuda.is_available(),
        persistent_workers=False,
    )
