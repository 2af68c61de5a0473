"""From items to ABX cells: frame gathering, seeded subsampling, ON/BY/ACROSS cells.

Within speaker: ON ``#phone``, BY (prev, next, speaker): X and A are the same set (x != a).
Across speaker: ON ``#phone``, BY (prev, next), ACROSS speaker: A, B from speaker ``s``, X (phone of
A) from another speaker ``s'``. With context ``any`` the (prev, next) condition is dropped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from spidrkit.errors import DataError
from spidrkit.eval.abx.items import Items, item_frame_range
from spidrkit.eval.abx.result import ABXConfig

log = logging.getLogger(__name__)


@dataclass
class ItemBank:
    """Frames of all usable items, concatenated: item ``k`` is ``frames[start[k]:][:length[k]]``."""

    items: Items
    frames: torch.Tensor  # [F, D]
    start: np.ndarray  # [n] int64
    length: np.ndarray  # [n] int64


def gather_frames(
    items: Items,
    features: Mapping[str, torch.Tensor],
    step: float = 0.02,
    drop_last: bool = False,
    show_progress: bool = True,
) -> ItemBank:
    """Cut each item's frames out of its file's features (each file is read once).

    Items whose frame range is empty (possible with ``drop_last``) are dropped with a warning;
    an item that starts after the end of its features is an error naming the file.
    """
    by_file: dict[str, list[int]] = defaultdict(list)
    for k, fid in enumerate(items.fileid):
        by_file[fid].append(k)
    missing = [fid for fid in by_file if fid not in features]
    if missing:
        raise DataError(
            f"no features for {len(missing)} file(s) of the item file, e.g. {missing[:3]}; "
            "features must be named <fileid>.pt/.npy (fileid = the item file's #file column)"
        )
    chunks: list[torch.Tensor] = []
    keep: list[int] = []
    lengths: list[int] = []
    dim = None
    from spidrkit.utils.progress import progress

    for fid in progress(
        sorted(by_file),
        desc="features",
        total=len(by_file),
        leave=False,
        enabled=show_progress,
    ):
        x = features[fid]
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.dim() == 1:
            x = x[:, None]
        if x.dim() != 2:
            raise DataError(f"features of {fid!r}: expected [frames, dim], got {tuple(x.shape)}")
        x = x.float()
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise DataError(f"features of {fid!r} have dim {x.shape[1]}, others have {dim}")
        T = x.shape[0]
        for k in by_file[fid]:
            start, stop = item_frame_range(items.onset[k], items.offset[k], step, drop_last)
            if start >= T:
                raise DataError(
                    f"item {fid} [{items.onset[k]}, {items.offset[k]}] s starts at frame {start} "
                    f"but the features have {T} frames (step {step} s): wrong --step or features?"
                )
            stop = min(stop, T)
            if stop <= start:
                continue
            chunks.append(x[start:stop])
            keep.append(k)
            lengths.append(stop - start)
    dropped = len(items) - len(keep)
    if dropped:
        log.warning("%d item(s) have no frame (too short for step %.3f s): skipped", dropped, step)
    if not keep:
        raise DataError("no item has any frame: check --step and the item times")
    order = np.argsort(np.asarray(keep), kind="stable")  # back to item-file order
    keep_arr = np.asarray(keep)[order]
    chunks = [chunks[i] for i in order]
    length = np.asarray(lengths, dtype=np.int64)[order]
    starts = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    return ItemBank(items.subset(keep_arr), torch.cat(chunks), starts, length)


@dataclass
class Cells:
    """Every ABX cell: index arrays (into the bank) of X, A, B and the cell's labels."""

    x: list[np.ndarray]
    a: list[np.ndarray]
    b: list[np.ndarray]
    phone_a: list[str]
    phone_b: list[str]
    context: list[str]
    speaker: list[str]
    speaker_x: list[str | None]
    x_is_a: bool  # within speaker: X and A are the same set, x != a

    def __len__(self) -> int:
        return len(self.x)


def _context(items: Items, k: int, config: ABXConfig) -> str:
    return f"{items.prev_phone[k]}|{items.next_phone[k]}" if config.context == "within" else ""


def subsample(items: Items, config: ABXConfig, rng: np.random.Generator) -> np.ndarray:
    """Indices kept: at most ``max_size_group`` per (phone, context, speaker), seeded."""
    if config.max_size_group is None:
        return np.arange(len(items))
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for k in range(len(items)):
        groups[(items.phone[k], _context(items, k, config), items.speaker[k])].append(k)
    keep: list[int] = []
    for key in sorted(groups):
        idx = groups[key]
        if len(idx) > config.max_size_group:
            idx = sorted(rng.choice(idx, size=config.max_size_group, replace=False).tolist())
        keep.extend(idx)
    return np.asarray(sorted(keep), dtype=np.int64)


def build_cells(items: Items, config: ABXConfig, rng: np.random.Generator) -> Cells:
    """All cells of the task, in a deterministic order (sorted labels)."""
    # sets[(context, speaker, phone)] = item indices
    sets: dict[tuple[str, str, str], np.ndarray] = {}
    tmp: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for k in range(len(items)):
        tmp[(_context(items, k, config), items.speaker[k], items.phone[k])].append(k)
    for key, v in tmp.items():
        sets[key] = np.asarray(v, dtype=np.int64)
    # phones[(context, speaker)] = sorted phones present
    phones: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c, s, p in sorted(sets):
        phones[(c, s)].append(p)
    cells = Cells([], [], [], [], [], [], [], [], x_is_a=config.speaker == "within")
    if config.speaker == "within":
        for (c, s), ps in sorted(phones.items()):
            for pa in ps:
                xa = sets[(c, s, pa)]
                if len(xa) < 2:  # x != a leaves no triplet
                    continue
                for pb in ps:
                    if pb == pa:
                        continue
                    _add(cells, xa, xa, sets[(c, s, pb)], pa, pb, c, s, None)
        return cells
    # across speaker: X from another speaker with the same context and A's phone
    speakers_with: dict[tuple[str, str], list[str]] = defaultdict(list)  # (c, phone) -> speakers
    for c, s, p in sorted(sets):
        speakers_with[(c, p)].append(s)
    for (c, s), ps in sorted(phones.items()):
        for pa in ps:
            others = [sx for sx in speakers_with[(c, pa)] if sx != s]
            if not others:
                continue
            for pb in ps:
                if pb == pa:
                    continue
                chosen = others
                if config.max_x_across is not None and len(others) > config.max_x_across:
                    pick = rng.choice(len(others), size=config.max_x_across, replace=False)
                    chosen = [others[i] for i in sorted(pick.tolist())]
                for sx in chosen:
                    _add(
                        cells,
                        sets[(c, sx, pa)],
                        sets[(c, s, pa)],
                        sets[(c, s, pb)],
                        pa,
                        pb,
                        c,
                        s,
                        sx,
                    )
    return cells


def _add(cells: Cells, x, a, b, pa, pb, c, s, sx) -> None:
    cells.x.append(x)
    cells.a.append(a)
    cells.b.append(b)
    cells.phone_a.append(pa)
    cells.phone_b.append(pb)
    cells.context.append(c)
    cells.speaker.append(s)
    cells.speaker_x.append(sx)
