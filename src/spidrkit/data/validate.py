"""Check a manifest before training: every missing or unreadable file, reported at once.

``report = validate_manifest("train.csv")`` reads every row's header (or decodes it all with
``decode=True``) in threads, with a progress bar, and returns a :class:`ValidationReport` listing every
problem: duplicate fileids, non-positive lengths, missing files or archives, rows outside their
archive, unreadable or empty audio, and ``num_samples`` that disagree with the file.
``report.raise_if_problems()`` turns it into one :class:`DataError`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from spidrkit.audio.io import SAMPLE_RATE, audio_info
from spidrkit.data.manifest import Manifest, read_manifest
from spidrkit.errors import AudioError, DataError
from spidrkit.utils.progress import progress

_CHUNK = 4096  # rows in flight at once (bounded memory for million-row manifests)


@dataclass(frozen=True)
class Problem:
    """One bad row: ``index`` in the manifest (-1 for the manifest itself), fileid, message."""

    index: int
    fileid: str
    message: str


@dataclass
class ValidationReport:
    """Result of :func:`validate_manifest`: ``ok`` when ``problems`` is empty."""

    source: str
    num_items: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, limit: int = 50) -> str:
        if self.ok:
            return f"{self.source}: {self.num_items} items, all readable"
        lines = [f"{self.source}: {len(self.problems)} problems in {self.num_items} items:"]
        lines += [f"  {p.message}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        if not self.ok:
            raise DataError(self.summary())


def validate_manifest(
    manifest: Manifest | str | os.PathLike,
    *,
    decode: bool = False,
    target_sr: int = SAMPLE_RATE,
    tolerance: int = 0,
    show_progress: bool = True,
    num_workers: int | None = None,
) -> ValidationReport:
    """Check every row of ``manifest`` (a Manifest or a manifest path); see the module docstring.

    decode: decode the whole file instead of reading its header (slower, catches truncated data).
    tolerance: allowed difference in samples between ``num_samples`` and the file (for formats whose
        headers give approximate lengths, such as mp3).
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, unique=False)  # duplicates are listed below
    report = ValidationReport(manifest.label, len(manifest))
    problems = report.problems

    ids, first_index, counts = np.unique(
        np.array(manifest.fileids.tolist(), dtype=object), return_index=True, return_counts=True
    )
    for fid, k, c in zip(ids.tolist(), first_index.tolist(), counts.tolist(), strict=True):
        if c > 1:
            problems.append(Problem(k, fid, f"fileid {fid!r} appears {c} times"))

    missing_archives: set[int] = set()
    if manifest.archive_ids is not None:
        for a, name in enumerate(manifest.archives):
            path = manifest.root / name
            if not path.is_file():
                missing_archives.add(a)
                problems.append(Problem(-1, "", f"{path}: archive not found"))

    def check(i: int) -> str | None:
        expected = int(manifest.num_samples[i])
        if expected <= 0:
            return f"{manifest.describe(i)}: num_samples is {expected}, must be > 0"
        if manifest.archive_ids is not None and int(manifest.archive_ids[i]) in missing_archives:
            return None  # reported once above
        try:
            if decode:
                actual = len(manifest.load(i, target_sr=target_sr))
            elif manifest.paths is not None:
                actual = audio_info(manifest.path(i)).num_samples(target_sr)
            else:
                view = manifest.read_bytes(i)
                try:
                    actual = audio_info(view, name=manifest.describe(i)).num_samples(target_sr)
                finally:
                    view.release()
        except AudioError as exc:
            return str(exc)
        if actual == 0:
            return f"{manifest.describe(i)}: contains no audio samples (0 frames)"
        if abs(actual - expected) > tolerance:
            return (
                f"{manifest.describe(i)}: num_samples is {expected} in the manifest but the file "
                f"has {actual} at {target_sr} Hz; rebuild the manifest"
            )
        return None

    workers = num_workers or min(8, (os.cpu_count() or 1) * 2)
    bar = progress(total=len(manifest), desc="validate", unit="file", enabled=show_progress)
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        for lo in range(0, len(manifest), _CHUNK):
            hi = min(lo + _CHUNK, len(manifest))
            for i, message in zip(range(lo, hi), pool.map(check, range(lo, hi)), strict=True):
                if message is not None:
                    problems.append(Problem(i, manifest.fileids[i], message))
            bar.update(hi - lo)
    manifest.close()
    problems.sort(key=lambda p: p.index)
    return report
