"""Manifests: which utterances a dataset has, where their audio is, how long each is.

A :class:`Manifest` is columnar (numpy arrays plus packed UTF-8 string columns, no per-row Python
objects), so a million rows load in seconds and pickle quickly into DataLoader workers.

Formats read by :func:`read_manifest` (and written by :func:`write_manifest`):
- CSV ``fileid,path,num_samples`` (official columns); ``path`` relative to the manifest's folder or
  absolute.
- Archive CSV ``fileid,archive,byte_offset,byte_size,num_samples``: the audio file of each row is
  ``byte_size`` bytes at ``byte_offset`` of an uncompressed tar (or any) file, read through mmap.
- fairseq TSV: first line the root folder (relative roots are taken from the manifest's folder),
  then ``relpath<TAB>num_samples``; fileid = relpath without extension.

``num_samples`` is the length at 16 kHz after resampling: ``floor(frames * 16000 / sr + 0.5)``
(:func:`spidrkit.audio.resampled_length`), i.e. exactly ``len(load_audio(path))``.
"""

from __future__ import annotations

import csv
import mmap
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spidrkit.audio import load_audio
from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.data.columns import StringColumn
from spidrkit.data.csvparse import parse_block
from spidrkit.errors import AudioError, DataError
from spidrkit.utils.files import atomic_write

FILE_COLUMNS = ("fileid", "path", "num_samples")
ARCHIVE_COLUMNS = ("fileid", "archive", "byte_offset", "byte_size", "num_samples")
_MAP_LOCK = threading.Lock()
_CHUNK_BYTES = 8 << 20  # lines are parsed in blocks of about this size (bounded memory)
_MAX_LINE_BYTES = 1 << 20  # a manifest line (or header) longer than this is refused


