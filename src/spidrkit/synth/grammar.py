"""A small probabilistic grammar with number agreement, and the perturbations that break it.

Sentences (all lowercase, no punctuation) are built from :mod:`spidrkit.synth.lexicon`:

    S    -> [time-adverb] NP_subj VP [PP]
    NP   -> DET [ADJ] N [P DET N]  |  NAME
    VP   -> V_trans NP_obj  |  V_intrans [ADV]  |  BE ADJ

with tense (present / past), the subject's number agreeing with the verb (``runs`` / ``run``,
``is`` / ``are``, ``was`` / ``were``) and with demonstratives (``this`` / ``these``), ``a`` / ``an``
chosen by the next word, and content words drawn from one topic. A :class:`Sentence` remembers where
its parts are, so :func:`perturb` can make the ungrammatical twin of a sentence for the syntactic
minimal pairs (agreement and word-order violations).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from spidrkit.synth.lexicon import Lexicon, Noun, load_lexicon

SG_DETS = ("the", "the", "a", "this", "that", "every")
PL_DETS = ("the", "the", "these", "those", "some", "many", "several")
DEMONSTRATIVE_SWAP = {"this": "these", "these": "this", "that": "those", "those": "that"}
BE = {
    ("present", "sg"): "is",
    ("present", "pl"): "are",
    ("past", "sg"): "was",
    ("past", "pl"): "were",
}
BE_SWAP = {"is": "are", "are": "is", "was": "were", "were": "was"}

# (type, subtype) of the syntactic minimal pairs, as in BLiMP / ZeroSpeech sBLIMP
SYNTAX_TESTS = (
    ("agreement", "subject_verb"),
    ("agreement", "copula"),
    ("agreement", "determiner_noun"),
    ("agreement", "across_phrase"),
    ("word_order", "adjective_noun"),
    ("word_order", "determiner_noun"),
    ("word_order", "verb_object"),
)


@dataclass
class Sentence:
    """Words of one sentence and the positions of its parts (indices into ``words``)."""

    words: list[str]
    topic: str
    tense: str  # "present" | "past"
    number: str  # subject number: "sg" | "pl"
    subj: tuple[int, int]  # [start, end) of the subject NP
    subj_det: int | None = None
    subj_adj: int | None = None
    subj_noun: int | None = None
    attractor: tuple[int, int] | None = None  # PP inside the subject NP
    verb: int | None = None
    verb_kind: str = "trans"  # "trans" | "intrans" | "be"
    obj: tuple[int, int] | None = None
    obj_det: int | None = None
    obj_adj: int | None = None
    marks: dict[str, str] = field(default_factory=dict)  # e.g. the verb's other form

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _article(det: str, next_word: str) -> str:
    if det == "a" and next_word[0] in "aeiou":
        return "an"
    return det


class Grammar:
    """Samples sentences; every choice comes from the ``random.Random`` passed in."""

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lex = lexicon or load_lexicon()

    # ------------------------------------------------------------------ noun phrases
    def _np(
        self,
        rng: random.Random,
        nouns: list[Noun],
        number: str,
        topic: str,
        det: str | None = None,
        adj: bool | None = None,
    ) -> tuple[list[str], dict]:
        noun = rng.choice(nouns)
        if det is None:
            det = rng.choice(SG_DETS if number == "sg" else PL_DETS)
        if adj is None:
            adj = rng.random() < 0.35
        words, parts = [det], {"det": 0}
        if adj:
            pool = self.lex.adjectives[topic] + self.lex.adjectives["general"]
            words.append(rng.choice(pool).word)
            parts["adj"] = 1
        words.append(noun.lemma if number == "sg" else noun.plural)
        parts["noun"] = len(words) - 1
        words[0] = _article(words[0], words[1])
        return words, parts

    def _subject_nouns(self, topic: str) -> list[Noun]:
        if topic == "animals":
            return self.lex.people + self.lex.nouns["animals"]
        return self.lex.people

    # ------------------------------------------------------------------ sentences
    def sentence(
        self,
        rng: random.Random,
        topic: str,
        *,
        tense: str | None = None,
        number: str | None = None,
        subject: str | None = None,
        vp: str | None = None,
        subj_det: str | None = None,
        subj_adj: bool | None = None,
        obj_adj: bool | None = None,
        attractor: bool | None = None,
        pp: bool | None = None,
        topic_subject: bool = False,
    ) -> Sentence:
        """One sentence on ``topic``; keyword arguments force parts of the structure.

        ``subject`` (a name) forces a singular proper-noun subject; ``vp`` is "trans", "intrans"
        or "be"; ``attractor`` adds a PP of the other number inside the subject NP;
        ``topic_subject`` takes the subject noun from the topic's nouns (``the bread was fresh``).
        """
        tense = tense or ("present" if rng.random() < 0.6 else "past")
        words: list[str] = []
        if tense == "past" and subject is None and rng.random() < 0.1:
            words.append(rng.choice(["yesterday", "today"]))
        start = len(words)
        s = Sentence(words=words, topic=topic, tense=tense, number="sg", subj=(0, 0))
        if subject is not None or (
            number is None
            and attractor is None
            and subj_det is None
            and subj_adj is None
            and not topic_subject
            and rng.random() < 0.15
        ):
            words.append(subject or rng.choice(self.lex.names))
            s.number = "sg"
            s.subj_noun = start
        else:
            s.number = number or ("sg" if rng.random() < 0.6 else "pl")
            nouns = self.lex.nouns[topic] if topic_subject else self._subject_nouns(topic)
            np_words, parts = self._np(rng, nouns, s.number, topic, det=subj_det, adj=subj_adj)
            words += np_words
            s.subj_det = start + parts["det"]
            s.subj_noun = start + parts["noun"]
            s.subj_adj = start + parts["adj"] if "adj" in parts else None
            if attractor if attractor is not None else rng.random() < 0.08:
                other = "pl" if s.number == "sg" else "sg"
                places = self.lex.nouns[topic]
                a0 = len(words)
                words.append(rng.choice(self.lex.prepositions))
                pp_words, _ = self._np(rng, places, other, topic, det="the", adj=False)
                words += pp_words
                s.attractor = (a0, len(words))
        s.subj = (start, len(words))

        if vp is None:
            r = rng.random()
            vp = "trans" if r < 0.6 else ("intrans" if r < 0.82 else "be")
        s.verb_kind = vp
        s.verb = len(words)
        if vp == "be":
            form = BE[(tense, s.number)]
            words.append(form)
            pool = self.lex.adjectives[topic] + self.lex.adjectives["general"]
            words.append(rng.choice(pool).word)
            s.marks["other_verb"] = BE_SWAP[form]
        else:
            verb = rng.choice(self.lex.verbs[topic] if vp == "trans" else self.lex.intransitive)
            if tense == "past":
                form, other = verb.past, verb.past
            elif s.number == "sg":
                form, other = verb.third, verb.lemma
            else:
                form, other = verb.lemma, verb.third
            words.append(form)
            s.marks["other_verb"] = other
            if vp == "trans":
                obj_number = "sg" if rng.random() < 0.6 else "pl"
                o0 = len(words)
                np_words, parts = self._np(
                    rng, self.lex.nouns[topic], obj_number, topic, adj=obj_adj
                )
                words += np_words
                s.obj = (o0, len(words))
                s.obj_det = o0 + parts["det"]
                s.obj_adj = o0 + parts["adj"] if "adj" in parts else None
            elif rng.random() < 0.5:
                words.append(rng.choice(self.lex.adverbs))
        if pp if pp is not None else (vp != "be" and rng.random() < 0.25):
            words.append(rng.choice(self.lex.prepositions))
            pp_words, _ = self._np(rng, self.lex.nouns[topic], "sg", topic, det="the", adj=False)
            words += pp_words
        return s

    def utterance(self, rng: random.Random, topic: str | None = None) -> list[Sentence]:
        """One or two sentences on one topic (the text of one corpus utterance)."""
        from spidrkit.synth.lexicon import TOPICS

        topic = topic or rng.choice(TOPICS)
        n = 1 if rng.random() < 0.55 else 2
        return [self.sentence(rng, topic) for _ in range(n)]


# ---------------------------------------------------------------------- minimal pairs
def requirements(test: tuple[str, str]) -> dict:
    """Keyword arguments to :meth:`Grammar.sentence` that make a sentence fit ``test``."""
    kind, sub = test
    if test == ("agreement", "subject_verb"):
        return {"tense": "present", "vp": "trans", "attractor": False}
    if test == ("agreement", "copula"):
        return {"vp": "be", "attractor": False}
    if test == ("agreement", "determiner_noun"):
        return {"subj_det": None, "attractor": False, "_demonstrative": True}
    if test == ("agreement", "across_phrase"):
        return {"tense": "present", "vp": "intrans", "attractor": True, "pp": False}
    if test == ("word_order", "adjective_noun"):
        return {"subj_adj": True, "attractor": False}
    if test == ("word_order", "determiner_noun"):
        return {"vp": "trans", "attractor": False}
    if test == ("word_order", "verb_object"):
        return {"vp": "trans", "attractor": False, "pp": False}
    raise ValueError(f"unknown syntax test {kind}/{sub}")


def make_pair_sentence(
    grammar: Grammar, rng: random.Random, topic: str, test: tuple[str, str]
) -> Sentence:
    """A grammatical sentence whose structure allows the violation ``test``."""
    kwargs = requirements(test)
    if kwargs.pop("_demonstrative", False):
        number = rng.choice(["sg", "pl"])
        kwargs["number"] = number
        kwargs["subj_det"] = rng.choice(["this", "that"] if number == "sg" else ["these", "those"])
    return grammar.sentence(rng, topic, **kwargs)


def perturb(s: Sentence, test: tuple[str, str]) -> list[str]:
    """The ungrammatical twin of ``s`` for ``test`` (same words, one agreement or order change)."""
    w = list(s.words)
    if test in (
        ("agreement", "subject_verb"),
        ("agreement", "copula"),
        ("agreement", "across_phrase"),
    ):
        assert s.verb is not None
        w[s.verb] = s.marks["other_verb"]
    elif test == ("agreement", "determiner_noun"):
        assert s.subj_det is not None
        w[s.subj_det] = DEMONSTRATIVE_SWAP[w[s.subj_det]]
    elif test == ("word_order", "adjective_noun"):
        assert s.subj_adj is not None and s.subj_noun is not None
        w[s.subj_adj], w[s.subj_noun] = w[s.subj_noun], w[s.subj_adj]
    elif test == ("word_order", "determiner_noun"):
        assert s.obj is not None
        o0, o1 = s.obj
        w[o0:o1] = w[o0 + 1 : o1] + [w[o0]]
    elif test == ("word_order", "verb_object"):
        assert s.obj is not None and s.verb is not None
        o0, o1 = s.obj
        w[s.verb : o1] = w[o0:o1] + [w[s.verb]]
    else:
        raise ValueError(f"unknown syntax test {test}")
    if w == s.words:
        raise ValueError(f"perturbation {test} left {s.text!r} unchanged")
    return w
