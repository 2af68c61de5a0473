"""Feature extraction: chosen layers of an encoder (or a baseline) for every file of a corpus.

```python
import spidrkit
from spidrkit.units.extract import list_audio, extract_features
items = list_audio("corpus/manifest.csv")                # or a folder of audio files
encoder = spidrkit.load("spidr_base")                    # or Encoder(SpectralFeatures("mfcc"))
stats = extract_features(encoder, items, "feats/", layers=[6], fmt="pt")
# feats/<fileid>.pt: float32 [frames, dim], 20 ms frames (feats/layer6/... for several layers)
```

The encoder is a :class:`spidrkit.api.Encoder` (the one front door from audio to encoder outputs:
batching, padding, layer checks); :func:`run_corpus` runs it over :class:`AudioItem` s.

Files are processed in length-sorted batches (longest first, capped by total padded samples);
under torchrun, rank r takes every world-th file of the sorted list. A file whose outputs all
exist is skipped, and every output is written atomically, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spidrkit.api import Encoder
from spidrkit.audio import load_audio
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.data.scan import read_audio_list
from spidrkit.errors import ConfigError, DataError
from spidrkit.units.files import feature_path, save_features
from spidrkit.utils.paths import inside
from spidrkit.utils.progress import progress
from spidrkit.utils.provenance import check_record
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


# -- running the encoder over a corpus -------------------------------------------------------------


def run_corpus(
    encoder: Encoder,
    items: Sequence[AudioItem],
    *,
    layers: Sequence[int] | None = None,
    before_residual: bool = True,
    units: Sequence[int] | None = None,
    on_batch: Callable[[float], Any] | None = None,
) -> Iterator[tuple[AudioItem, dict[int, torch.Tensor]]]:
    """:meth:`spidrkit.api.Encoder.stream` over audio items: ``(item, {layer: [frames, dim]})``
    (or codebook units of ``units``), longest first then by fileid, each decoded by
    :func:`load_waveform` while the previous batch runs."""
    ordered = sorted(items, key=lambda it: (-it.num_samples, it.fileid))
    return encoder.stream(
        ordered,
        load_waveform,
        [it.num_samples for it in ordered],
        layers=layers,
        before_residual=before_residual,
        units=units,
        on_batch=on_batch,
    )


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
    encoder: Encoder,
    items: Sequence[AudioItem],
    out_dir: str | Path,
    *,
    layers: Sequence[int] | None = None,
    before_residual: bool = True,
    fmt: str = "pt",
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world: int = 1,
    show_progress: bool = True,
) -> ExtractStats:
    """Write the features of ``layers`` (default: every layer) for this rank's share of
    ``items`` under ``out_dir``; skip finished files.

    One layer: ``<out>/<fileid>.<fmt>``; several: ``<out>/layer<L>/<fileid>.<fmt>``.
    """
    if fmt not in FEATURE_FORMATS:
        raise ConfigError(f"unknown feature format {fmt!r}; use one of {FEATURE_FORMATS}")
    layers = encoder.check_layers(layers)
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
        **encoder.identity(before_residual=before_residual),
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

    for item, feats in run_corpus(
        encoder, todo, layers=layers, before_residual=before_residual, on_batch=on_batch
    ):
        for layer, path in paths(item).items():
            check_finite_features(feats[layer], f"{item.path} (layer {layer})")
            save_features(path, feats[layer].to(dtype), fmt)
    bar.close()
    return ExtractStats(len(todo), skipped, seconds, time.perf_counter() - start)