@dataclass(eq=False)
class Manifest:
    """Columnar list of utterances. Either ``paths`` (files) or the archive columns are set.

    fileids: [n] utterance names; num_samples: int64 [n] at 16 kHz; root: folder that relative
    paths and archives are resolved against; paths: [n] file paths; archives: archive file names,
    archive_ids: int32 [n] index into archives, byte_offsets / byte_sizes: int64 [n];
    source: where it was read from (for messages).
    """

    fileids: StringColumn
    num_samples: np.ndarray
    root: Path = field(default_factory=Path)
    paths: StringColumn | None = None
    archives: tuple[str, ...] = ()
    archive_ids: np.ndarray | None = None
    byte_offsets: np.ndarray | None = None
    byte_sizes: np.ndarray | None = None
    source: str = ""
    _maps: dict[int, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.num_samples = np.asarray(self.num_samples, dtype=np.int64)
        n = len(self.fileids)
        if len(self.num_samples) != n:
            raise DataError(f"{self.label}: {n} fileids but {len(self.num_samples)} lengths")
        if self.paths is None and self.archive_ids is None:
            raise DataError(f"{self.label}: a manifest needs paths or archive columns")
        if self.paths is not None and len(self.paths) != n:
            raise DataError(f"{self.label}: {n} fileids but {len(self.paths)} paths")

    # -- pickling: open archive maps stay in the process that opened them ---------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    @property
    def label(self) -> str:
        return self.source or "<manifest>"

    @property
    def kind(self) -> Literal["files", "archive"]:
        return "files" if self.paths is not None else "archive"

    def __len__(self) -> int:
        return len(self.fileids)

    @property
    def total_samples(self) -> int:
        return int(self.num_samples.sum())

    @property
    def hours(self) -> float:
        return self.total_samples / SAMPLE_RATE / 3600

    # -- one row -------------------------------------------------------------------------------
    def path(self, i: int) -> Path:
        """Resolved audio path of row ``i`` (files manifests)."""
        if self.paths is None:
            raise DataError(f"{self.label}: archive manifest rows have no path; use read_bytes")
        return self.root / self.paths[i]

    def archive_path(self, i: int) -> Path:
        if self.archive_ids is None:
            raise DataError(f"{self.label}: not an archive manifest")
        return self.root / self.archives[int(self.archive_ids[i])]

    def describe(self, i: int) -> str:
        """How messages name row ``i``: the path, or ``archive.tar@offset+size (fileid)``."""
        if self.paths is not None:
            return str(self.path(i))
        assert self.byte_offsets is not None and self.byte_sizes is not None
        return (
            f"{self.archive_path(i)}@{int(self.byte_offsets[i])}+{int(self.byte_sizes[i])}"
            f" ({self.fileids[i]})"
        )

    def _map(self, archive_id: int) -> Any:
        mm = self._maps.get(archive_id)
        if mm is not None:
            return mm
        with _MAP_LOCK:  # validation and scans read rows from several threads
            return self._open_map(archive_id)

    def _open_map(self, archive_id: int) -> Any:
        mm = self._maps.get(archive_id)
        if mm is None:
            path = self.root / self.archives[archive_id]
            try:
                with open(path, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except FileNotFoundError:
                raise AudioError(f"{path}: archive not found (listed in {self.label})") from None
            except (OSError, ValueError) as exc:
                raise AudioError(f"{path}: cannot map archive ({exc})") from None
            self._maps[archive_id] = mm
        return mm

    def read_bytes(self, i: int) -> memoryview:
        """The encoded audio file of archive row ``i``, as a view into the mmap'ed archive."""
        assert self.archive_ids is not None and self.byte_offsets is not None
        assert self.byte_sizes is not None
        mm = self._map(int(self.archive_ids[i]))
        start, size = int(self.byte_offsets[i]), int(self.byte_sizes[i])
        if start < 0 or size < 0 or start + size > len(mm):
            raise AudioError(
                f"{self.describe(i)}: outside the archive ({len(mm)} bytes); the archive is "
                "truncated or the manifest belongs to another archive"
            )
        return memoryview(mm)[start : start + size]

    def load(
        self, i: int, *, target_sr: int = SAMPLE_RATE, allow_resample: bool = True
    ) -> np.ndarray:
        """Decoded mono float32 ``[samples]`` of row ``i`` at ``target_sr`` (not standardised)."""
        if self.paths is not None:
            return load_audio(self.path(i), target_sr=target_sr, allow_resample=allow_resample)
        view = self.read_bytes(i)
        try:
            return load_audio(
                view, target_sr=target_sr, name=self.describe(i), allow_resample=allow_resample
            )
        finally:
            view.release()

    def close(self) -> None:
        """Close archive maps opened by this process."""
        for mm in self._maps.values():
            try:
                mm.close()
            except BufferError:  # a view is still alive; the map is closed when it is released
                pass
        self._maps.clear()

    # -- whole-manifest operations -------------------------------------------------------------
    def subset(self, indices: np.ndarray | Sequence[int]) -> Manifest:
        idx = np.asarray(indices, dtype=np.int64)
        return Manifest(
            fileids=self.fileids.take(idx),
            num_samples=self.num_samples[idx],
            root=self.root,
            paths=None if self.paths is None else self.paths.take(idx),
            archives=self.archives,
            archive_ids=None if self.archive_ids is None else self.archive_ids[idx],
            byte_offsets=None if self.byte_offsets is None else self.byte_offsets[idx],
            byte_sizes=None if self.byte_sizes is None else self.byte_sizes[idx],
            source=self.source,
        )

    @staticmethod
    def concat(manifests: Sequence[Manifest]) -> Manifest:
        """One manifest from several of the same kind (paths/archives made relative to ``/``)."""
        if not manifests:
            raise DataError("no manifest to concatenate")
        if len(manifests) == 1:
            return manifests[0]
        kinds = {m.kind for m in manifests}
        if len(kinds) > 1:
            raise DataError(
                "cannot mix file and archive manifests: "
                + ", ".join(f"{m.label} ({m.kind})" for m in manifests)
            )
        fileids = StringColumn.concat([m.fileids for m in manifests])
        num_samples = np.concatenate([m.num_samples for m in manifests])
        source = "+".join(m.label for m in manifests)
        if kinds == {"files"}:
            paths = StringColumn.from_strings(
                os.path.join(os.path.abspath(m.root), p) for m in manifests for p in m.paths or []
            )
            return Manifest(fileids, num_samples, Path("/"), paths=paths, source=source)
        archives: list[str] = []
        ids = []
        for m in manifests:
            remap = []
            for a in m.archives:
                full = os.path.abspath(m.root / a)
                if full not in archives:
                    archives.append(full)
                remap.append(archives.index(full))
            ids.append(np.asarray(remap, dtype=np.int32)[m.archive_ids])
        return Manifest(
            fileids,
            num_samples,
            Path("/"),
            archives=tuple(archives),
            archive_ids=np.concatenate(ids),
            byte_offsets=np.concatenate([m.byte_offsets for m in manifests]),  # type: ignore[misc]
            byte_sizes=np.concatenate([m.byte_sizes for m in manifests]),  # type: ignore[misc]
            source=source,
        )


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _read_blocks(f: Any, first_line: int, path: Path) -> Iterator[tuple[bytes, int]]:
    """Blocks of complete lines (about _CHUNK_BYTES each) and the line number of their first.

    Memory stays bounded on any input: a line that does not end within _MAX_LINE_BYTES past a
    block (``/dev/zero``, a binary file) is a DataError.
    """
    line = first_line
    while True:
        data = f.read(_CHUNK_BYTES)
        if not data:
            return
        if not data.endswith(b"\n"):
            tail = f.readline(_MAX_LINE_BYTES)
            if len(tail) == _MAX_LINE_BYTES and not tail.endswith(b"\n"):
                where = line + data.count(b"\n")
                raise DataError(
                    f"{path}:{where}: line longer than {_MAX_LINE_BYTES} bytes: not a manifest"
                )
            data += tail
        yield data, line
        line += data.count(b"\n")


def first_duplicate(fileids: Iterable[str]) -> tuple[int, int] | None:
    """Rows ``(first, again)`` of the first fileid that appears twice, or None."""
    ids = list(fileids)
    if len(set(ids)) == len(ids):
        return None
    first: dict[str, int] = {}
    for k, fid in enumerate(ids):
        if fid in first:
            return first[fid], k
        first[fid] = k
    return None


def _check_unique(path: Path, fileids: StringColumn, lines: np.ndarray) -> None:
    """DataError naming the first fileid that appears on two lines (it names output files)."""
    dup = first_duplicate(fileids)
    if dup is not None:
        a, b = dup
        raise DataError(
            f"{path}:{int(lines[b])}: fileid {fileids[b][:80]!r} already appears on line "
            f"{int(lines[a])}; each fileid must appear once"
        )


def _read_csv(path: Path, f: Any, header: list[str], unique: bool = True) -> Manifest:
    cols = {name: k for k, name in enumerate(header)}
    if set(FILE_COLUMNS) <= cols.keys():
        wanted: tuple[str, ...] = FILE_COLUMNS
    elif set(ARCHIVE_COLUMNS) <= cols.keys():
        wanted = ARCHIVE_COLUMNS
    else:
        raise DataError(
            f"{path}: header {','.join(header)!r} lacks the manifest columns; expected "
            f"{','.join(FILE_COLUMNS)!r} or {','.join(ARCHIVE_COLUMNS)!r}"
        )
    strings: dict[str, list[StringColumn]] = {"fileid": [], "path": [], "archive": []}
    ints: dict[str, list[np.ndarray]] = {"num_samples": [], "byte_offset": [], "byte_size": []}
    lines: list[np.ndarray] = []
    for data, line in _read_blocks(f, 2, path):
        block = parse_block(data, b",", len(header), path, line)
        lines.append(block.lines)
        for name in wanted:
            if name in strings:
                strings[name].append(block.strings(cols[name]))
            else:
                ints[name].append(block.integers(cols[name], name, path))

    def int_col(name: str) -> np.ndarray:
        return np.concatenate(ints[name]) if ints[name] else np.zeros(0, np.int64)

    # concatenate one column at a time, dropping its blocks, so the peak stays near 1.5x the data
    fileids = StringColumn.concat(strings.pop("fileid"))
    if unique:
        _check_unique(path, fileids, np.concatenate(lines) if lines else np.zeros(0, np.int64))
    if wanted == FILE_COLUMNS:
        paths = StringColumn.concat(strings.pop("path"))
        return Manifest(fileids, int_col("num_samples"), path.parent, paths=paths, source=str(path))
    names = StringColumn.concat(strings["archive"]).tolist()  # few distinct values
    archives, ids = np.unique(np.array(names, dtype=object), return_inverse=True)
    return Manifest(
        fileids,
        int_col("num_samples"),
        path.parent,
        archives=tuple(str(a) for a in archives),
        archive_ids=ids.astype(np.int32).reshape(-1),
        byte_offsets=int_col("byte_offset"),
        byte_sizes=int_col("byte_size"),
        source=str(path),
    )


def _read_tsv(path: Path, f: Any, root_line: str, unique: bool = True) -> Manifest:
    root = Path(root_line)
    if not root.is_absolute():
        root = path.parent / root
    rels: list[StringColumn] = []
    ids: list[StringColumn] = []
    lens: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    for data, line in _read_blocks(f, 2, path):
        block = parse_block(data, b"\t", 2, path, line)
        rels.append(block.strings(0))
        ids.append(block.strings(0, strip_extension=True))
        lens.append(block.integers(1, "num_samples", path))
        lines.append(block.lines)
    fileids = StringColumn.concat(ids)
    if unique:
        _check_unique(path, fileids, np.concatenate(lines) if lines else np.zeros(0, np.int64))
    return Manifest(
        fileids,
        np.concatenate(lens) if lens else np.zeros(0, np.int64),
        root,
        paths=StringColumn.concat(rels),
        source=str(path),
    )


def read_manifest(path: str | os.PathLike, *, unique: bool = True) -> Manifest:
    """Read a CSV, archive CSV or fairseq TSV manifest (see the module docstring).

    Refused, with the file and line: a header without the manifest columns (never echoed), lines
    longer than 1 MiB, non-UTF-8 or NUL bytes, a wrong column count, non-integer lengths, and (with
    ``unique``) a fileid that appears twice.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise DataError(
            f"{path}: is a directory; build a manifest with `spidrkit manifest`"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    with f:
        raw = f.readline(_MAX_LINE_BYTES)
        try:
            first = raw.rstrip(b"\r\n").decode("utf-8-sig")
            header = [h.strip() for h in next(csv.reader([first]))] if first else []
        except (UnicodeDecodeError, csv.Error):
            header = None  # binary or otherwise not a header: refused below, without echoing it
        if not raw.strip():
            raise DataError(f"{path}: empty manifest (expected a header line)")
        if header and "fileid" in header and "num_samples" in header:
            return _read_csv(path, f, header, unique)
        line2 = f.tell()
        second = f.readline(_MAX_LINE_BYTES)
        f.seek(line2)
        is_text = header is not None and "\x00" not in first and len(raw) < _MAX_LINE_BYTES
        if is_text and (b"\t" in second or (path.suffix == ".tsv" and not second.strip())):
            return _read_tsv(path, f, first, unique)
        # the first line is not quoted: a secrets file given by mistake must not be echoed
        raise DataError(
            f"{path}: the first line lacks the manifest columns (it is not shown); expected a CSV header "
            f"{','.join(FILE_COLUMNS)!r} or {','.join(ARCHIVE_COLUMNS)!r}, or a fairseq TSV "
            "(root folder on the first line, then path<TAB>num_samples)"
        )


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _relative_to(target_dir: Path, root: Path, names: Iterable[str]) -> Iterator[str]:
    """Each name resolved against ``root``, re-expressed relative to ``target_dir`` when inside it."""
    root_abs, target_abs = os.path.abspath(root), os.path.abspath(target_dir)
    if root_abs == target_abs:
        yield from names
        return
    for name in names:
        full = os.path.normpath(os.path.join(root_abs, name))
        rel = os.path.relpath(full, target_abs)
        yield full if rel.startswith("..") else rel.replace(os.sep, "/")


def write_manifest(
    manifest: Manifest, path: str | os.PathLike, *, format: Literal["csv", "tsv"] = "csv"
) -> Path:
    """Write ``manifest`` atomically. Paths inside the manifest's folder are written relative to it,
    others absolute. ``format="tsv"`` writes fairseq's TSV (files manifests only)."""
    path = Path(path)
    out_dir = path.parent
    with atomic_write(path, "w") as f:
        if format == "tsv":
            if manifest.paths is None:
                raise DataError(f"{path}: fairseq TSV cannot describe an archive manifest; use csv")
            f.write(f"{os.path.abspath(manifest.root)}\n")
            for rel, n in zip(manifest.paths, manifest.num_samples.tolist(), strict=True):
                f.write(f"{rel}\t{n}\n")
            return path
        writer = csv.writer(f, lineterminator="\n")
        if manifest.paths is not None:
            writer.writerow(FILE_COLUMNS)
            paths = _relative_to(out_dir, manifest.root, manifest.paths)
            writer.writerows(
                zip(manifest.fileids, paths, manifest.num_samples.tolist(), strict=True)
            )
        else:
            assert manifest.archive_ids is not None
            assert manifest.byte_offsets is not None and manifest.byte_sizes is not None
            writer.writerow(ARCHIVE_COLUMNS)
            archives = list(_relative_to(out_dir, manifest.root, manifest.archives))
            names = (archives[a] for a in manifest.archive_ids.tolist())
            writer.writerows(
                zip(
                    manifest.fileids,
                    names,
                    manifest.byte_offsets.tolist(),
                    manifest.byte_sizes.tolist(),
                    manifest.num_samples.tolist(),
                    strict=True,
                )
            )
    return path
