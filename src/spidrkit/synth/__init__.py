"""Synthetic multi-speaker English speech with exact phone alignments and ZeroSpeech-style test sets.

Speech comes from eSpeak NG (the ``synth`` extra), text from a built-in lexicon and grammar; the
same seed gives byte-identical files. Entry points: :func:`make_corpus` (``spidrkit synth``) and
:func:`check_corpus`. See docs/synth.md.
"""

from __future__ import annotations

from spidrkit.synth.checks import CheckReport, check_corpus, verify_determinism
from spidrkit.synth.corpus import PRESETS, CorpusInfo, SplitInfo, load_corpus_info, make_corpus
from spidrkit.synth.phones import INVENTORY, PHONES, SILENCE

__all__ = [
    "INVENTORY",
    "PHONES",
    "PRESETS",
    "SILENCE",
    "CheckReport",
    "CorpusInfo",
    "SplitInfo",
    "check_corpus",
    "load_corpus_info",
    "make_corpus",
    "verify_determinism",
]
