"""The units and feature file formats: read, write, validate, merge repeats, match names.

Every reader of these files in spidrkit (``spidrkit units``, the unit LM, ABX, unit quality, k-means)
goes through this module.

- Units JSONL: one line per utterance ``{"audio": path_or_fileid, "units": [...], "durations":
  [...]}``; ``durations`` (20 ms frames per unit, each >= 1) is present when repeats were merged.
  ``fileid`` or ``name`` are accepted in place of ``audio``. An optional text twin holds one line of
  space-separated units per utterance.
- Feature files: one ``[frames, dim]`` tensor per utterance, ``<dir>/<fileid>.pt`` (``torch.save``,
  read with ``weights_only=True``) or ``.npy``; ``<dir>/layer<L>/<fileid>.pt`` for several layers.
- Names: an entry and a query name the same file when their path components, extension dropped,
  agree from the end (``dev/aAbc`` names ``/data/lexical/dev/aAbc.wav``); the longest agreement wins
  and a tie between different entries is an error (:class:`KeyIndex`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from spidrkit.audio.io import AUDIO_EXTENSIONS
from spidrkit.errors import DataError
from spidrkit.utils.files import atomic_files, atomic_write
from spidrkit.utils.paths import inside, is_safe_relative
from spidrkit.utils.textfiles import (
    check_finite_features,
    duplicate_error,
    durations,
    iter_jsonl,
    unit_ids,
)

FEATURE_SUFFIXES = (".pt", ".npy")
"""Extensions of feature files."""

# -- merging repeats -------------------------------------------------------------------------------


def dedup(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge consecutive repeats: ``[T]`` -> (units ``[n]``, durations ``[n]`` in frames)."""
    if units.numel() == 0:
        return units.clone(), torch.zeros(0, dtype=torch.long, device=units.device)
    out, counts = torch.unique_consecutive(units, return_counts=True)
    return out, counts


def dedup_list(units: Sequence[int] | torch.Tensor) -> list[int]:
    """Merge consecutive repeats of a list: ``[3, 3, 5, 5, 5, 3] -> [3, 5, 3]``."""
    t = torch.as_tensor(units, dtype=torch.long).reshape(-1)
    return dedup(t)[0].tolist()


def expand(units: Sequence[int], durations: Sequence[int] | None) -> list[int]:
    """Undo :func:`dedup`: repeat each unit by its duration (1 when durations are absent)."""
    if durations is None:
        return list(units)
    if len(durations) != len(units):
        raise DataError(f"{len(units)} units but {len(durations)} durations")
    return [u for u, d in zip(units, durations, strict=True) for _ in range(int(d))]


# -- units JSONL -----------------------------------------------------------------------------------


@dataclass
class Units:
    """The units of one utterance; ``durations`` (20 ms frames) is None when not deduplicated."""

    audio: str
    units: list[int]
    durations: list[int] | None = None

    @classmethod
    def from_frames(cls, audio: str, frame_units: torch.Tensor, deduplicate: bool) -> Units:
        if deduplicate:
            u, d = dedup(frame_units)
            return cls(audio, u.tolist(), d.tolist())
        return cls(audio, frame_units.tolist(), None)

    def to_json(self) -> str:
        rec: dict[str, Any] = {"audio": self.audio, "units": self.units}
        if self.durations is not None:
            rec["durations"] = self.durations
        return json.dumps(rec)

    def frames(self) -> list[int]:
        """Units at the frame rate (repeats restored)."""
        return expand(self.units, self.durations)

    @property
    def key(self) -> str:
        """``audio`` without its audio or feature extension (the name :class:`KeyIndex` matches)."""
        return strip_extension(self.audio)


def write_units(
    records: Iterable[Units], path: str | Path, *, txt: str | Path | None = None
) -> int:
    """Atomically write JSONL (and optionally the text form); returns the number of lines."""
    records = list(records)
    paths = [Path(path)] + ([Path(txt)] if txt is not None else [])
    with atomic_files(paths) as files:  # both or neither: a failed .txt keeps the old JSONL
        for r in records:
            files[0].write(r.to_json() + "\n")
            if txt is not None:
                files[1].write(" ".join(str(u) for u in r.units) + "\n")
    return len(records)


