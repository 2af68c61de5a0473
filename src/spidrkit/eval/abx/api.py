"""The ABX entry points: features in memory, a features folder, or a units JSONL."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from spidrkit.errors import ConfigError, DataError
from spidrkit.eval.abx.items import (
    FeatureFolder,
    Items,
    load_feature_file,
    match_keys,
    read_item_file,
    read_units_jsonl,
)
from spidrkit.eval.abx.result import ABXCell, ABXConfig, ABXResult
from spidrkit.eval.abx.scoring import Blocks, aggregate, item_groups, pair_dtw, score_cells
from spidrkit.eval.abx.task import build_cells, gather_frames, subsample

log = logging.getLogger(__name__)


def compute_abx(
    items: Items | str | Path,
    features: Mapping[str, torch.Tensor] | str | Path,
    config: ABXConfig | None = None,
    *,
    device: torch.device | str | None = None,
    label: str = "",
    layer: int | None = None,
    show_progress: bool = True,
) -> ABXResult:
    """ABX error of ``features`` on ``items``.

    Args:
        items: an :class:`Items` table or the path of an item file.
        features: ``{fileid: tensor [T, D]}`` (20 ms frames by default, see ``config.step``), a
            features folder (``<fileid>.pt`` / ``.npy``), or a units JSONL (``.jsonl``; units are
            expanded by their durations and compared as ``[T, 1]`` values).
        config: speaker/context mode, distance, subsampling; :class:`ABXConfig` defaults otherwise.
        device: where DTW runs (default: CPU, or the device of the given tensors).
        label, layer: stored in the result (used by plots).
    """
    config = config or ABXConfig()
    problems = config.validate()
    if problems:
        raise ConfigError("bad ABX configuration: " + "; ".join(problems))
    t0 = time.perf_counter()
    if not isinstance(items, Items):
        items = read_item_file(items)
    if isinstance(features, str | Path):
        path = Path(features)
        if path.suffix == ".jsonl":
            features = units_as_features(read_units_jsonl(path), items, source=str(path))
        else:
            features = FeatureFolder(path)
    if device is None:
        first = next(iter(features.values()), None) if isinstance(features, dict) else None
        device = first.device if isinstance(first, torch.Tensor) else "cpu"
    rng = np.random.default_rng(config.seed)
    keep = subsample(items, config, rng)
    kept = items.subset(keep)
    order, groups = item_groups(kept, config.speaker, config.context)
    bank = gather_frames(
        kept,
        features,
        config.step,
        config.drop_last,
        show_progress,
        order=order,  # tiles: contiguous slices
        distance=config.distance,
    )
    cells = build_cells(bank.items, config, rng)
    if len(cells) == 0:
        raise DataError(
            f"no ABX cell for {config.speaker} speaker / {config.context} context: each cell needs "
            "two phones in one group (and, across speaker, the phone of A from another speaker)"
        )
    blocks = Blocks(cells)
    i, j, pos = blocks.item_pairs()
    log.info("ABX: %d items, %d cells, %d item pairs", len(bank.length), len(cells), len(i))
    if len(bank.length) < len(kept):  # items without frames were dropped: group the rest
        order, groups = item_groups(bank.items, config.speaker, config.context)
    values = pair_dtw(
        bank, i, j, config.distance, device, order, show_progress=show_progress, groups=groups
    )
    blocks.fill(pos, values)
    err, ntrip = score_cells(cells, blocks)
    error, by_pair, by_speaker = aggregate(cells, err)
    cell_list = [
        ABXCell(
            phone_a=cells.phone_a[c],
            phone_b=cells.phone_b[c],
            context=cells.context[c],
            speaker=cells.speaker[c],
            speaker_x=cells.speaker_x[c],
            n_triplets=int(ntrip[c]),
            error=float(err[c]),
        )
        for c in range(len(cells))
    ]
    return ABXResult(
        error=error,
        config=config,
        n_items=len(bank.length),
        n_cells=len(cells),
        n_triplets=int(ntrip.sum()),
        by_phone_pair=by_pair,
        by_speaker=by_speaker,
        cells=cell_list,
        label=label,
        layer=layer,
        seconds=time.perf_counter() - t0,
    )


def compute_abx_modes(
    items: Items | str | Path,
    features: Mapping[str, torch.Tensor] | str | Path,
    config: ABXConfig | None = None,
    speakers: tuple[Literal["within", "across"], ...] = ("within",),
    contexts: tuple[Literal["within", "any"], ...] = ("within",),
    **kwargs,
) -> list[ABXResult]:
    """:func:`compute_abx` for every (speaker, context) mode; features are read once."""
    config = config or ABXConfig()
    if not isinstance(items, Items):
        items = read_item_file(items)
    if isinstance(features, str | Path) and Path(features).suffix == ".jsonl":
        features = units_as_features(read_units_jsonl(features), items, source=str(features))
    elif isinstance(features, str | Path):
        folder = FeatureFolder(features)
        features = {}
        for fid in sorted(set(items.fileid)):
            path = folder.path(fid)
            if path is not None:  # missing files: compute_abx names them
                features[fid] = load_feature_file(path)
    return [
        compute_abx(items, features, replace(config, speaker=s, context=c), **kwargs)
        for s in speakers
        for c in contexts
    ]


def units_as_features(
    units: Mapping[str, torch.Tensor], items: Items, source: str = "units"
) -> dict[str, torch.Tensor]:
    """Units ``{key: LongTensor [T]}`` -> ``{fileid: FloatTensor [T, 1]}`` for the item file's ids.

    A key matches a fileid when equal to it or when it ends with ``/<fileid>`` (an audio path).
    """
    fileids = sorted(set(items.fileid))
    match = match_keys(units.keys(), fileids)
    missing = [f for f in fileids if f not in match]
    if missing:
        raise DataError(
            f"{source}: no units for {len(missing)} file(s) of the item file, e.g. {missing[:3]}"
        )
    return {fid: units[match[fid]].float()[:, None] for fid in fileids}
