"""Download published weights into a cache, atomically, with optional SHA-256 pinning.

Cache folder: ``$SPIDRKIT_CACHE`` or ``~/.cache/spidrkit``. Offline mode (``offline=True`` or
``SPIDRKIT_OFFLINE=1``) never touches the network and fails if the file is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from spidrkit.errors import DownloadError
from spidrkit.models.presets import PRESETS
from spidrkit.utils.files import atomic_path
from spidrkit.utils.integrity import file_sha256
from spidrkit.utils.progress import progress

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where downloaded weights live."""
    return Path(os.environ.get("SPIDRKIT_CACHE", Path.home() / ".cache" / "spidrkit"))


def is_offline() -> bool:
    return os.environ.get("SPIDRKIT_OFFLINE", "0").lower() in ("1", "true", "yes")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    offline: bool | None = None,
    timeout: float = 60.0,
    show_progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there (and matches ``sha256`` when given).

    The file is written to a temporary name and renamed only once complete and verified, so an
    interrupted or corrupt download never leaves a file at ``dest``.
    """
    offline = is_offline() if offline is None else offline
    if dest.is_file():
        if sha256 is None or file_sha256(dest) == sha256:
            return dest
        log.warning("%s: cached file does not match its SHA-256, downloading again", dest)
        if offline:
            raise DownloadError(f"{dest}: cached file has the wrong SHA-256 and offline mode is on")
    if offline:
        raise DownloadError(
            f"{dest.name} is not in the cache ({dest.parent}) and offline mode is on "
            "(SPIDRKIT_OFFLINE=1); download it on a connected machine or copy it there"
        )
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            h = hashlib.sha256()
            with (
                open(tmp, "wb") as f,
                progress(
                    total=total, unit="B", unit_scale=True, desc=dest.name, enabled=show_progress
                ) as bar,
            ):
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            if total is not None and tmp.stat().st_size != total:
                raise DownloadError(f"{url}: got {tmp.stat().st_size} of {total} bytes")
            digest = h.hexdigest()
            if sha256 is not None and digest != sha256:
                raise DownloadError(
                    f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); file discarded"
                )
            if sha256 is None:
                log.info("%s sha256=%s (pin it to verify later downloads)", dest.name, digest)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DownloadError(f"{url}: download failed ({exc})") from None
    return dest


def fetch_preset(name: str, *, offline: bool | None = None) -> Path:
    """Path of a published model's weights, downloaded into the cache if needed."""
    preset = PRESETS.get(name)
    if preset is None or preset.url is None:
        known = ", ".join(k for k, p in PRESETS.items() if p.url)
        raise DownloadError(f"{name!r} is not a published model (known: {known})")
    dest = cache_dir() / Path(preset.url).name
    return download(preset.url, dest, sha256=preset.sha256, offline=offline)
