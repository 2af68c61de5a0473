"""Output paths made from names found in inputs (fileids, tar members): never outside their folder.

A fileid like ``speaker/utt1`` becomes ``<out>/speaker/utt1.pt``. One that is absolute
(``/etc/x``), climbs (``../../x``), is empty, or holds a NUL or a backslash-drive prefix could
write anywhere, so it is refused, not rewritten (a rewritten name could collide with another).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from spidrkit.errors import DataError


def unsafe_reason(name: str) -> str | None:
    """Why ``name`` cannot be used as a relative output path, or None when it can."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if name.endswith(("/", "\\")):
        return "ends with a slash (names a folder, not a file)"
    if any(ord(c) < 0x20 for c in name):
        return "contains a control character"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    pieces = name.replace("\\", "/").split("/")
    if any(p == ".." for p in pieces):
        return "climbs out of its folder with '..'"
    if any(p in (".", "") for p in pieces):
        return "has an empty or '.' path component"
    if any(p == ".." for p in parts):
        return "climbs out of its folder with '..'"
    if not parts or parts[-1] in (".", ""):
        return "names no file"
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        return "has a path component longer than 255 bytes"
    return None


def is_safe_relative(name: str) -> bool:
    return unsafe_reason(name) is None


def inside(root: str | Path, name: str, suffix: str = "", *, source: str = "") -> Path:
    """``<root>/<name><suffix>``, refusing a ``name`` that would land outside ``root``.

    ``source`` names where ``name`` came from (``manifest.csv:12``) for the message.
    """
    reason = unsafe_reason(name)
    if reason is not None:
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}fileid {name[:80]!r} {reason}; outputs are only written inside {root} "
            "(rename it in the manifest)"
        )
    path = Path(root) / f"{name}{suffix}"
    # a symlinked folder inside root would lead the file out of it: resolve and compare
    real_root = Path(root).resolve()
    real = path.parent.resolve()
    if real != real_root and real_root not in real.parents:
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}fileid {name[:80]!r} leads through a symbolic link to {real}, outside {root}; "
            "outputs are only written inside it"
        )
    return path
