"""Turn one planned utterance into a 16 kHz WAV file and its alignment (runs in worker processes).

Each worker process loads eSpeak NG itself (:func:`init_worker`) and writes the voice files of every
speaker into a private temporary folder. Audio: eSpeak's 22.05 kHz int16 -> float -> soxr (HQ) to
16 kHz -> leading silence, trailing silence up to a multiple of 20 ms -> a faint noise floor
(about -66 dBFS, seeded per utterance) -> int16 WAV written with the standard library.
"""

from __future__ import annotations

import hashlib
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import SpidrkitError
from spidrkit.synth.alignment import Segment, segments_from_synthesis
from spidrkit.synth.espeak import ESPEAK_RATE, ESpeak
from spidrkit.synth.lexicon import load_lexicon
from spidrkit.synth.phones import mnemonics_to_phones, tokenize_mnemonics
from spidrkit.synth.speakers import Speaker

PAD_TO = 320  # audio lengths are multiples of 20 ms (one model frame)
NOISE_STD = 16.0  # int16 units, about -66 dBFS


@dataclass(frozen=True)
class Job:
    """One file to make. ``text`` is what eSpeak reads (``[[...]]`` mnemonics when ``phonemes``)."""

    path: str  # absolute output path of the WAV file
    text: str
    words: tuple[str, ...]
    speaker: Speaker
    key: str  # stable name used to seed the silences and noise
    phonemes: bool = False
    align: bool = True


@dataclass(frozen=True)
class Rendered:
    path: str
    num_samples: int
    segments: tuple[Segment, ...]  # empty when the job asked for no alignment
    sha256: str


_STATE: dict = {}


def init_worker(speakers: list[Speaker]) -> None:
    """Pool initializer: load eSpeak in this process, write the voice files, count word phones."""
    es = ESpeak()
    _STATE["espeak"] = es
    _STATE["voices"] = {
        s.id: es.add_voice(f"spidrkit-{s.id}", s.voice_file_text()) for s in speakers
    }
    # phones of each word form said alone, to share out words eSpeak says as one ("in the")
    forms = load_lexicon().word_forms()
    voice = next(iter(_STATE["voices"].values()))
    counts = {}
    for word, mnemonics in zip(forms, es.phonemize(forms, voice), strict=True):
        tokens = tokenize_mnemonics(mnemonics)
        counts[word] = len(mnemonics_to_phones(tokens)) if tokens else 1
    _STATE["phone_counts"] = counts


def _resample(x: np.ndarray) -> np.ndarray:
    try:
        import soxr
    except ImportError as exc:
        raise SpidrkitError(
            "the synthetic corpus needs soxr: pip install 'spidrkit[synth]'"
        ) from exc
    return soxr.resample(x, ESPEAK_RATE, SAMPLE_RATE, quality="HQ")


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(
        int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    )


def render(job: Job) -> Rendered:
    """Synthesise, resample, pad, add the noise floor, write the WAV, align. Deterministic."""
    es: ESpeak = _STATE["espeak"]
    syn = es.synthesize(job.text, _STATE["voices"][job.speaker.id], job.speaker.rate, job.phonemes)
    if len(syn.samples) == 0:
        raise SpidrkitError(f"eSpeak produced no audio for {job.text!r}")
    rng = _rng(job.key)
    audio = _resample(syn.samples.astype(np.float32))
    lead = int(rng.integers(800, 4000))  # 50-250 ms
    tail = int(rng.integers(800, 4000))
    n = lead + len(audio) + tail
    n += (-n) % PAD_TO
    out = np.zeros(n, dtype=np.float64)
    out[lead : lead + len(audio)] = audio
    out += rng.normal(0.0, NOISE_STD, size=n)
    pcm = np.clip(np.round(out), -32768, 32767).astype("<i2")
    segments: tuple[Segment, ...] = ()
    if job.align:
        segments = tuple(
            segments_from_synthesis(
                syn,
                list(job.words),
                job.text,
                SAMPLE_RATE / ESPEAK_RATE,
                lead,
                n,
                [_STATE["phone_counts"].get(w, 1) for w in job.words],
            )
        )
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return Rendered(str(path), n, segments, hashlib.sha256(pcm.tobytes()).hexdigest())


def phonemize(words: list[str]) -> list[str]:
    """eSpeak mnemonics (stress marks kept) of isolated words, in a worker process."""
    es: ESpeak = _STATE["espeak"]
    voice = next(iter(_STATE["voices"].values()))
    return es.phonemize(words, voice)
