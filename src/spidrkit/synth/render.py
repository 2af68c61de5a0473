"""Turn one planned utterance into a 16 kHz WAV file and its alignment (runs in worker processes).

Each worker process loads eSpeak NG itself (:func:`init_worker`) and writes the voice files of every
speaker into a private temporary folder. Audio: eSpeak's 22.05 kHz int16 -> float -> soxr (HQ) to
16 kHz -> leading silence, trailing silence up to a multiple of 20 ms -> unless the conditions are
``clean``, the speaker's room, microphone and the utterance's noise and level
(:mod:`spidrkit.synth.conditions`) -> a faint noise floor (about -66 dBFS, seeded per utterance) ->
int16 WAV written with the standard library.
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
from spidrkit.synth.conditions import (
    CLEAN,
    Conditions,
    UtteranceDraw,
    apply_recording,
    draw_utterance,
    seeded_rng,
    set_level,
)
from spidrkit.synth.espeak import ESPEAK_RATE, ESpeak
from spidrkit.synth.lexicon import load_lexicon
from spidrkit.synth.phones import mnemonics_to_phones, tokenize_mnemonics
from spidrkit.synth.speakers import Speaker

PAD_TO = 320  # audio lengths are multiples of 20 ms (one model frame)
NOISE_STD = 16.0  # int16 units, about -66 dBFS
DRY_LEVEL_DBFS = -26.0  # speech level of dry (clean-view, minimal-pair) audio in realistic corpora


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
    recorded: bool = True
    """Pass through the speaker's room, microphone and noise (False: dry voice, level kept)."""
    prosody: bool = True
    """Draw the utterance's pitch, range and rate offsets (False: the speaker's own)."""
    clean_path: str | None = None
    """Also write the dry voice here (same prosody and timing): the utterance's clean view."""
    bank: str | None = None
    """A .npy file of dry speech that babble noise is cut from."""


@dataclass(frozen=True)
class Rendered:
    path: str
    num_samples: int
    segments: tuple[Segment, ...]  # empty when the job asked for no alignment
    sha256: str


_STATE: dict = {}


def init_worker(speakers: list[Speaker], conditions: Conditions = CLEAN) -> None:
    """Pool initializer: load eSpeak in this process, write the voice files, count word phones."""
    es = ESpeak()
    _STATE["espeak"] = es
    _STATE["conditions"] = conditions
    _STATE["banks"] = {}
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


def _bank(path: str) -> np.ndarray:
    banks: dict[str, np.ndarray] = _STATE["banks"]
    if path not in banks:
        banks[path] = np.load(path, allow_pickle=False)
    return banks[path]


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def _to_pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype("<i2")


def render(job: Job) -> Rendered:
    """Synthesise, resample, pad, record, add the noise floor, write the WAV, align. Deterministic."""
    es: ESpeak = _STATE["espeak"]
    cond: Conditions = _STATE.get("conditions", CLEAN)
    utt = draw_utterance(cond, job.key) if job.prosody else UtteranceDraw()
    rate = round(job.speaker.rate * utt.rate_factor)
    syn = es.synthesize(
        job.text,
        _STATE["voices"][job.speaker.id],
        rate,
        job.phonemes,
        pitch=utt.pitch,
        pitch_range=utt.pitch_range,
    )
    if len(syn.samples) == 0:
        raise SpidrkitError(f"eSpeak produced no audio for {job.text!r}")
    rng = seeded_rng(job.key)
    audio = _resample(syn.samples.astype(np.float32))
    lead = int(rng.integers(800, 4000))  # 50-250 ms
    tail = int(rng.integers(800, 4000))
    n = lead + len(audio) + tail
    n += (-n) % PAD_TO
    out = np.zeros(n, dtype=np.float64)
    out[lead : lead + len(audio)] = audio
    floor = rng.normal(0.0, NOISE_STD, size=n)
    if not cond.is_clean:
        speech = slice(lead, lead + len(audio))
        dry = set_level(out, speech, DRY_LEVEL_DBFS)
        if job.clean_path is not None:
            _write_wav(Path(job.clean_path), _to_pcm(dry + floor))
        if job.recorded:
            bank = _bank(job.bank) if job.bank else None
            out = apply_recording(
                out, speech, job.speaker.recording, utt, job.key, cond.drift_db, bank
            )
        else:
            out = dry
    pcm = _to_pcm(out + floor)
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
    _write_wav(path, pcm)
    return Rendered(str(path), n, segments, hashlib.sha256(pcm.tobytes()).hexdigest())


def phonemize(words: list[str]) -> list[str]:
    """eSpeak mnemonics (stress marks kept) of isolated words, in a worker process."""
    es: ESpeak = _STATE["espeak"]
    voice = next(iter(_STATE["voices"].values()))
    return es.phonemize(words, voice)
