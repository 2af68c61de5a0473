"""The phone inventory of the synthetic corpus and the map from eSpeak NG mnemonics to it.

Labels are the 39 stress-less ARPAbet phones used by TIMIT/CMUdict-style English phone sets, plus
``SIL`` for silence and pauses. eSpeak's American English (``en-us``) phonemes map one-to-one except
r-coloured vowels, centring diphthongs and syllabic l, which become two labels: their eSpeak segment is
split in the given proportions (eSpeak reports one event per phoneme, so the split point is an estimate;
everything else is eSpeak's own timing).
"""

from __future__ import annotations

SILENCE = "SIL"

VOWELS = ("aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw")
CONSONANTS = (
    "b",
    "ch",
    "d",
    "dh",
    "f",
    "g",
    "hh",
    "jh",
    "k",
    "l",
    "m",
    "n",
    "ng",
    "p",
    "r",
    "s",
    "sh",
    "t",
    "th",
    "v",
    "w",
    "y",
    "z",
    "zh",
)
PHONES = tuple(sorted(VOWELS + CONSONANTS))  # the 39 speech phones
INVENTORY = PHONES + (SILENCE,)  # every label that appears in the frame labels

# eSpeak en-us mnemonic (stress marks removed) -> ((label, share of the segment), ...)
ESPEAK_TO_PHONES: dict[str, tuple[tuple[str, float], ...]] = {
    # monophthongs
    "a": (("ae", 1.0),),
    "aa": (("ae", 1.0),),
    "A:": (("aa", 1.0),),
    "0": (("aa", 1.0),),
    "O:": (("ao", 1.0),),
    "O": (("ao", 1.0),),
    "V": (("ah", 1.0),),
    "@": (("ah", 1.0),),
    "@2": (("ah", 1.0),),
    "@5": (("ah", 1.0),),
    "a#": (("ah", 1.0),),
    "E": (("eh", 1.0),),
    "e": (("eh", 1.0),),
    "I": (("ih", 1.0),),
    "I2": (("ih", 1.0),),
    "I#": (("ih", 1.0),),
    "i": (("iy", 1.0),),
    "i:": (("iy", 1.0),),
    "U": (("uh", 1.0),),
    "u:": (("uw", 1.0),),
    "u": (("uw", 1.0),),
    "3": (("er", 1.0),),
    "3:": (("er", 1.0),),
    # diphthongs
    "eI": (("ey", 1.0),),
    "aI": (("ay", 1.0),),
    "aU": (("aw", 1.0),),
    "OI": (("oy", 1.0),),
    "oU": (("ow", 1.0),),
    # r-coloured and centring vowels, syllabic l: two labels
    "A@": (("aa", 0.6), ("r", 0.4)),
    "O@": (("ao", 0.6), ("r", 0.4)),
    "o@": (("ao", 0.6), ("r", 0.4)),
    "e@": (("eh", 0.6), ("r", 0.4)),
    "i@3": (("ih", 0.6), ("r", 0.4)),
    "U@": (("uh", 0.6), ("r", 0.4)),
    "i@": (("iy", 0.6), ("ah", 0.4)),
    "aI@": (("ay", 0.6), ("ah", 0.4)),
    "aU@": (("aw", 0.6), ("ah", 0.4)),
    "@L": (("ah", 0.5), ("l", 0.5)),
    # consonants
    "b": (("b", 1.0),),
    "d": (("d", 1.0),),
    "f": (("f", 1.0),),
    "g": (("g", 1.0),),
    "h": (("hh", 1.0),),
    "j": (("y", 1.0),),
    "k": (("k", 1.0),),
    "l": (("l", 1.0),),
    "m": (("m", 1.0),),
    "n": (("n", 1.0),),
    "N": (("ng", 1.0),),
    "p": (("p", 1.0),),
    "r": (("r", 1.0),),
    "r-": (("r", 1.0),),
    "s": (("s", 1.0),),
    "S": (("sh", 1.0),),
    "t": (("t", 1.0),),
    "T": (("th", 1.0),),
    "D": (("dh", 1.0),),
    "v": (("v", 1.0),),
    "w": (("w", 1.0),),
    "z": (("z", 1.0),),
    "Z": (("zh", 1.0),),
    "tS": (("ch", 1.0),),
    "dZ": (("jh", 1.0),),
    "t#": (("t", 1.0),),
    "d#": (("d", 1.0),),
    "?": (("t", 1.0),),
    "n-": (("n", 1.0),),
    "m-": (("m", 1.0),),
    "l-": (("l", 1.0),),
    "w#": (("w", 1.0),),
}

STRESS_MARKS = "',%="
# eSpeak events that carry no segment of their own (the previous phone goes on)
IGNORED = frozenset({";", ""})


def strip_stress(name: str) -> str:
    """``"'aU"`` -> ``"aU"``."""
    return name.lstrip(STRESS_MARKS)


def is_pause(name: str) -> bool:
    """eSpeak pauses are named ``_``, ``_:``, ``_!`` ... ."""
    return strip_stress(name).startswith("_")


def espeak_labels(name: str) -> tuple[tuple[str, float], ...]:
    """Labels (with segment shares) of one eSpeak phoneme event; raises KeyError if unknown."""
    if is_pause(name):
        return ((SILENCE, 1.0),)
    return ESPEAK_TO_PHONES[strip_stress(name)]


def tokenize_mnemonics(text: str) -> list[str] | None:
    """Split an eSpeak phoneme string (``"a#dm'aI@"``) into stress marks and phonemes (longest match).

    Returns None when some part is not a known phoneme.
    """
    names = sorted(ESPEAK_TO_PHONES, key=len, reverse=True)
    out, i = [], 0
    while i < len(text):
        if text[i] in STRESS_MARKS:
            out.append(text[i])
            i += 1
            continue
        if text[i] in IGNORED or text[i] == " ":
            i += 1
            continue
        for name in names:
            if text.startswith(name, i):
                out.append(name)
                i += len(name)
                break
        else:
            return None
    return out


def mnemonics_to_phones(tokens: list[str]) -> list[str]:
    """Phone labels of tokenised mnemonics (stress marks dropped)."""
    return [lab for t in tokens if t not in STRESS_MARKS for lab, _ in ESPEAK_TO_PHONES[t]]