def read_units(path: str | Path, *, allow_empty: bool = False) -> list[Units]:
    """Read and validate a units JSONL file (see the module docstring); errors name file:line.

    Lines are read with a length cap; each must be a JSON object with a string ``audio`` (or
    ``fileid`` / ``name``), ``units`` integers in ``[0, MAX_UNIT_ID]`` and, when present, one
    ``durations`` integer >= 1 per unit. One ``audio`` may appear once.
    """
    path = Path(path)
    out = []
    first_line: dict[str, int] = {}
    for n, rec in iter_jsonl(path, "units file (make one with `spidrkit units`)"):
        where = f"{path}:{n}"
        audio = next((rec[k] for k in ("audio", "fileid", "name") if k in rec), None)
        if not isinstance(audio, str) or not audio:
            raise DataError(
                f'{where}: expected {{"audio": "...", "units": [int, ...], "durations": [int, ...]}}'
            )
        units = unit_ids(rec.get("units"), where)
        raw = rec.get("durations")
        u = Units(audio, units, None if raw is None else durations(raw, where, len(units)))
        if audio in first_line:
            raise duplicate_error(path, "audio", audio, first_line[audio], n)
        first_line[audio] = n
        out.append(u)
    if not out and not allow_empty:
        raise DataError(f"{path}: no utterances in this units file")
    return out


def frame_units_by_key(path: str | Path) -> dict[str, torch.Tensor]:
    """Units JSONL -> ``{key: LongTensor [frames]}``, durations expanded (one unit per frame).

    Two lines whose ``audio`` differ only by extension (``a`` and ``a.flac``) share a key: refused.
    """
    out: dict[str, torch.Tensor] = {}
    seen: dict[str, str] = {}
    for r in read_units(path):
        if r.key in seen:
            raise DataError(
                f"{path}: {seen[r.key]!r} and {r.audio!r} both name utterance {r.key!r}; "
                "each utterance must appear once"
            )
        seen[r.key] = r.audio
        out[r.key] = torch.tensor(r.frames(), dtype=torch.long)
    return out


# -- names -----------------------------------------------------------------------------------------


def strip_extension(name: str) -> str:
    """``a/b.wav`` -> ``a/b``; only audio and feature extensions are removed."""
    suffix = PurePosixPath(name).suffix
    if suffix.lower() in AUDIO_EXTENSIONS + FEATURE_SUFFIXES:
        return name[: -len(suffix)]
    return name


def name_parts(name: str | Path) -> tuple[str, ...]:
    """Path components of ``name`` without its extension, ``/``, ``.`` and ``..``."""
    text = strip_extension(str(name).replace("\\", "/"))
    return tuple(p for p in text.split("/") if p not in ("", ".", ".."))


class KeyIndex:
    """Find the entry that names the same file as a query (see the module docstring)."""

    def __init__(self, keys: Iterable[str], source: str = "units") -> None:
        self.source = source
        self._by_last: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for key in keys:
            parts = name_parts(key)
            if parts:
                self._by_last.setdefault(parts[-1], []).append((parts, key))

    def find(self, name: str | Path) -> str | None:
        """The matching key, or None; a tie between two different keys is a DataError."""
        query = name_parts(name)
        if not query:
            return None
        best: list[tuple[int, str]] = []
        for parts, key in self._by_last.get(query[-1], []):
            n = min(len(parts), len(query))
            if parts[-n:] == query[-n:]:
                best.append((n, key))
        if not best:
            return None
        top = max(n for n, _ in best)
        winners = sorted({key for n, key in best if n == top})
        if len(winners) > 1:
            raise DataError(
                f"{self.source}: several entries match {name} equally well ({winners[:3]}); "
                "write full paths, or paths relative to a common root"
            )
        return winners[0]


