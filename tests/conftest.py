"""Shared pytest fixtures."""

from __future__ import annotations

import http.server
import os
import threading

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The ``tiny`` synthetic corpus (seed 0), built once per test session.

    Returns a :class:`spidrkit.synth.CorpusInfo`: ``.out_dir``, ``.manifest(split)``,
    ``.labels(split)`` (10 ms phone labels), ``.item_file(split)`` (ABX items), for the splits
    "train", "dev", "test"; minimal pairs under ``out_dir / "lexical" | "syntactic" | "storycloze"``.
    Skips the test when the ``synth`` extra (espeakng-loader, soxr) is missing. Read-only: copy it
    before changing anything.
    """
    pytest.importorskip("espeakng_loader", reason="needs the synth extra")
    pytest.importorskip("soxr", reason="needs the synth extra")
    from spidrkit.synth import make_corpus

    out = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    return make_corpus(out, preset="tiny", seed=0, show_progress=False)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Test tensors are tiny: one thread is much faster than several fighting over a busy CPU.

    Session-wide (and exported to subprocesses) so runs compared bitwise use the same thread count.
    """
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def local_http(tmp_path):
    """A file server on 127.0.0.1 for download tests: (base URL, served folder, requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *_):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", root, hits
    httpd.shutdown()
