"""Shared pytest fixtures."""

from __future__ import annotations

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
