"""File integrity: SHA-256 digests written beside checkpoints, and the check before a file is used.

Beside a checkpoint ``checkpoint_<step>.pt`` sits ``checkpoint_<step>.pt.sha256`` with the SHA-256 of
its bytes, in the format of ``sha256sum`` (so ``sha256sum -c`` checks it too). :func:`verify_checkpoint`
compares the file with that digest or, for a file without one (official releases, older runs), checks
the zip directory and the CRC-32 of every record, so a truncated or byte-corrupted file is found
before ``torch.load`` reads it. The training code writes digests (:class:`HashingWriter`), the
model loader verifies them; both sit above this module.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

DIGEST_SUFFIX = ".sha256"
_HASH_CHUNK = 4 << 20


def digest_path(path: str | Path) -> Path:
    """``<file>.sha256``: the SHA-256 written with a checkpoint."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_checkpoint(path: str | Path) -> str | None:
    """None when ``path`` is intact, else what is wrong with it (one phrase).

    With a ``.sha256`` file beside it the whole content is compared with that digest; without one
    (older or foreign checkpoints) the zip directory and every record's CRC-32 are checked.
    """
    path = Path(path)
    try:
        if digest_path(path).is_file():
            return verify_digest(path)
        with zipfile.ZipFile(path) as zf:
            if not zf.namelist():
                return "empty checkpoint archive"
            bad = zf.testzip()
            if bad is not None:
                return f"record {bad!r} fails its CRC check (corrupted)"
    except zipfile.BadZipFile:
        return "truncated or not a checkpoint (no readable zip directory)"
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, ValueError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None


def verify_digest(path: str | Path) -> str | None:
    """None when ``path`` has no ``.sha256`` beside it or matches it; else what is wrong (one
    phrase). Any file written with ``atomic_write(..., digest=True)`` has one."""
    digest = digest_path(path)
    if not digest.is_file():
        return None
    expected = digest.read_bytes()[:200].decode("ascii", errors="replace").split()[:1]
    if not expected or len(expected[0]) != 64:
        return f"unreadable checksum file {digest.name}"
    if file_sha256(path) != expected[0].lower():
        return f"content does not match its SHA-256 in {digest.name} (corrupted)"
    return None


class HashingWriter:
    """A write-only file wrapper that hashes what goes through it (``torch.save`` writes
    sequentially, so the digest of a checkpoint costs no second read)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.h.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return int(self.f.fileno())
