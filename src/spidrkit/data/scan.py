"""Build manifests by scanning a folder tree or an uncompressed tar archive (headers only).

``scan_directory("LibriSpeech/train-clean-100")`` lists audio files (extensions configurable), reads
each header with soundfile (threads, progress bar) and returns a files :class:`Manifest` whose fileids
are the paths relative to the root without extension, sorted. ``scan_tar("shard.tar")`` does the same
for the members of a tar file and records each member's data offset and size, so training reads the
bytes in place through mmap (no extraction). Unreadable files are all reported in one
:class:`DataError` (or skipped and logged with ``skip_errors=True``).
"""

from __future__ import annotations

import logging
import os
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from spidrkit.audio.io import AUDIO_EXTENSIONS, SAMPLE_RATE, audio_info
from spidrkit.data.columns import StringColumn
from spidrkit.data.manifest import Manifest, first_duplicate, read_manifest
from spidrkit.errors import AudioError, DataError
from spidrkit.utils.paths import unsafe_reason
from spidrkit.utils.progress import progress
from spidrkit.utils.textfiles import iter_lines

log = logging.getLogger(__name__)

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    exts = tuple(("." + e.lstrip(".")).lower() for e in extensions)
    if not exts:
        raise DataError("no audio extension given")
    return exts


def _report(problems: list[str], what: str, skip_errors: bool) -> None:
    if not problems:
        return
    shown = "\n  ".join(problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    if skip_errors:
        log.warning("skipped %d unreadable files in %s:\n  %s%s", len(problems), what, shown, more)
        return
    listed = "; ".join(problems[:50]) + (f"; ... and {len(problems) - 50} more" if more else "")
    raise DataError(  # one line, every file named (up to 50)
        f"{what}: {len(problems)} unreadable audio files (fix or remove them, or pass "
        f"--skip-errors): {listed}"
    )


def _audio_lengths(
    base: Path,
    rels: list,
    target_sr: int,
    num_workers: int | None,
    show_progress: bool,
    desc: str,
) -> tuple[np.ndarray, list]:
    """Length in samples at ``target_sr`` of each ``base / rel`` from its header (-1 where it failed,
    with the problems), read by ``num_workers`` threads."""

    def read(rel: object) -> int:
        info = audio_info(base / str(rel))
        if info.frames <= 0:
            raise AudioError(f"{base / str(rel)}: contains no audio samples (0 frames)")
        return info.num_samples(target_sr)

    return _headers(
        rels,
        read,
        num_workers=num_workers or _default_workers(),
        show_progress=show_progress,
        desc=desc,
    )


def _headers(
    items: Sequence[object],
    read: Callable[[object], int],
    *,
    num_workers: int,
    show_progress: bool,
    desc: str,
) -> tuple[np.ndarray, list[str]]:
    """``read(item) -> num_samples`` for every item (threads); -1 and a message for failures."""
    lengths = np.full(len(items), -1, dtype=np.int64)
    problems: list[str] = []

    def one(k: int) -> tuple[int, int, str | None]:
        try:
            return k, read(items[k]), None
        except AudioError as exc:
            return k, -1, str(exc)

    bar = progress(total=len(items), desc=desc, unit="file", enabled=show_progress)
    with bar, ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for lo in range(0, len(items), 4096):  # bounded number of futures in flight
            hi = min(lo + 4096, len(items))
            for k, n, problem in pool.map(one, range(lo, hi)):
                lengths[k] = n
                if problem is not None:
                    problems.append(problem)
            bar.update(hi - lo)
    return lengths, problems


def _default_workers() -> int:
    return min(8, (os.cpu_count() or 1) * 2)


def scan_directory(
    root: str | os.PathLike,
    *,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    target_sr: int = SAMPLE_RATE,
    skip_errors: bool = False,
    show_progress: bool = True,
    num_workers: int | None = None,
) -> Manifest:
    """Manifest of every audio file under ``root`` whose extension is in ``extensions``.

    num_samples is the length at ``target_sr`` (header only, no decoding). Files with zero frames or
    unreadable headers are errors (all listed at once) unless ``skip_errors``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    exts = _normalise_extensions(extensions)
    rels: list[str] = []
    listing = progress(desc=f"list {root.name or root}", unit="file", enabled=show_progress)
    with listing:
        seen: set[tuple[int, int]] = set()  # real folders listed: a symlink loop or a second
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):  # link is skipped
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            before = len(rels)
            for name in filenames:
                if os.path.splitext(name)[1].lower() in exts:
                    rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                    rels.append(rel.replace(os.sep, "/"))
            listing.update(len(rels) - before)
    rels.sort()
    if not rels:
        raise DataError(f"{root}: no audio files with extensions {', '.join(exts)}")

    lengths, problems = _audio_lengths(
        root, rels, target_sr, num_workers, show_progress, f"scan {root.name or root}"
    )
    _report(problems, str(root), skip_errors)
    keep = np.flatnonzero(lengths >= 0)
    rels = [rels[k] for k in keep.tolist()]
    return Manifest(
        fileids=StringColumn.from_strings(os.path.splitext(r)[0] for r in rels),
        num_samples=lengths[keep],
        root=root,
        paths=StringColumn.from_strings(rels),
        source=str(root),
    )


def _check_uncompressed(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(
                f"{path}: {name}-compressed archive; members are read in place, which needs an "
                f"uncompressed tar (decompress it first, e.g. `{name} -dk {path.name}`)"
                if name != "gzip"
                else f"{path}: gzip-compressed archive; members are read in place, which needs an "
                f"uncompressed tar (decompress it first: `gunzip -k {path.name}`)"
            )


def scan_tar(
    archive: str | os.PathLike,
    *,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    target_sr: int = SAMPLE_RATE,
    skip_errors: bool = False,
    show_progress: bool = True,
    num_workers: int | None = None,
) -> Manifest:
    """Archive manifest of the audio members of an uncompressed tar file.

    Each row records the member's data offset and size in the archive; headers are decoded from the
    mmap'ed bytes. fileid = member name without extension (a leading ``./`` is dropped). The manifest's
    root is the archive's folder and its archive column the archive's file name. Audio members that
    are links, not regular files, or named absolute / with ``..`` are problems (an error listing
    them all, or skipped and counted with ``skip_errors``), never dropped silently.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    _check_uncompressed(archive)
    exts = _normalise_extensions(extensions)
    names: list[str] = []
    offsets: list[int] = []
    sizes: list[int] = []
    problems: list[str] = []
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                if os.path.splitext(member.name)[1].lower() not in exts or member.isdir():
                    continue
                if member.issym() or member.islnk():
                    problems.append(
                        f"{archive}:{member.name}: {'symbolic' if member.issym() else 'hard'} "
                        "link member, cannot read it in place (store the file itself)"
                    )
                    continue
                if not member.isfile():
                    problems.append(f"{archive}:{member.name}: not a regular file member")
                    continue
                reason = unsafe_reason(member.name.removeprefix("./"))
                if reason is not None:
                    problems.append(
                        f"{archive}:{member.name[:80]}: member name {reason}; its fileid could "
                        "write outside an output folder"
                    )
                    continue
                if member.issparse():
                    problems.append(
                        f"{archive}:{member.name}: sparse tar member, cannot read it in place"
                    )
                    continue
                names.append(member.name)
                offsets.append(member.offset_data)
                sizes.append(member.size)
    except tarfile.TarError as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc})") from None
    if not names and not problems:
        raise DataError(f"{archive}: no members with extensions {', '.join(exts)}")
    fileids = [n[2:] if n.startswith("./") else n for n in names]
    fileids = [os.path.splitext(n)[0] for n in fileids]
    manifest = Manifest(
        fileids=StringColumn.from_strings(fileids),
        num_samples=np.zeros(len(names), dtype=np.int64),
        root=archive.parent,
        archives=(archive.name,),
        archive_ids=np.zeros(len(names), dtype=np.int32),
        byte_offsets=np.asarray(offsets, dtype=np.int64),
        byte_sizes=np.asarray(sizes, dtype=np.int64),
        source=str(archive),
    )

    def read(k: object) -> int:
        i = int(k)  # type: ignore[call-overload]
        view = manifest.read_bytes(i)
        try:
            info = audio_info(view, name=f"{archive}:{names[i]}")
        finally:
            view.release()
        if info.frames <= 0:
            raise AudioError(f"{archive}:{names[i]}: contains no audio samples (0 frames)")
        return info.num_samples(target_sr)

    lengths, header_problems = _headers(
        list(range(len(names))),
        read,
        num_workers=num_workers or _default_workers(),
        show_progress=show_progress,
        desc=f"scan {archive.name}",
    )
    manifest.close()
    _report(problems + header_problems, str(archive), skip_errors)
    manifest.num_samples = lengths
    keep = np.flatnonzero(lengths >= 0)
    return manifest if len(keep) == len(lengths) else manifest.subset(keep)


