"""The built-in English lexicon: words by topic and part of speech, with their inflections.

Entries are written ``lemma`` or ``lemma:irregular`` (plural for nouns, past tense for verbs). Topics
give sentences and stories a theme (the topic StoryCloze set relies on it); ``general`` words go with
any topic. :func:`load_lexicon` builds the typed :class:`Lexicon`; its size (over 500 lemmas) is
checked by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

TOPICS = ("animals", "food", "home", "city", "nature", "school", "music", "sport")

# Nouns that can be objects or places within each topic.
_NOUNS: dict[str, str] = {
    "animals": """dog cat horse cow sheep:sheep goat pig duck goose:geese chicken rabbit mouse:mice
        fox wolf:wolves bear lion tiger monkey zebra camel frog snake bird owl eagle fish:fish whale
        dolphin turtle bee spider puppy kitten deer:deer donkey parrot squirrel""",
    "food": """apple banana orange lemon cherry grape potato tomato carrot onion bread cheese butter
        egg cake cookie pie soup salad rice noodle sandwich pizza cup plate bowl spoon fork
        knife:knives juice milk cream sugar pepper""",
    "home": """house room kitchen bedroom window door table chair sofa lamp bed pillow blanket carpet
        mirror clock shelf:shelves drawer closet roof wall floor garden fence key towel curtain television
        basket candle picture""",
    "city": """street road bridge car bus train truck taxi bicycle station market shop bank hotel
        museum library hospital office tower building square park corner ticket map subway
        driver crowd traffic sidewalk""",
    "nature": """tree forest river lake mountain hill valley field flower leaf:leaves rock stone sand
        beach island ocean wave cloud rain storm thunder wind snow sun moon star sky grass seed branch
        desert cave""",
    "school": """book pencil pen paper notebook desk lesson class student homework classroom math test
        question answer letter word story page chalk board ruler eraser backpack lunch poem
        alphabet globe dictionary""",
    "music": """song piano guitar violin drum trumpet flute band singer concert melody rhythm note
        choir stage radio record lyric microphone harp cello orchestra dance tune
        chorus album speaker""",
    "sport": """ball game team player goal match coach bat racket net court stadium race runner medal
        whistle helmet glove jersey score trophy swimmer skate pool referee kick season""",
}

# Transitive verbs per topic (their objects come from the same topic).
_VERBS: dict[str, str] = {
    "animals": "feed:fed chase pet watch catch:caught follow brush ride:rode hear:heard wash",
    "food": "eat:ate cook cut:cut taste bake slice boil fry:fried drink:drank peel",
    "home": "clean paint open close fix build:built move lock sweep:swept measure",
    "city": "visit cross drive:drove park find:found leave:left pass reach enter miss",
    "nature": "climb plant:planted water pick grow:grew explore draw:drew admire touch photograph",
    "school": "read:read write:wrote study:studied learn copy:copied check spell mark answer erase",
    "music": "play sing:sang hum tune record practice compose enjoy strum conduct",
    "sport": "throw:threw kick hit:hit win:won lose:lost score pass:passed coach train cheer",
}

# Intransitive verbs (any topic).
_VERBS_INTRANSITIVE = """run:ran walk jump sleep:slept laugh smile dance sit:sat wait rest swim:swam
    sing:sang shout arrive travel:traveled listen cry:cried hurry:hurried stay"""

# Adjectives per topic, then general ones.
_ADJECTIVES: dict[str, str] = {
    "animals": "furry wild tame hungry fierce gentle noisy sleepy",
    "food": "sweet sour salty fresh spicy tasty juicy crispy",
    "home": "cozy tidy messy quiet bright warm dusty comfortable",
    "city": "busy crowded modern narrow famous urban expensive public",
    "nature": "green tall deep rocky sunny cold windy peaceful",
    "school": "clever difficult easy careful smart boring new curious",
    "music": "loud soft musical lovely classical slow catchy cheerful",
    "sport": "fast strong quick tired brave proud athletic fit",
}
_ADJECTIVES_GENERAL = """big small old young red blue yellow white black brown happy sad good bad
    little nice pretty heavy light long short clean dirty round empty full kind funny strange"""

# Agents (subjects) of any topic.
_PEOPLE = """boy girl man:men woman:women child:children baby teacher doctor farmer father mother
    brother sister friend neighbor king queen artist sailor pilot baker cook nurse painter uncle
    aunt grandmother grandfather cousin"""
_NAMES = "anna tom lucy peter maria david emma james sarah jack olivia daniel"

_ADVERBS = """quickly slowly happily quietly loudly carefully often always never sometimes again
    together early late today yesterday outside inside everywhere gladly"""
_PREPOSITIONS = "in on near under behind beside above inside"
_FUNCTION = """the a an this that these those some many several every and then with to of is are
    was were has have it she he they we"""


def _split(text: str) -> list[tuple[str, str | None]]:
    out = []
    for item in text.split():
        lemma, _, irr = item.partition(":")
        out.append((lemma, irr or None))
    return out


def plural(noun: str) -> str:
    """Regular English plural: box -> boxes, city -> cities, dog -> dogs."""
    if noun.endswith(("s", "x", "z", "ch", "sh")) or noun.endswith(("tomato", "potato")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def third_person(verb: str) -> str:
    """Present tense, third person singular: watch -> watches, study -> studies, play -> plays."""
    if verb == "have":
        return "has"
    if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def past(verb: str) -> str:
    """Regular past tense: bake -> baked, play -> played, walk -> walked (irregulars are listed)."""
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


@dataclass(frozen=True)
class Noun:
    lemma: str
    plural: str
    topic: str  # one of TOPICS, or "people"


@dataclass(frozen=True)
class Verb:
    lemma: str
    third: str  # "eats"
    past: str  # "ate"
    topic: str  # one of TOPICS, or "general" for intransitive verbs
    transitive: bool


@dataclass(frozen=True)
class Adjective:
    word: str
    topic: str  # one of TOPICS, or "general"


@dataclass
class Lexicon:
    """All words spidrkit's grammar can say, grouped for sampling."""

    nouns: dict[str, list[Noun]] = field(default_factory=dict)  # topic -> nouns
    people: list[Noun] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    verbs: dict[str, list[Verb]] = field(default_factory=dict)  # topic -> transitive verbs
    intransitive: list[Verb] = field(default_factory=list)
    adjectives: dict[str, list[Adjective]] = field(default_factory=dict)  # topic or "general"
    adverbs: list[str] = field(default_factory=list)
    prepositions: list[str] = field(default_factory=list)
    function_words: list[str] = field(default_factory=list)

    def lemmas(self) -> list[str]:
        """Distinct lemmas (nouns, verbs, adjectives, names, adverbs, function words), sorted."""
        words = set(self.names) | set(self.adverbs) | set(self.prepositions)
        words |= set(self.function_words)
        words |= {n.lemma for ns in self.nouns.values() for n in ns} | {
            n.lemma for n in self.people
        }
        words |= {v.lemma for vs in self.verbs.values() for v in vs}
        words |= {v.lemma for v in self.intransitive}
        words |= {a.word for adjs in self.adjectives.values() for a in adjs}
        return sorted(words)

    def word_forms(self) -> list[str]:
        """Every surface form the grammar can produce (lemmas plus inflections), sorted."""
        forms = set(self.lemmas())
        forms |= {n.plural for ns in self.nouns.values() for n in ns} | {
            n.plural for n in self.people
        }
        for v in [v for vs in self.verbs.values() for v in vs] + self.intransitive:
            forms |= {v.third, v.past}
        return sorted(forms)

    def topic_of(self, word: str) -> str | None:
        """The topic a content word belongs to (first match), None for general words."""
        for topic in TOPICS:
            if any(word in (n.lemma, n.plural) for n in self.nouns[topic]):
                return topic
        return None


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    """Build the lexicon from the tables above (cached; treat it as read-only)."""
    lex = Lexicon()
    for topic in TOPICS:
        lex.nouns[topic] = [Noun(w, irr or plural(w), topic) for w, irr in _split(_NOUNS[topic])]
        lex.verbs[topic] = [
            Verb(w, third_person(w), irr or past(w), topic, True)
            for w, irr in _split(_VERBS[topic])
        ]
        lex.adjectives[topic] = [Adjective(w, topic) for w, _ in _split(_ADJECTIVES[topic])]
    lex.adjectives["general"] = [Adjective(w, "general") for w, _ in _split(_ADJECTIVES_GENERAL)]
    lex.people = [Noun(w, irr or plural(w), "people") for w, irr in _split(_PEOPLE)]
    lex.names = _NAMES.split()
    lex.intransitive = [
        Verb(w, third_person(w), irr or past(w), "general", False)
        for w, irr in _split(_VERBS_INTRANSITIVE)
    ]
    lex.adverbs = _ADVERBS.split()
    lex.prepositions = _PREPOSITIONS.split()
    lex.function_words = _FUNCTION.split()
    return lex
