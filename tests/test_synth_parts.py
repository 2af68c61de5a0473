"""Pieces of the synthetic corpus that need no corpus: lexicon, grammar, phones, speakers, alignment."""

from __future__ import annotations

import random

import numpy as np
import pytest

from spidrkit.synth.alignment import Segment, abx_items, frame_labels, segments_from_synthesis
from spidrkit.synth.espeak import PhonemeEvent, Synthesis, WordEvent
from spidrkit.synth.grammar import SYNTAX_TESTS, Grammar, make_pair_sentence, perturb
from spidrkit.synth.lexicon import TOPICS, load_lexicon, past, plural, third_person
from spidrkit.synth.minimal_pairs import NonWordMaker
from spidrkit.synth.phones import ESPEAK_TO_PHONES, INVENTORY, PHONES, tokenize_mnemonics
from spidrkit.synth.speakers import make_speakers


def test_lexicon_size_topics_and_inflections():
    lex = load_lexicon()
    assert len(lex.lemmas()) >= 500
    assert set(lex.nouns) == set(TOPICS) and all(len(v) >= 25 for v in lex.nouns.values())
    assert (plural("box"), plural("city"), plural("toy")) == ("boxes", "cities", "toys")
    assert (third_person("watch"), third_person("study"), third_person("play")) == (
        "watches",
        "studies",
        "plays",
    )
    assert (past("bake"), past("study"), past("walk")) == ("baked", "studied", "walked")
    mouse = next(n for n in lex.nouns["animals"] if n.lemma == "mouse")
    assert mouse.plural == "mice"


def test_grammar_is_deterministic_and_agrees():
    g = Grammar()
    a = [g.sentence(random.Random(7), "food").text for _ in range(3)]
    assert len(set(a)) == 1
    lex = load_lexicon()
    thirds = {v.third for vs in lex.verbs.values() for v in vs} | {
        v.third for v in lex.intransitive
    }
    rng = random.Random(0)
    for _ in range(200):
        s = g.sentence(rng, rng.choice(TOPICS), tense="present", vp="trans")
        verb = s.words[s.verb]
        assert (verb in thirds) == (s.number == "sg"), s.text
        if s.obj_det is not None and s.words[s.obj_det] in ("a", "an"):
            article, nxt = s.words[s.obj_det], s.words[s.obj_det + 1]
            assert (article == "an") == (nxt[0] in "aeiou"), s.text


@pytest.mark.parametrize("test", SYNTAX_TESTS)
def test_every_perturbation_is_a_minimal_change(test):
    g = Grammar()
    rng = random.Random(1)
    for _ in range(20):
        s = make_pair_sentence(g, rng, rng.choice(TOPICS), test)
        bad = perturb(s, test)
        assert bad != s.words
        if test[0] == "word_order":
            assert sorted(bad) == sorted(s.words)
        else:
            assert len(bad) == len(s.words)
            assert sum(x != y for x, y in zip(bad, s.words, strict=True)) == 1


def test_phone_map_and_tokenizer():
    labels = {lab for v in ESPEAK_TO_PHONES.values() for lab, _ in v}
    assert labels == set(PHONES) and len(PHONES) == 39 and "SIL" in INVENTORY
    for v in ESPEAK_TO_PHONES.values():
        assert abs(sum(share for _, share in v) - 1.0) < 1e-9
    assert tokenize_mnemonics("a#dm'aI@") == ["a#", "d", "m", "'", "aI@"]
    assert tokenize_mnemonics("tS'i@3z") == ["tS", "'", "i@3", "z"]
    assert tokenize_mnemonics("x!") is None


def test_speakers_distinct_disjoint_and_seeded():
    spk = make_speakers(24, 4, 4, seed=3)
    assert spk == make_speakers(24, 4, 4, seed=3)
    assert spk != make_speakers(24, 4, 4, seed=4)
    assert len({(s.timbre, s.pitch_base, s.rate) for s in spk}) == len(spk) == 32
    assert len({s.id for s in spk}) == 32
    held_out = [s for s in spk if s.split != "train"]
    assert len({s.timbre for s in held_out}) == len(held_out)  # 8 timbres, 8 held-out speakers
    text = spk[0].voice_file_text()
    assert "flutter 0" in text and text.startswith("language en-us")


