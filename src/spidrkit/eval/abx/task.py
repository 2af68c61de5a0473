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
from spidrkit.eval.abx.distances import prepare_frames
from spidrkit.eval.abx.items import Items, item_frame_ranges
from spidrkit.eval.abx.result import ABXConfig
from spidrkit.utils.progress import progress

log = logging.getLogger(__name__)


@dataclass
class ItemBank:
    """Frames of all usable items: item ``k`` is ``frames[start[k]:][:length[k]]``."""

    items: Items
    frames: torch.Tensor  # [F, D]
    start: np.ndarray  # [n] int64
    length: np.ndarray  # [n] int64
    prepared: str | None = None  # the distance whose prepare_frames the frames went through


def gather_frames(
    items: Items,
    features: Mapping[str, torch.Tensor],
    step: float = 0.02,
    drop_last: bool = False,
    show_progress: bool = True,
    order: np.ndarray | None = None,
    distance: str | None = None,
) -> ItemBank:
    """Cut each item's frames out of its file's features (each file is read once).

    Items whose frame range is empty (possible with ``drop_last``) are dropped with a warning;
    an item that starts after the end of its features is an error naming the file. With
    ``order`` (a permutation of ``items``), items are laid out in the bank in that order (unused
    rows are zeros); with ``distance``, frames go through its :func:`prepare_frames`.
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
    start_all, stop_all = item_frame_ranges(items.onset, items.offset, step, drop_last)
    start = np.zeros(len(items), dtype=np.int64)  # where each item's frames go in the bank
    bound = int((stop_all - start_all).sum())  # frames before clipping at the files' ends
    slot = None
    if order is not None:  # each item gets a slot of its unclipped length, in `order`
        slot, slot_len = np.empty(len(items), dtype=np.int64), stop_all - start_all
        slot[order] = np.concatenate([[0], np.cumsum(slot_len[order])[:-1]])
    frames, dim, pos = torch.empty(0, 0), None, 0
    for fid in progress(
        sorted(by_file), desc="features", total=len(by_file), leave=False, enabled=show_progress
    ):
        x = features[fid]
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if x.dim() == 1:
            x = x[:, None]
        if x.dim() != 2:
            raise DataError(f"features of {fid!r}: expected [frames, dim], got {tuple(x.shape)}")
        x = x.float().cpu()  # the bank is on the CPU; pair_dtw moves it to its device
        if dim is None:
            dim = x.shape[1]
            frames = torch.empty(bound, dim)
        elif x.shape[1] != dim:
            raise DataError(f"features of {fid!r} have dim {x.shape[1]}, others have {dim}")
        T = x.shape[0]
        ks = np.asarray(by_file[fid], dtype=np.int64)
        late = ks[start_all[ks] >= T]
        if len(late):
            k = int(late[0])
            raise DataError(
                f"item {fid} [{items.onset[k]}, {items.offset[k]}] s starts at frame "
                f"{start_all[k]} but the features have {T} frames (step {step} s): wrong --step "
                "or features?"
            )
        stop_all[ks] = np.minimum(stop_all[ks], T)
        n = stop_all[ks] - start_all[ks]
        first = np.concatenate([[0], np.cumsum(n)[:-1]])
        # row r of this file's chunk is frame src[r] of the file and row dst[r] of the bank
        src = torch.as_tensor(np.repeat(start_all[ks] - first, n)) + torch.arange(int(n.sum()))
        if slot is None:
            start[ks] = pos + first
            out = frames[pos : pos + int(n.sum())]
            torch.index_select(x, 0, src, out=out)
        else:
            start[ks] = slot[ks]
            out = x.index_select(0, src)
        if distance is not None:
            prepare_frames(out, distance, inplace=True)
        if slot is not None:
            dst = torch.as_tensor(np.repeat(slot[ks] - first, n)) + torch.arange(int(n.sum()))
            frames.index_copy_(0, dst, out)
        pos += int(n.sum())
    length = stop_all - start_all
    keep = np.flatnonzero(length > 0)  # item-file order
    dropped = len(items) - len(keep)
    if dropped:
        log.warning("%d item(s) have no frame (too short for step %.3f s): skipped", dropped, step)
    if not len(keep):
        raise DataError("no item has any frame: check --step and the item times")
    if slot is None:
        frames = frames[:pos]
    else:  # rows of slots left unused (items clipped at their file's end, or empty): zeros
        unused = np.asarray(slot_len) - (stop_all - start_all)
        gap = np.repeat(slot + (stop_all - start_all) - np.cumsum(unused) + unused, unused)
        gap += np.arange(int(unused.sum()))
        frames.index_fill_(0, torch.as_tensor(gap, dtype=torch.int64), 0.0)
    start, length = start[keep], length[keep]
    return ItemBank(items.subset(keep), frames, start, length, distance)


@dataclass
class Cells:
    """Every ABX cell: X, A, B as ids of item sets, and the cell's labels.

    A set is the items of one (context, speaker, phone); ``sets[k]`` holds its item indices (into
    the bank). Sets are disjoint, so a pair of sets names a block of item pairs no other set pair
    holds: distances are computed and stored per block.
    """

    sets: list[np.ndarray]
    x_set: list[int]
    a_set: list[int]
    b_set: list[int]
    phone_a: list[str]
    phone_b: list[str]
    context: list[str]
    speaker: list[str]
    speaker_x: list[str | None]
    x_is_a: bool  # within speaker: X and A are the same set, x != a

    def __len__(self) -> int:
        return len(self.x_set)

    @property
    def x(self) -> list[np.ndarray]:
        return [self.sets[k] for k in self.x_set]

    @property
    def a(self) -> list[np.ndarray]:
        return [self.sets[k] for k in self.a_set]

    @property
    def b(self) -> list[np.ndarray]:
        return [self.sets[k] for k in self.b_set]


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
    # sets[(context, speaker, phone)] = set id; the id's item indices are cells.sets[id]
    tmp: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for k in range(len(items)):
        tmp[(_context(items, k, config), items.speaker[k], items.phone[k])].append(k)
    sets = {key: n for n, key in enumerate(sorted(tmp))}
    cells = Cells(
        [np.asarray(tmp[key], dtype=np.int64) for key in sorted(tmp)],
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        x_is_a=config.speaker == "within",
    )
    # phones[(context, speaker)] = sorted phones present
    phones: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c, s, p in sorted(sets):
        phones[(c, s)].append(p)
    if config.speaker == "within":
        for (c, s), ps in sorted(phones.items()):
            for pa in ps:
                xa = sets[(c, s, pa)]
                if len(cells.sets[xa]) < 2:  # x != a leaves no triplet
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


def _add(cells: Cells, x: int, a: int, b: int, pa, pb, c, s, sx) -> None:
    cells.x_set.append(x)
    cells.a_set.append(a)
    cells.b_set.append(b)
    cells.phone_a.append(pa)
    cells.phone_b.append(pb)
    cells.context.append(c)
    cells.speaker.append(s)
    cells.speaker_x.append(sx)