def scan_file_list(
    path: str | os.PathLike,
    *,
    target_sr: int = SAMPLE_RATE,
    skip_errors: bool = False,
    show_progress: bool = True,
    num_workers: int | None = None,
) -> Manifest:
    """Manifest of a CSV that names audio files but not their lengths (headers are read).

    The CSV has a ``path`` column (relative to the CSV's folder, or absolute) and optionally a
    ``fileid`` column (default: the path without extension); other columns are ignored.
    """
    import csv

    path = Path(path)
    lines = (text for _, text in iter_lines(path, "file list", max_line_bytes=1 << 20))
    reader = csv.DictReader(lines)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num + 1}: not a valid CSV line ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise DataError(f"{path}: expected a CSV with a 'path' column (and optionally 'fileid')")
    if any(r.get("path") is None for r in rows):
        raise DataError(f"{path}: a row has no 'path' value")
    rels = [r["path"] for r in rows]
    fileids = [r.get("fileid") or os.path.splitext(r["path"])[0] for r in rows]
    dup = first_duplicate(fileids)
    if dup is not None:
        raise DataError(
            f"{path}:{dup[1] + 2}: fileid {fileids[dup[1]][:80]!r} already appears on line "
            f"{dup[0] + 2}; each fileid must appear once"
        )

    lengths, problems = _audio_lengths(
        path.parent, rels, target_sr, num_workers, show_progress, f"scan {path.name}"
    )
    _report(problems, str(path), skip_errors)
    keep = np.flatnonzero(lengths >= 0).tolist()
    return Manifest(
        fileids=StringColumn.from_strings(fileids[k] for k in keep),
        num_samples=lengths[keep],
        root=path.parent,
        paths=StringColumn.from_strings(rels[k] for k in keep),
        source=str(path),
    )


def read_audio_list(source: str | os.PathLike, *, show_progress: bool = True) -> Manifest:
    """A folder (scanned), a manifest, or a CSV of paths without lengths (headers read)."""
    source = Path(source)
    if source.is_dir():
        return scan_directory(source, show_progress=show_progress)
    if source.suffix == ".csv" and source.is_file():
        with open(source, "rb") as f:
            first = f.readline(1 << 20).decode("utf-8-sig", errors="replace")
        header = [h.strip() for h in first.strip().split(",")]
        if "path" in header and "num_samples" not in header:
            return scan_file_list(source, show_progress=show_progress)
    return read_manifest(source)
