"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spidrkit.errors import OutputError
from spidrkit.utils.integrity import HashingWriter, digest_path, file_sha256

_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
}


def _os_write_error(exc: BaseException) -> OSError | None:
    """The OSError of a failed write in ``exc`` or its chain (torch.save wraps it in a
    RuntimeError)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, OSError) and cur.errno in _WRITE_ERRNOS:
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def output_error(path: str | Path, exc: BaseException) -> OutputError | None:
    """An :class:`OutputError` naming ``path`` when ``exc`` is a failed write, else None."""
    os_exc = _os_write_error(exc)
    if os_exc is None:
        return None
    return OutputError(
        f"{path}: cannot write ({os_exc.strerror or os_exc}); the previous file, if any, is "
        "intact; free space or fix permissions and run again"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _follow_umask(fd: int) -> None:
    """mkstemp creates files 0600; an output gets the mode ``open()`` would give it (0666 & ~umask)."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666 & ~_umask())


def _write_digest(path: Path, hexdigest: str) -> None:
    fd, tmp = _mkstemp(digest_path(path))
    _follow_umask(fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{hexdigest}  {path.name}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, digest_path(path))
    except BaseException as exc:
        _discard(tmp, digest_path(path), exc)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, digest: bool = False) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash (or SIGKILL) mid-write leaves the old file untouched and at worst a ``.tmp`` file behind.
    The file gets the mode the umask gives (as ``open()`` would). ``digest`` (binary modes): also
    write ``<path>.sha256`` (before the rename: the file never appears without its checksum), which
    :func:`~spidrkit.utils.integrity.verify_digest` checks when the file is read.
    """
    path = Path(path)
    fd, tmp = _mkstemp(path)
    _follow_umask(fd)
    try:
        with os.fdopen(fd, mode) as f:
            hashing = HashingWriter(f) if digest else None
            yield hashing if hashing is not None else f
            f.flush()
            os.fsync(f.fileno())
        if hashing is not None:
            _write_digest(path, hashing.h.hexdigest())
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


def _discard(tmp: str | Path, path: Path, exc: BaseException) -> None:
    """Remove a failed write's temporary file; raise the one-line OutputError for write errors."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    err = output_error(path, exc)
    if err is not None:
        raise err from None


def _mkstemp(path: Path) -> tuple[int, str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        err = output_error(path, exc)
        if err is not None:
            raise err from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, digest: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; rename on success
    (``digest``: with ``<path>.sha256`` written first, as :func:`atomic_write`)."""
    path = Path(path)
    fd, tmp = _mkstemp(path)
    _follow_umask(fd)
    os.close(fd)
    try:
        yield Path(tmp)
        if digest:
            _write_digest(path, file_sha256(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


@contextlib.contextmanager
def atomic_files(paths: list[Path], mode: str = "w") -> Iterator[list[Any]]:
    """Write several outputs as a set: each to a temporary file, all renamed only once every one
    is written (a failure leaves every previous output as it was)."""
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise OutputError(f"{', '.join(map(str, paths))}: one file given for two outputs")
    with contextlib.ExitStack() as stack:
        temps = [stack.enter_context(atomic_path(p)) for p in paths]
        files = [stack.enter_context(open(t, mode)) for t in temps]
        yield files
        for f in files:
            f.flush()
            os.fsync(f.fileno())


def refuse_clobbering(outputs: dict[str, Any], inputs: list[Any]) -> None:
    """OutputError when an output path (``{"--out": path}``) is one of the ``inputs`` or another
    output (the same file given twice), so no input is ever replaced by a command's result."""
    seen: dict[Path, str] = {}
    for src in inputs:
        if src is not None and Path(src).exists():
            seen[Path(src).resolve()] = f"the input {src}"
    for name, out in outputs.items():
        if out is None:
            continue
        key = Path(out).resolve()
        if key in seen:
            raise OutputError(f"{name} {out}: is {seen[key]}; refusing to overwrite it")
        seen[key] = f"also {name}"