def match_keys(keys: Iterable[str], names: Iterable[str], source: str = "units") -> dict[str, str]:
    """``{name: key}`` for every name that some key matches (see :class:`KeyIndex`)."""
    index = KeyIndex(keys, source)
    out = {}
    for name in names:
        key = index.find(name)
        if key is not None:
            out[name] = key
    return out


# -- feature files ---------------------------------------------------------------------------------


def feature_path(out_dir: str | Path, fileid: str, layer: int | None, fmt: str) -> Path:
    """``<out>/<fileid>.<fmt>``, or ``<out>/layer<L>/<fileid>.<fmt>`` when ``layer`` is given."""
    base = Path(out_dir) if layer is None else Path(out_dir) / f"layer{layer}"
    return inside(base, fileid, f".{fmt}")  # never outside out_dir (absolute, "..", empty)


def save_features(path: Path, feats: torch.Tensor, fmt: str) -> None:
    """Atomically write one ``[frames, dim]`` tensor as ``.pt`` or ``.npy``."""
    with atomic_write(path, "wb") as f:
        if fmt == "pt":
            torch.save(feats.contiguous(), f)
        else:
            np.save(f, feats.numpy())


def load_features(path: str | Path) -> torch.Tensor:
    """One ``[frames, dim]`` tensor from a ``.pt`` or ``.npy`` file.

    A leading batch dimension of 1 is dropped and a 1-D tensor becomes ``[frames, 1]``. Refused:
    anything but a real-valued tensor, and any NaN or infinite value.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            x = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a data problem
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"{path}: cannot read features ({first})") from None
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{path}: expected a tensor [frames, dim], found {type(x).__name__}")
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2:
        raise DataError(f"{path}: expected a tensor [frames, dim], found shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int64, torch.int32, torch.int16)):
        raise DataError(f"{path}: expected real-valued features, found dtype {x.dtype}")
    return check_finite_features(x, str(path))


def _feature_files(folder: Path) -> Iterator[Path]:
    for p in folder.rglob("*"):
        if p.suffix in FEATURE_SUFFIXES and not p.name.startswith(".") and p.is_file():
            yield p


def list_features(folder: str | Path) -> list[tuple[str, Path]]:
    """``(fileid, path)`` of every ``.pt`` / ``.npy`` file under ``folder``, sorted by fileid."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: features folder not found")
    files = sorted(
        (p.relative_to(folder).with_suffix("").as_posix(), p) for p in _feature_files(folder)
    )
    if not files:
        raise DataError(f"{folder}: no .pt or .npy feature files found")
    for (a, pa), (b, pb) in zip(files, files[1:]):
        if a == b:  # a.pt and a.npy: one fileid, two files
            raise DataError(
                f"{folder}: {pa.name} and {pb.name} both hold fileid {a!r}; keep one of them"
            )
    return files


class FeatureFolder(Mapping[str, torch.Tensor]):
    """Lazy ``fileid -> [frames, dim]`` view of ``<root>/<fileid>.pt`` (or ``.npy``) files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: features folder not found")

    def path(self, fileid: str) -> Path | None:
        """The file of ``fileid`` (``.pt`` first, then ``.npy``), ``None`` when there is none."""
        if not is_safe_relative(fileid):  # an item file cannot reach outside the folder
            return None
        for ext in FEATURE_SUFFIXES:
            p = self.root / f"{fileid}{ext}"
            if p.is_file():
                return p
        return None

    def __getitem__(self, fileid: str) -> torch.Tensor:
        p = self.path(fileid)
        if p is None:
            raise KeyError(fileid)
        return load_features(p)

    def __contains__(self, fileid: object) -> bool:
        return isinstance(fileid, str) and self.path(fileid) is not None

    def __iter__(self) -> Iterator[str]:
        for p in sorted(_feature_files(self.root)):
            yield p.relative_to(self.root).with_suffix("").as_posix()

    def __len__(self) -> int:
        return sum(1 for _ in self)
