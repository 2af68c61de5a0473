"""Feature extraction: chosen layers of an encoder (or a baseline) for every file of a corpus.

```python
from spidrkit.units.extract import EncoderFeatures, list_audio, extract_features
items = list_audio("corpus/manifest.csv")                # or a folder of audio files
source = EncoderFeatures(model, layers=[6])              # any SpidR / DinoSR nn.Module
stats = extract_features(source, items, "feats/", fmt="pt")
# feats/<fileid>.pt: float32 [frames, dim], 20 ms frames (feats/layer6/... for several layers)
```

A *feature source* is any object with ``layers`` (list of int), ``dim``, ``batchable`` (a padded
batch gives each item what it gives alone), ``num_frames(num_samples)``, ``to(device)`` and
``__call__(wavs: list of raw 16 kHz [samples] tensors) -> {layer: [batch, frames, dim]}`` (frames
past ``num_frames(len(wav))`` are padding and dropped). :class:`EncoderFeatures` wraps a spidrkit
model; :mod:`spidrkit.units.baselines` has MFCC, log-mel and HuggingFace sources.

Files are processed in length-sorted batches (longest first, capped by total padded samples);
under torchrun, rank r takes every world-th file of the sorted list. A file whose outputs all
exist is skipped, and every output is written atomically, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spidrkit.audio import load_audio
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.data.scan import read_audio_list
from spidrkit.errors import ConfigError, DataError
from spidrkit.models.inference import layer_features, plan_batches
from spidrkit.models.pretrained import load_pretrained
from spidrkit.models.spidr import DinoSR, SpidR
from spidrkit.units.files import feature_path, save_features
from spidrkit.utils.paths import inside
from spidrkit.utils.progress import progress
from spidrkit.utils.provenance import check_record, source_identity
from spidrkit.utils.textfiles import check_finite_features

log = logging.getLogger(__name__)

FEATURE_FORMATS = ("pt", "npy")


# -- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioItem:
    """One utterance: ``fileid`` (relative path without extension), how to name it, its length.

    ``manifest``/``index`` point at the manifest row that decodes it (file or archive member);
    without a manifest, ``path`` is decoded directly.
    """

    fileid: str
    path: str
    num_samples: int
    manifest: Any = field(default=None, repr=False, compare=False)
    index: int = -1


def list_audio(source: str | Path, *, show_progress: bool = False) -> list[AudioItem]:
    """The utterances of a manifest (CSV, archive CSV, fairseq TSV), of a CSV of paths without
    lengths, or of a folder (recursive)."""
    return items_of(read_audio_list(source, show_progress=show_progress))


def items_of(manifest: Any) -> list[AudioItem]:
    """One :class:`AudioItem` per row of a :class:`spidrkit.data.manifest.Manifest`."""
    return [
        AudioItem(fid, manifest.describe(i), int(n), manifest, i)
        for i, (fid, n) in enumerate(zip(manifest.fileids, manifest.num_samples, strict=True))
    ]


def load_waveform(item: AudioItem) -> torch.Tensor:
    """Raw mono 16 kHz waveform ``[samples]`` float32 (not standardised)."""
    if item.manifest is not None:
        return torch.from_numpy(item.manifest.load(item.index))

    return torch.from_numpy(load_audio(item.path))


def shard(items: Sequence[AudioItem], rank: int, world: int) -> list[AudioItem]:
    """Length-sorted (longest first, then fileid) and every ``world``-th item from ``rank``."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not in [0, {world})")
    ordered = sorted(items, key=lambda it: (-it.num_samples, it.fileid))
    return ordered[rank::world]


def dist_rank_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment, (0, 1, 0) otherwise."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def make_batches(
    items: Sequence[AudioItem], *, max_samples: int, max_items: int, batchable: bool = True
) -> list[list[AudioItem]]:
    """Groups of the (already sorted) items, planned by :func:`spidrkit.models.inference.plan_batches`:
    at most ``max_items`` items and ``len(batch) * longest <= max_samples`` per batch; when the
    source is not ``batchable``, only items of exactly the same length share a batch."""
    groups = plan_batches(
        [it.num_samples for it in items],
        max_samples=max_samples,
        max_items=max_items,
        equal_lengths=not batchable,
    )
    return [[items[i] for i in g] for g in groups]