def _fake_synthesis():
    # 22050 Hz samples: silence, "b" (closure 0..441 silent, release), "ah", pause, "d", "ah"
    x = np.zeros(4410 * 2, dtype=np.int16)
    x[1323:3087] = 3000  # b release + ah
    x[5292:8000] = 3000
    ph = [
        PhonemeEvent(882, "b"),
        PhonemeEvent(1323, "'V"),
        PhonemeEvent(3087, "_:"),
        PhonemeEvent(4851, "d"),
        PhonemeEvent(5292, "V"),
        PhonemeEvent(8000, "_"),
    ]
    words = [WordEvent(441, 1, 3), WordEvent(4851, 5, 3)]
    return Synthesis(x, ph, words)


def test_alignment_segments_frames_and_items():
    syn = _fake_synthesis()
    ratio = 16000 / 22050
    n = 16000  # final length: 1 s, offset 1600 samples of leading silence
    segs = segments_from_synthesis(syn, ["bah", "dah"], "bah dah.", ratio, 1600, n)
    labels = [s.label for s in segs]
    assert labels == ["SIL", "b", "ah", "SIL", "d", "ah", "SIL"]
    assert segs[0].start == 0 and segs[-1].end == n
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))
    # the word event (441) starts "b" before its phoneme event (882): the closure belongs to b
    assert segs[1].start == 1600 + round(441 * ratio)
    assert segs[4].start == 1600 + round(4851 * ratio)
    frames = frame_labels(segs, n)
    assert len(frames) == 100
    centre = [(i * 160 + 80) for i in range(100)]
    for i, lab in enumerate(frames):
        seg = next(s for s in segs if s.start <= centre[i] < s.end)
        assert lab == seg.label
    # only phones with speech on both sides are ABX items: none here (each is next to silence)
    assert abx_items(segs, "u1", "s01") == []
    inner = [Segment("SIL", 0, 10), Segment("b", 10, 20), Segment("ah", 20, 36),
             Segment("d", 36, 48), Segment("SIL", 48, 64)]  # fmt: skip
    assert abx_items(inner, "u1", "s01", sample_rate=16) == ["u1 1.2500 2.2500 ah b d s01"]


def test_nonwords_same_length_and_not_words():
    prons = {
        w: tokenize_mnemonics(m)
        for w, m in {
            "cat": "k'at",
            "dog": "d'0g",
            "bed": "b'Ed",
            "pig": "p'Ig",
            "mat": "m'at",
            "sun": "s'Vn",
            "rabbit": "r'abIt",
            "button": "b'Vt@n",
        }.items()
    }
    maker = NonWordMaker(prons)
    rng = random.Random(0)
    real = maker.real
    made = 0
    for word in prons:
        fake = maker.make(word, rng)
        if fake is None:
            continue
        made += 1
        from spidrkit.synth.phones import mnemonics_to_phones

        labels = mnemonics_to_phones(fake)
        assert len(labels) == len(mnemonics_to_phones(prons[word]))
        assert tuple(labels) not in real
    assert made >= 4


def test_merged_words_get_their_share_of_phones():
    from spidrkit.synth.alignment import _split_merged_words

    # eSpeak said "in the" under one word event: its four phones all carry word 0
    segs = [Segment("SIL", 0, 5)] + [Segment(p, 5 + i, 6 + i, 0) for i, p in enumerate("abcd")]
    segs += [Segment("e", 9, 10, 2), Segment("SIL", 10, 12)]
    _split_merged_words(segs, [2, 2, 1])
    assert [s.word for s in segs] == [-1, 0, 0, 1, 1, 2, -1]
