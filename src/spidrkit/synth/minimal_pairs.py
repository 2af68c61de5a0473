"""ZeroSpeech-2021-style minimal pairs: lexical (sWUGGY-like), syntactic (sBLIMP-like), topic StoryCloze.

Each function returns :class:`PairItem` s (what to say, and the gold row without file name and voice);
:func:`expand` gives every item to every voice, names the files opaquely and returns the render jobs
and the gold rows. Gold columns (docs/lm.md, "Task folder layouts"):

- lexical:    filename, id, voice, correct, word, phones, frequency, length
- syntactic:  filename, voice, type, subtype, id, correct, transcription
- storycloze: filename, voice, id, correct, topic, ending_topic, transcription
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from spidrkit.synth.grammar import SYNTAX_TESTS, Grammar, make_pair_sentence, perturb
from spidrkit.synth.lexicon import TOPICS, Lexicon
from spidrkit.synth.phones import (
    ESPEAK_TO_PHONES,
    STRESS_MARKS,
    VOWELS,
    mnemonics_to_phones,
    tokenize_mnemonics,
)
from spidrkit.synth.render import Job
from spidrkit.synth.speakers import Speaker

LEXICAL_COLUMNS = ("filename", "id", "voice", "correct", "word", "phones", "frequency", "length")
SYNTACTIC_COLUMNS = ("filename", "voice", "type", "subtype", "id", "correct", "transcription")
STORYCLOZE_COLUMNS = (
    "filename",
    "voice",
    "id",
    "correct",
    "topic",
    "ending_topic",
    "transcription",
)


@dataclass(frozen=True)
class PairItem:
    """One side of a pair: the text eSpeak reads and the gold fields other than filename/voice."""

    text: str
    words: tuple[str, ...]
    phonemes: bool  # text is [[mnemonics]]
    row: dict


# ---------------------------------------------------------------------- lexical: non-words
def _units(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """Group phoneme token positions into (class, positions): onset / medial / coda / nucleus."""
    phon = [i for i, t in enumerate(tokens) if t not in STRESS_MARKS]
    units: list[tuple[str, list[int]]] = []
    run: list[int] = []
    for i in phon:
        if ESPEAK_TO_PHONES[tokens[i]][0][0] in VOWELS:
            if run:
                units.append(("onset" if not units else "medial", run))
                run = []
            units.append(("nucleus", [i]))
        else:
            run.append(i)
    if run:
        units.append(("coda", run))
    return units


def _key(tokens: list[str], positions: list[int]) -> tuple[str, ...]:
    return tuple(tokens[i] for i in positions)


def _n_labels(unit: tuple[str, ...]) -> int:
    return sum(len(ESPEAK_TO_PHONES[t]) for t in unit)


class NonWordMaker:
    """Phonotactically plausible non-words from the lexicon's own pronunciations.

    A word's onset, medial cluster, nucleus or coda is replaced by another one seen in the same
    position in the lexicon, with the same number of phones; the result must not be a lexicon
    pronunciation and every phone bigram in it (with word edges) must occur in the lexicon.
    """

    def __init__(self, prons: dict[str, list[str]]) -> None:
        self.prons = prons
        self.real = {tuple(mnemonics_to_phones(t)) for t in prons.values()}
        self.bigrams: set[tuple[str, str]] = set()
        self.units: dict[tuple[str, int], list[tuple[str, ...]]] = {}
        seen: set = set()
        for tokens in prons.values():
            labels = ["#"] + mnemonics_to_phones(tokens) + ["#"]
            self.bigrams |= set(zip(labels, labels[1:], strict=False))
            for cls, pos in _units(tokens):
                unit = _key(tokens, pos)
                k = (cls, _n_labels(unit))
                if (k, unit) not in seen:
                    seen.add((k, unit))
                    self.units.setdefault(k, []).append(unit)
        for v in self.units.values():
            v.sort()

    def make(self, word: str, rng: random.Random, tries: int = 60) -> list[str] | None:
        tokens = self.prons[word]
        units = _units(tokens)
        n_phones = len(mnemonics_to_phones(tokens))
        for _ in range(tries):
            k = 1 if n_phones <= 4 or len(units) < 3 else 2
            chosen = rng.sample(range(len(units)), min(k, len(units)))
            new = list(tokens)
            replaced: dict[int, tuple[str, ...]] = {}
            for u in chosen:
                cls, pos = units[u]
                old = _key(tokens, pos)
                options = [x for x in self.units.get((cls, _n_labels(old)), []) if x != old]
                if not options:
                    break
                replaced[pos[0]] = rng.choice(options)
                for i in pos[1:]:
                    new[i] = ""
                new[pos[0]] = "\0"
            else:
                out: list[str] = []
                for i, t in enumerate(new):
                    if t == "\0":
                        out.extend(replaced[i])
                    elif t:
                        out.append(t)
                labels = mnemonics_to_phones(out)
                edges = ["#"] + labels + ["#"]
                if (
                    len(labels) == n_phones
                    and tuple(labels) not in self.real
                    and all(b in self.bigrams for b in zip(edges, edges[1:], strict=False))
                ):
                    return out
        return None


def lexical_items(
    prons: dict[str, list[str]],
    words: list[str],
    freq: Counter,
    n: int,
    rng: random.Random,
    start_id: int = 0,
) -> list[tuple[PairItem, PairItem]]:
    """Up to ``n`` (word, non-word) pairs from ``words`` (in the order given)."""
    maker = NonWordMaker(prons)
    pairs: list[tuple[PairItem, PairItem]] = []
    for word in words:
        if len(pairs) >= n:
            break
        fake = maker.make(word, rng)
        if fake is None:
            continue
        real = prons[word]
        pid = start_id + len(pairs)
        items = []
        for tokens, correct, spelled in ((real, 1, word), (fake, 0, "".join(fake))):
            phones = mnemonics_to_phones(tokens)
            row = {
                "id": pid,
                "correct": correct,
                "word": spelled,
                "phones": " ".join(phones),
                "frequency": freq.get(word, 0),
                "length": len(phones),
            }
            items.append(PairItem(f"[[{''.join(tokens)}]]", (spelled,), True, row))
        pairs.append((items[0], items[1]))
    return pairs


def lexical_candidates(lex: Lexicon) -> list[str]:
    """Content lemmas that can be test words (nouns, verbs, adjectives), sorted."""
    words = {n.lemma for ns in lex.nouns.values() for n in ns} | {n.lemma for n in lex.people}
    words |= {v.lemma for vs in lex.verbs.values() for v in vs}
    words |= {a.word for adjs in lex.adjectives.values() for a in adjs}
    return sorted(words)


def usable_pronunciations(words: list[str], mnemonics: list[str]) -> dict[str, list[str]]:
    """Tokenised pronunciations of the words eSpeak spells with known phonemes, 3-9 phones."""
    out = {}
    for w, m in zip(words, mnemonics, strict=True):
        tokens = tokenize_mnemonics(m)
        if tokens and 3 <= len(mnemonics_to_phones(tokens)) <= 9:
            out[w] = tokens
    return out


# ---------------------------------------------------------------------- syntactic
def syntactic_items(
    grammar: Grammar, n_per_test: int, rng: random.Random, start_id: int = 0
) -> list[tuple[PairItem, PairItem]]:
    """``n_per_test`` (grammatical, ungrammatical) pairs for every test in SYNTAX_TESTS."""
    pairs: list[tuple[PairItem, PairItem]] = []
    for test in SYNTAX_TESTS:
        for _ in range(n_per_test):
            s = make_pair_sentence(grammar, rng, rng.choice(TOPICS), test)
            bad = perturb(s, test)
            pid = start_id + len(pairs)
            items = []
            for words, correct in ((s.words, 1), (bad, 0)):
                text = " ".join(words)
                row = {
                    "type": test[0],
                    "subtype": test[1],
                    "id": pid,
                    "correct": correct,
                    "transcription": text,
                }
                items.append(PairItem(text + ".", tuple(words), False, row))
            pairs.append((items[0], items[1]))
    return pairs


# ---------------------------------------------------------------------- topic StoryCloze
def story_items(
    grammar: Grammar, lex: Lexicon, n: int, rng: random.Random, start_id: int = 0
) -> list[tuple[PairItem, PairItem]]:
    """``n`` stories of three past-tense sentences on one topic, with an on-topic and an off-topic
    last sentence built by the same choices (``then <name> <verb> the <noun>``)."""
    pairs = []
    for k in range(n):
        topic = rng.choice(TOPICS)
        name = rng.choice(lex.names)
        story = [
            grammar.sentence(rng, topic, tense="past", subject=name, vp="trans", pp=False),
            grammar.sentence(
                rng, topic, tense="past", vp="be", topic_subject=True, attractor=False, pp=False
            ),
            grammar.sentence(rng, topic, tense="past", subject=name, vp="trans", pp=True),
        ]
        other = rng.choice([t for t in TOPICS if t != topic])
        ending_seed = rng.random()
        pid = start_id + k
        items = []
        for ending_topic, correct in ((topic, 1), (other, 0)):
            end = grammar.sentence(
                random.Random(ending_seed),
                ending_topic,
                tense="past",
                subject=name,
                vp="trans",
                pp=False,
                obj_adj=False,
            )
            sentences = [s.words for s in story] + [["then"] + end.words]
            text = ". ".join(" ".join(w) for w in sentences) + "."
            words = tuple(w for s in sentences for w in s)
            row = {
                "id": pid,
                "correct": correct,
                "topic": topic,
                "ending_topic": ending_topic,
                "transcription": text,
            }
            items.append(PairItem(text, words, False, row))
        pairs.append((items[0], items[1]))
    return pairs


# ---------------------------------------------------------------------- files
def opaque_name(*parts: object) -> str:
    """A file name that does not reveal which side of a pair it is."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:12]


def expand(
    pairs: list[tuple[PairItem, PairItem]],
    voices: list[Speaker],
    folder: Path,
    task: str,
    seed: int,
) -> tuple[list[Job], list[dict]]:
    """Render jobs and gold rows for every pair side x voice, files in ``folder``."""
    jobs, rows = [], []
    for pair in pairs:
        for voice in voices:
            for item in pair:
                name = opaque_name(
                    task, folder.name, seed, item.row["id"], voice.id, item.row["correct"]
                )
                jobs.append(
                    Job(
                        path=str(folder / f"{name}.wav"),
                        text=item.text,
                        words=item.words,
                        speaker=voice,
                        key=f"{task}/{folder.name}/{name}",
                        phonemes=item.phonemes,
                        align=False,
                    )
                )
                rows.append({"filename": name, "voice": voice.id, **item.row})
    return jobs, rows