# -- the encoder as a feature source ---------------------------------------------------------------


class EncoderFeatures:
    """Layer representations of a SpidR / DinoSR model as a feature source.

    Layers are numbered from 1 (layer 6 = the 6th Transformer layer); by default the layer result
    before the residual (what the paper evaluates), ``before_residual=False`` for the layer output.
    Each batch runs :func:`spidrkit.models.inference.layer_features` (standardise, pad, mask,
    group-norm front end item by item, early exit at the highest layer).
    """

    batchable = (
        True  # padding never leaks: the inference core masks it (and runs group norm per item)
    )

    def __init__(
        self,
        model: Any,
        layers: Sequence[int],
        *,
        before_residual: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.model: SpidR | DinoSR = getattr(model, "model", model).eval()
        cfg = self.model.config
        self.num_layers = int(cfg.encoder_num_layers)
        layers = sorted(set(int(x) for x in layers))
        bad = [x for x in layers if not 1 <= x <= self.num_layers]
        if not layers or bad:
            raise ConfigError(
                f"layers must be between 1 and {self.num_layers} for this model, got {list(layers)}"
            )
        self.layers = layers
        self.dim = int(cfg.encoder_embed_dim)
        self.before_residual = before_residual
        self.precision = precision
        self.name = type(self.model).__name__

    def num_frames(self, num_samples: int) -> int:
        return int(self.model.num_frames(int(num_samples)))

    def to(self, device: torch.device | str) -> EncoderFeatures:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, wavs: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        feats, _ = layer_features(
            self.model,
            wavs,
            self.layers,
            before_residual=self.before_residual,
            precision=self.precision,
        )
        return feats


def load_encoder(spec: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A spidrkit model (eval mode, on ``device``) from a preset name or a checkpoint path."""
    return load_pretrained(spec).to(device).eval()


# -- running a source over a corpus ----------------------------------------------------------------


def iter_features(
    source: Any,
    items: Sequence[AudioItem],
    *,
    max_batch_seconds: float = 200.0,
    max_batch_items: int = 64,
    on_batch: Any = None,
) -> Iterator[tuple[AudioItem, dict[int, torch.Tensor]]]:
    """Features of each item, ``(item, {layer: [frames, dim]})``, in length-sorted order.

    Audio of the next batch is decoded in a background thread while the current one runs.
    ``on_batch(seconds)`` is called after each batch (progress bars).
    """
    ordered = sorted(items, key=lambda it: (-it.num_samples, it.fileid))
    batches = make_batches(
        ordered,
        max_samples=int(max_batch_seconds * SAMPLE_RATE),
        max_items=max_batch_items,
        batchable=source.batchable,
    )

    def load(batch: list[AudioItem]) -> list[torch.Tensor]:
        return [load_waveform(it) for it in batch]

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, batches[0]) if batches else None
        for i, batch in enumerate(batches):
            assert future is not None
            wavs = future.result()
            future = pool.submit(load, batches[i + 1]) if i + 1 < len(batches) else None
            yield from run_batch(source, batch, wavs)
            if on_batch is not None:
                on_batch(sum(w.shape[0] for w in wavs) / SAMPLE_RATE)


def run_batch(
    source: Any, batch: Sequence[AudioItem], wavs: list[torch.Tensor]
) -> list[tuple[AudioItem, dict[int, torch.Tensor]]]:
    """Run ``source`` on one batch and crop each item to its own frame count (on CPU)."""
    frames = [source.num_frames(w.shape[0]) for w in wavs]
    run = [i for i, t in enumerate(frames) if t > 0]  # too short for one frame: empty output
    out = source([wavs[i] for i in run]) if run else {}
    results = []
    for i, (item, t) in enumerate(zip(batch, frames, strict=True)):
        if t == 0:
            feats = {layer: torch.zeros(0, source.dim) for layer in source.layers}
        else:
            j = run.index(i)
            feats = {layer: out[layer][j, :t].detach().cpu().clone() for layer in source.layers}
        results.append((item, feats))
    return results


def _source(item: AudioItem) -> str:
    """Where an item's fileid was read: ``manifest.csv row 12`` (or the audio path)."""
    if item.manifest is not None and item.index >= 0:
        return f"{item.manifest.label} row {item.index + 1}"
    return item.path


def check_output_names(items: Sequence[AudioItem]) -> None:
    """Refuse fileids that would be written outside the output folder or onto each other.

    Two rows with one fileid would write one file and count two; a fileid like ``../x`` or
    ``/abs/x`` would write outside ``--out``. Every problem is checked before anything is written.
    """
    first: dict[str, AudioItem] = {}
    for item in items:
        inside(".", item.fileid, source=_source(item))
        other = first.setdefault(item.fileid, item)
        if other is not item:
            raise DataError(
                f"{_source(item)}: fileid {item.fileid[:80]!r} is also the fileid of "
                f"{_source(other)}; each output file needs its own fileid (two files that differ "
                "only by extension?)"
            )


@dataclass
class ExtractStats:
    """What one extraction run did (on this rank)."""

    num_files: int
    num_skipped: int
    audio_seconds: float
    wall_seconds: float

    @property
    def speed(self) -> float:
        """Audio seconds processed per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


def extract_features(
    source: Any,
    items: Sequence[AudioItem],
    out_dir: str | Path,
    *,
    fmt: str = "pt",
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world: int = 1,
    max_batch_seconds: float = 200.0,
    max_batch_items: int = 64,
    show_progress: bool = True,
) -> ExtractStats:
    """Write the features of this rank's share of ``items`` under ``out_dir``; skip finished files.

    One layer: ``<out>/<fileid>.<fmt>``; several: ``<out>/layer<L>/<fileid>.<fmt>``.
    """
    if fmt not in FEATURE_FORMATS:
        raise ConfigError(f"unknown feature format {fmt!r}; use one of {FEATURE_FORMATS}")
    layers = list(source.layers)
    per_layer = len(layers) > 1

    def paths(item: AudioItem) -> dict[int, Path]:
        return {
            lay: feature_path(out_dir, item.fileid, lay if per_layer else None, fmt)
            for lay in layers
        }

    check_output_names(items)
    mine = shard(items, rank, world)
    todo = [it for it in mine if not all(p.exists() for p in paths(it).values())]
    skipped = len(mine) - len(todo)
    # a finished file is only reused when this folder was made by the same source and options
    wanted = {
        "command": "extract",
        **source_identity(source),
        "layers": layers,
        "format": fmt,
        "dtype": str(dtype).removeprefix("torch."),
    }
    has_outputs = skipped > 0 or any(p.exists() for it in todo for p in paths(it).values())
    check_record(out_dir, wanted, what="features", has_outputs=has_outputs)
    if skipped:
        log.info("skipping %d of %d files already extracted", skipped, len(mine))
    total_s = sum(it.num_samples for it in todo) / SAMPLE_RATE

    bar = progress(
        total=round(total_s, 2),
        desc=f"extract[{rank}]" if world > 1 else "extract",
        unit="s",
        unit_scale=False,
        enabled=show_progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} audio-s [{elapsed}<{remaining}, {rate_fmt}]",
    )
    start = time.perf_counter()
    seconds = 0.0

    def on_batch(s: float) -> None:
        nonlocal seconds
        seconds += s
        bar.update(s)

    for item, feats in iter_features(
        source,
        todo,
        max_batch_seconds=max_batch_seconds,
        max_batch_items=max_batch_items,
        on_batch=on_batch,
    ):
        for layer, path in paths(item).items():
            check_finite_features(feats[layer], f"{item.path} (layer {layer})")
            save_features(path, feats[layer].to(dtype), fmt)
    bar.close()
    return ExtractStats(len(todo), skipped, seconds, time.perf_counter() - start)
