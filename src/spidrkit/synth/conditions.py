"""Voices and recording conditions that make synthetic speech as hard as real recordings.

A :class:`Conditions` preset holds the ranges; :func:`draw_recording` draws one speaker's voice and
recording set-up from them (seeded by the corpus seed and the speaker id), and :func:`apply_recording`
turns a dry 16 kHz utterance into what that set-up records, with the utterance's own noise, level
and gain drift (seeded per utterance). Every effect keeps the time axis: the room's direct path is at
lag 0 and filters are zero-phase, so eSpeak's alignments stay exact.

Signal chain, in order (each step a knob of the preset, off in ``clean``)::

    dry speech -> room (image-like early reflections + two-band exponential tail, at a
    direct-to-reverberant ratio) -> + noise (coloured or babble, at a per-utterance SNR) ->
    microphone/channel (random smooth EQ, spectral tilt, high-pass, optional band limit) ->
    level (per-utterance dBFS) x slow gain drift
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from spidrkit.errors import ConfigError

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Conditions:
    """Ranges of the realism knobs; ``(lo, hi)`` pairs are drawn uniformly.

    Voice: ``formant_scale`` multiplies every formant frequency of a speaker's timbre (the inverse of
    a vocal-tract length factor: 0.88 = a longer tract), ``pitch_scale`` its pitch, ``rate`` is words
    per minute; per utterance eSpeak's pitch and pitch-range parameters (0-100, 50 = the voice's own)
    and the rate (x 1 +- ``rate_jitter``) vary. Recording: ``room_prob`` of the speakers record in a
    room with reverberation time ``rt60`` seconds and ``drr_db`` direct-to-reverberant ratio, the
    others close to the microphone; the microphone has a smooth random response of at most
    +-``eq_db`` dB, a tilt of ``tilt_db_per_octave``, a high-pass at ``highpass_hz`` and, for
    ``lowpass_prob`` of the speakers, a band limit at ``lowpass_hz``. Each utterance gets noise with
    probability ``noise_prob`` at ``snr_db`` (babble for ``babble_share`` of the noisy ones, else
    noise of spectral slope 1/f^a, a in 0-2), a level in ``level_dbfs`` and a slow drift of
    +-``drift_db``.
    """

    name: str
    formant_scale: tuple[float, float] = (1.0, 1.0)
    formant_jitter: float = 0.0
    """Each formant's frequency also x 1 +- this (a speaker's own vowel space, not only its size)."""
    formant_shape: float = 0.0
    """Each formant's height and width also x 1 +- this (voice quality)."""
    pitch_scale: tuple[float, float] = (1.0, 1.0)
    rate: tuple[float, float] | None = None  # None: the speaker grid's rates
    utterance_pitch: tuple[int, int] = (50, 50)
    utterance_range: tuple[int, int] = (50, 50)
    rate_jitter: float = 0.0
    breath_prob: float = 0.0
    room_prob: float = 0.0
    rt60: tuple[float, float] = (0.0, 0.0)
    drr_db: tuple[float, float] = (0.0, 0.0)
    eq_db: float = 0.0
    tilt_db_per_octave: tuple[float, float] = (0.0, 0.0)
    highpass_hz: tuple[float, float] = (0.0, 0.0)
    lowpass_prob: float = 0.0
    lowpass_hz: tuple[float, float] = (8000.0, 8000.0)
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (30.0, 30.0)
    babble_share: float = 0.0
    level_dbfs: tuple[float, float] = (-26.0, -26.0)
    drift_db: float = 0.0
    clean_view: bool = False
    """Also write each train utterance's dry speech (same voice, no room, noise or channel)."""

    @property
    def is_clean(self) -> bool:
        return self == CLEAN

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        problems = []
        for name, value in asdict(self).items():
            if isinstance(value, (list, tuple)) and len(value) == 2:
                lo, hi = value
                if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                    problems.append(f"{name}: need finite lo <= hi, got {value}")
        for name in ("breath_prob", "room_prob", "lowpass_prob", "noise_prob", "babble_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        if self.formant_scale[0] <= 0.5 or self.formant_scale[1] > 2.0:
            problems.append("formant_scale must lie in (0.5, 2]")
        if self.rt60[0] < 0 or self.rt60[1] > 3.0:
            problems.append("rt60 must lie in [0, 3] s")
        if problems:
            raise ConfigError(f"conditions {self.name!r}: " + "; ".join(problems))


CLEAN = Conditions("clean")

REALISTIC = Conditions(
    "realistic",
    formant_scale=(0.82, 1.2),
    formant_jitter=0.1,
    formant_shape=0.3,
    pitch_scale=(0.8, 1.25),
    rate=(130.0, 210.0),
    utterance_pitch=(30, 70),
    utterance_range=(25, 85),
    rate_jitter=0.1,
    breath_prob=0.3,
    room_prob=0.8,
    rt60=(0.2, 0.9),
    drr_db=(-3.0, 10.0),
    eq_db=8.0,
    tilt_db_per_octave=(-3.0, 2.0),
    highpass_hz=(40.0, 250.0),
    lowpass_prob=0.35,
    lowpass_hz=(3400.0, 7000.0),
    noise_prob=0.85,
    snr_db=(5.0, 30.0),
    babble_share=0.35,
    level_dbfs=(-38.0, -14.0),
    drift_db=3.0,
    clean_view=True,
)

CONDITIONS = {"clean": CLEAN, "realistic": REALISTIC}


@dataclass(frozen=True)
class Recording:
    """One speaker's voice offsets and recording set-up (recorded in ``corpus.json``)."""

    formant_scale: float = 1.0
    formant_factors: tuple[tuple[float, float, float], ...] = ()
    """Per formant 0-5: (frequency, height, width) factors on top of ``formant_scale``."""
    pitch_scale: float = 1.0
    rate: float | None = None
    breath: int = 0
    rt60: float = 0.0  # 0: no room
    drr_db: float = 0.0
    room_seed: int = 0
    eq: tuple[tuple[float, float, float], ...] = ()  # (centre Hz, gain dB, width octaves)
    tilt_db_per_octave: float = 0.0
    highpass_hz: float = 0.0
    lowpass_hz: float = 0.0  # 0: none
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_dry(self) -> bool:
        return self == Recording(
            formant_scale=self.formant_scale,
            formant_factors=self.formant_factors,
            pitch_scale=self.pitch_scale,
            rate=self.rate,
            breath=self.breath,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["eq"] = [list(x) for x in self.eq]
        d["formant_factors"] = [list(x) for x in self.formant_factors]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Recording:
        d = dict(d)
        d["eq"] = tuple(tuple(x) for x in d.get("eq", ()))
        d["formant_factors"] = tuple(tuple(x) for x in d.get("formant_factors", ()))
        return cls(**d)


def seeded_rng(key: str) -> np.random.Generator:
    """A numpy generator seeded by the SHA-256 of ``key`` (stable across runs and machines)."""
    return np.random.default_rng(
        int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    )


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(lo if lo == hi else rng.uniform(lo, hi))


def draw_recording(cond: Conditions, key: str) -> Recording:
    """One speaker's voice and recording set-up, deterministic in ``key``."""
    if cond.is_clean:
        return Recording()
    rng = seeded_rng(f"recording/{key}")
    formant = round(_uniform(rng, cond.formant_scale), 3)
    pitch = round(_uniform(rng, cond.pitch_scale), 3)
    rate = round(_uniform(rng, cond.rate), 1) if cond.rate else None
    breath = int(rng.integers(1, 5)) if rng.random() < cond.breath_prob else 0
    in_room = rng.random() < cond.room_prob
    rt60 = round(_uniform(rng, cond.rt60), 3) if in_room else 0.0
    drr = round(_uniform(rng, cond.drr_db), 2) if in_room else 0.0
    n_bands = int(rng.integers(2, 5)) if cond.eq_db > 0 else 0
    eq = tuple(
        (
            round(float(np.exp(rng.uniform(np.log(150.0), np.log(6000.0)))), 1),
            round(float(rng.uniform(-cond.eq_db, cond.eq_db)), 2),
            round(float(rng.uniform(0.3, 1.5)), 2),
        )
        for _ in range(n_bands)
    )
    lowpass = round(_uniform(rng, cond.lowpass_hz), 1) if rng.random() < cond.lowpass_prob else 0.0
    j, sh = cond.formant_jitter, cond.formant_shape
    factors = tuple(
        (
            round(float(rng.uniform(1 - j, 1 + j)), 3),
            round(float(rng.uniform(1 - sh, 1 + sh)), 3),
            round(float(rng.uniform(1 - sh, 1 + sh)), 3),
        )
        for _ in range(6)
    )
    return Recording(
        formant_scale=formant,
        formant_factors=factors if (j or sh) else (),
        pitch_scale=pitch,
        rate=rate,
        breath=breath,
        rt60=rt60,
        drr_db=drr,
        room_seed=int(rng.integers(0, 2**31 - 1)),
        eq=eq,
        tilt_db_per_octave=round(_uniform(rng, cond.tilt_db_per_octave), 2),
        highpass_hz=round(_uniform(rng, cond.highpass_hz), 1),
        lowpass_hz=lowpass,
    )


@dataclass(frozen=True)
class UtteranceDraw:
    """Per-utterance choices: eSpeak prosody parameters, noise, level and drift."""

    pitch: int = 50
    pitch_range: int = 50
    rate_factor: float = 1.0
    noise: str = "none"  # "none" | "colour" | "babble"
    snr_db: float = float("inf")
    colour: float = 0.0  # spectral slope exponent of coloured noise
    level_dbfs: float = -26.0


def draw_utterance(cond: Conditions, key: str) -> UtteranceDraw:
    """The utterance's prosody and noise choices, deterministic in ``key``."""
    if cond.is_clean:
        return UtteranceDraw()
    rng = seeded_rng(f"utterance/{key}")
    pitch = int(rng.integers(cond.utterance_pitch[0], cond.utterance_pitch[1] + 1))
    prange = int(rng.integers(cond.utterance_range[0], cond.utterance_range[1] + 1))
    rate_factor = float(1.0 + rng.uniform(-cond.rate_jitter, cond.rate_jitter))
    noise, snr, colour = "none", float("inf"), 0.0
    if rng.random() < cond.noise_prob:
        snr = _uniform(rng, cond.snr_db)
        if rng.random() < cond.babble_share:
            noise = "babble"
        else:
            noise, colour = "colour", float(rng.uniform(0.0, 2.0))
    return UtteranceDraw(
        pitch, prange, rate_factor, noise, snr, colour, _uniform(rng, cond.level_dbfs)
    )


# ------------------------------------------------------------------------------ signal processing
def _freqs(n: int) -> np.ndarray:
    return np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)


def channel_response(rec: Recording, n: int) -> np.ndarray:
    """Magnitude response (linear) of the speaker's microphone/channel on ``rfftfreq(n)`` bins."""
    f = _freqs(n)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    db = rec.tilt_db_per_octave * octaves
    for centre, gain, width in rec.eq:
        db = db + gain * np.exp(-0.5 * ((octaves - np.log2(centre / 1000.0)) / width) ** 2)
    mag = 10.0 ** (db / 20.0)
    if rec.highpass_hz > 0:  # 2nd-order Butterworth magnitude
        mag = mag / np.sqrt(1.0 + (rec.highpass_hz / np.maximum(f, 1e-3)) ** 4)
    if rec.lowpass_hz > 0:  # steep (8th-order) band limit, as a telephone or cheap codec
        mag = mag / np.sqrt(1.0 + (f / rec.lowpass_hz) ** 16)
    return mag


def room_impulse_response(rec: Recording) -> np.ndarray:
    """A synthetic room impulse response, direct path at lag 0 (float64).

    Early reflections: 6-12 sparse echoes 1.5-40 ms after the direct sound; late tail: Gaussian noise
    whose low band (< 1.5 kHz) decays at ``rt60`` and high band at 0.6 x ``rt60`` (air and wall
    absorption). Early + late energy is scaled to the direct-to-reverberant ratio ``drr_db``.
    """
    rng = np.random.default_rng(rec.room_seed)
    n = max(int(rec.rt60 * SAMPLE_RATE), 64)
    t = np.arange(n) / SAMPLE_RATE
    tail_noise = rng.standard_normal(n)
    spec = np.fft.rfft(tail_noise)
    low = np.fft.irfft(spec * (_freqs(n) < 1500.0), n)
    high = np.fft.irfft(spec * (_freqs(n) >= 1500.0), n)
    onset = int(rng.uniform(0.003, 0.012) * SAMPLE_RATE)
    env = (t >= onset / SAMPLE_RATE).astype(np.float64)
    tail = low * np.exp(-6.908 * t / rec.rt60) + high * np.exp(-6.908 * t / (0.6 * rec.rt60))
    tail *= env
    early = np.zeros(n)
    for _ in range(int(rng.integers(6, 13))):
        lag = int(rng.uniform(0.0015, 0.04) * SAMPLE_RATE)
        if lag < n:
            early[lag] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * np.exp(-lag / n)
    reverb = early + tail
    energy = float(np.sum(reverb**2))
    reverb *= np.sqrt(10.0 ** (-rec.drr_db / 10.0) / max(energy, 1e-12))
    h = reverb
    h[0] = 1.0
    return h


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``x * h`` cut to ``len(x)`` (FFT)."""
    m = len(x) + len(h) - 1
    size = 1 << (m - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[: len(x)]


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(_freqs(n), 20.0)
    x = np.fft.irfft(spec / f ** (exponent / 2.0), n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def babble(n: int, bank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS babble: 3-7 talkers, random crops of ``bank`` (dry speech, circularly)."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        start = int(rng.integers(0, len(bank)))
        idx = (start + np.arange(n)) % len(bank)
        talker = bank[idx]
        rms = float(np.sqrt(np.mean(talker**2)))
        if rms > 0:
            out += talker / rms * rng.uniform(0.5, 1.0)
    rms = float(np.sqrt(np.mean(out**2)))
    return out / rms if rms > 0 else out


def _active_rms(x: np.ndarray, speech: slice) -> float:
    seg = x[speech]
    return float(np.sqrt(np.mean(seg**2))) if seg.size else 0.0


def set_level(x: np.ndarray, speech: slice, dbfs: float) -> np.ndarray:
    """``x`` scaled so that the RMS over ``speech`` is ``dbfs`` (in int16 units, 0 dBFS = 32768)."""
    rms = _active_rms(x, speech)
    return x * (32768.0 * 10.0 ** (dbfs / 20.0) / rms) if rms > 0 else x


def apply_recording(
    dry: np.ndarray,
    speech: slice,
    rec: Recording,
    utt: UtteranceDraw,
    key: str,
    drift_db: float,
    bank: np.ndarray | None = None,
) -> np.ndarray:
    """What the speaker's set-up records of ``dry`` (float, any scale); returns float64 samples in
    int16 units. ``speech`` is the span holding speech (the SNR and level are measured there)."""
    rng = seeded_rng(f"noise/{key}")
    x = dry.astype(np.float64)
    if rec.rt60 > 0:
        x = _convolve(x, room_impulse_response(rec))
    s_rms = _active_rms(x, speech)
    if utt.noise != "none" and s_rms > 0 and np.isfinite(utt.snr_db):
        if utt.noise == "babble" and bank is not None and len(bank):
            noise = babble(len(x), bank, rng)
        else:
            noise = coloured_noise(len(x), utt.colour, rng)
        x = x + noise * s_rms * 10.0 ** (-utt.snr_db / 20.0)
    mag = channel_response(rec, len(x))
    x = set_level(np.fft.irfft(np.fft.rfft(x) * mag, len(x)), speech, utt.level_dbfs)
    if drift_db > 0:
        knots = rng.uniform(-drift_db, drift_db, size=max(2, len(x) // SAMPLE_RATE + 2))
        curve = np.interp(np.linspace(0, len(knots) - 1, len(x)), np.arange(len(knots)), knots)
        x = x * 10.0 ** (curve / 20.0)
    return x


def conditions_by_name(name: str) -> Conditions:
    if name not in CONDITIONS:
        raise ConfigError(f"unknown conditions {name!r}; choose one of {', '.join(CONDITIONS)}")
    return CONDITIONS[name]
