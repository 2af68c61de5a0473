"""Synthetic speakers: an eSpeak voice (timbre) x a pitch shift x a speaking rate.

A timbre is an eSpeak voice file of our own: American English (``en-us``) with formant scalings, a
pitch range, and for some a breathy or rough voice or the Klatt synthesiser. Voice files are written
with ``flutter 0`` so that the audio is reproducible (see :mod:`spidrkit.synth.espeak`). Speakers are
drawn without replacement from the timbre x pitch x rate grid, in an order fixed by the seed, and split
so that dev and test speakers never occur in train.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from spidrkit.errors import ConfigError
from spidrkit.synth.conditions import CLEAN, Conditions, Recording, draw_recording


@dataclass(frozen=True)
class Timbre:
    """One voice quality. ``formants``: (index, frequency %, height %, width %) for formants 0-5."""

    name: str
    gender: str
    pitch: tuple[int, int]  # eSpeak "pitch base range" in Hz
    formants: tuple[tuple[int, int, int, int], ...]
    breath: int = 0  # 0 = none, else breath noise level on formants 1-8
    roughness: int = 0  # 0-7
    klatt: int = 0  # 0 = eSpeak's harmonic synthesiser, 1-4 = a Klatt variant


def _fm(*scales: tuple[int, int, int]) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((i, f, h, w) for i, (f, h, w) in enumerate(scales))


TIMBRES: tuple[Timbre, ...] = (
    Timbre(
        "male-neutral",
        "male",
        (85, 40),
        _fm(
            (100, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
        ),
    ),
    Timbre(
        "male-deep",
        "male",
        (72, 30),
        _fm(
            (95, 110, 100),
            (93, 110, 100),
            (94, 100, 100),
            (96, 95, 100),
            (96, 95, 100),
            (96, 95, 100),
        ),
    ),
    Timbre(
        "male-bright",
        "male",
        (100, 50),
        _fm(
            (104, 100, 100),
            (105, 95, 110),
            (106, 100, 110),
            (104, 110, 100),
            (104, 110, 100),
            (104, 100, 100),
        ),
        roughness=2,
    ),
    Timbre(
        "male-klatt",
        "male",
        (90, 45),
        _fm(
            (100, 100, 100),
            (98, 100, 100),
            (101, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
            (100, 100, 100),
        ),
        klatt=3,
    ),
    Timbre(
        "female-neutral",
        "female",
        (170, 70),
        _fm(
            (108, 90, 140),
            (112, 85, 150),
            (112, 80, 150),
            (110, 80, 150),
            (112, 80, 150),
            (112, 80, 150),
        ),
    ),
    Timbre(
        "female-breathy",
        "female",
        (185, 80),
        _fm(
            (106, 80, 150),
            (110, 80, 160),
            (114, 70, 150),
            (112, 70, 150),
            (116, 80, 150),
            (116, 80, 150),
        ),
        breath=3,
    ),
    Timbre(
        "female-klatt",
        "female",
        (195, 75),
        _fm(
            (110, 90, 140),
            (115, 85, 150),
            (116, 80, 150),
            (114, 80, 150),
            (115, 80, 150),
            (115, 80, 150),
        ),
        klatt=1,
    ),
    Timbre(
        "child",
        "female",
        (250, 90),
        _fm(
            (115, 80, 150),
            (125, 80, 160),
            (124, 70, 150),
            (122, 70, 150),
            (120, 80, 150),
            (120, 80, 150),
        ),
    ),
)
PITCH_SHIFTS = (0.88, 1.0, 1.12)
RATES = (145, 170, 195)  # words per minute


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker, recorded in ``corpus.json``."""

    id: str  # "s07"
    timbre: str
    gender: str
    pitch_base: int  # Hz
    pitch_range: int
    rate: int  # words per minute
    split: str  # "train" | "dev" | "test"
    recording: Recording = Recording()
    """Voice offsets and recording set-up (all neutral in the ``clean`` conditions)."""

    def voice_file_text(self) -> str:
        """The eSpeak voice file of this speaker."""
        t = timbre_by_name(self.timbre)
        scale = self.recording.formant_scale
        lines = [
            "language en-us",
            f"name spidrkit-{self.id}",
            f"gender {t.gender}",
            f"pitch {self.pitch_base} {self.pitch_base + self.pitch_range}",
            "flutter 0",
        ]
        factors = self.recording.formant_factors or ((1.0, 1.0, 1.0),) * len(t.formants)
        lines += [
            f"formant {i} {round(f * scale * ff)} {round(h * fh)} {round(w * fw)}"
            for (i, f, h, w), (ff, fh, fw) in zip(t.formants, factors, strict=True)
        ]
        breath = self.recording.breath or t.breath
        if breath:
            lines.append("breath " + " ".join(["0"] + [str(breath)] * 7))
        if t.roughness:
            lines.append(f"roughness {t.roughness}")
        if t.klatt:
            lines.append(f"klatt {t.klatt}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["recording"] = self.recording.to_dict()
        return d


def timbre_by_name(name: str) -> Timbre:
    for t in TIMBRES:
        if t.name == name:
            return t
    raise ConfigError(f"unknown timbre {name!r}; known: {', '.join(t.name for t in TIMBRES)}")


def make_speakers(
    n_train: int, n_dev: int, n_test: int, seed: int, conditions: Conditions = CLEAN
) -> list[Speaker]:
    """Draw distinct speakers for each split (disjoint by construction), deterministic in ``seed``.

    Dev and test speakers are drawn first so that each gets a timbre not used by the other held-out
    split when possible; every speaker differs from every other in timbre, pitch or rate. Unless the
    conditions are ``clean``, each speaker also gets a drawn :class:`Recording` (formant and pitch
    scale, rate, breathiness, room and microphone), which scales its grid pitch and replaces its rate.
    """
    grid = [(t, p, r) for t in TIMBRES for p in PITCH_SHIFTS for r in RATES]
    total = n_train + n_dev + n_test
    if total > len(grid):
        raise ConfigError(f"{total} speakers asked, at most {len(grid)} distinct ones exist")
    if min(n_train, n_dev, n_test) < 1:
        raise ConfigError("each split needs at least one speaker")
    rng = random.Random(f"spidrkit-speakers-{seed}")
    rng.shuffle(grid)
    # spread timbres: order the grid so that consecutive speakers cycle through timbres
    by_timbre: dict[str, list] = {}
    for cell in grid:
        by_timbre.setdefault(cell[0].name, []).append(cell)
    order = [t.name for t in TIMBRES]
    rng.shuffle(order)
    cycled: list[tuple[Timbre, float, int]] = []
    while len(cycled) < len(grid):
        for name in order:
            if by_timbre[name]:
                cycled.append(by_timbre[name].pop())
    splits = ["dev"] * n_dev + ["test"] * n_test + ["train"] * n_train
    speakers = []
    for i, ((timbre, shift, rate), split) in enumerate(zip(cycled, splits, strict=False)):
        rec = draw_recording(conditions, f"{seed}/s{i:02d}")
        speakers.append(
            Speaker(
                id=f"s{i:02d}",
                timbre=timbre.name,
                gender=timbre.gender,
                pitch_base=round(timbre.pitch[0] * shift * rec.pitch_scale),
                pitch_range=round(timbre.pitch[1] * shift * rec.pitch_scale),
                rate=round(rec.rate) if rec.rate else rate,
                split=split,
                recording=rec,
            )
        )
    return speakers
