"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from spidrkit.errors import OutputError

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


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash (or SIGKILL) mid-write leaves the old file untouched and at worst a ``.tmp`` file behind.
    """
    path = Path(path)
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
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
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; rename on success."""
    path = Path(path)
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise
