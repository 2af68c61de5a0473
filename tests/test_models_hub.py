"""Downloads against a local HTTP server on 127.0.0.1: caching, SHA-256 pinning, offline mode."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from spidrkit.errors import DownloadError
from spidrkit.models import hub


@pytest.fixture
def server(local_http):
    (local_http[1] / "weights.pt").write_bytes(b"x" * 300_000)
    return local_http


def test_download_verifies_and_caches(server, tmp_path) -> None:
    url, root, hits = server
    digest = hashlib.sha256((root / "weights.pt").read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "weights.pt"
    assert hub.download(f"{url}/weights.pt", dest, sha256=digest, offline=False) == dest
    assert dest.read_bytes() == (root / "weights.pt").read_bytes()
    n = len(hits)
    hub.download(f"{url}/weights.pt", dest, sha256=digest, offline=False)
    assert len(hits) == n  # served from the cache
    assert not [p for p in dest.parent.iterdir() if p.name.endswith(".tmp")]


def test_sha_mismatch_is_an_error_and_leaves_nothing(server, tmp_path) -> None:
    url, _, _ = server
    dest = tmp_path / "cache" / "weights.pt"
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        hub.download(f"{url}/weights.pt", dest, sha256="0" * 64, offline=False)
    assert list(dest.parent.iterdir()) == []


def test_offline_mode_never_touches_network(server, tmp_path, monkeypatch) -> None:
    url, _, hits = server
    monkeypatch.setenv("SPIDRKIT_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline"):
        hub.download(f"{url}/weights.pt", tmp_path / "w.pt")
    assert hits == []


def test_http_error_is_clear(server, tmp_path) -> None:
    url, _, _ = server
    with pytest.raises(DownloadError, match="download failed"):
        hub.download(f"{url}/nope.pt", tmp_path / "nope.pt", offline=False)
    assert not Path(tmp_path / "nope.pt").exists()


def test_fetch_preset_uses_cache_env(server, tmp_path, monkeypatch) -> None:
    from spidrkit.models import presets

    url, root, _ = server
    monkeypatch.setenv("SPIDRKIT_CACHE", str(tmp_path / "c"))
    fake = presets.Preset("spidr", presets.PRESETS["spidr_tiny"].config, f"{url}/weights.pt")
    monkeypatch.setitem(presets.PRESETS, "local_test", fake)
    path = hub.fetch_preset("local_test", offline=False)
    assert path == tmp_path / "c" / "weights.pt" and path.stat().st_size == 300_000
    with pytest.raises(DownloadError, match="not a published model"):
        hub.fetch_preset("spidr_tiny")
