"""eSpeak NG driven directly through ctypes (synchronous mode), with phoneme events as timings.

The shared library and its data come from the PyPI package ``espeakng-loader`` (the ``synth`` extra):
``espeakng_loader.get_library_path()`` and ``espeakng_loader.get_data_path()``; nothing is installed
system-wide.

Determinism. eSpeak keeps synthesis state in C statics between calls (pitch flutter index, wave
phase, automatic gain, echo buffer, ...), so the same text gives slightly different samples depending on
what was spoken before. :class:`ESpeak` therefore synthesises every utterance in a forked child of a
process in which the library was initialised but never used (:meth:`ESpeak.synthesize`): each call
starts from the same state, whatever the order or the number of workers. Voices are written by
:mod:`spidrkit.synth.speakers` with ``flutter 0`` and the random generators are reseeded per call.
Forking needs a POSIX system (Linux, macOS).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidrkit.errors import SpidrkitError

ESPEAK_RATE = 22050  # eSpeak NG's native rate
MAX_VOICE_PATH = 59  # eSpeak copies a voice file name into a 60-byte buffer

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_PHONEMES = 0x100  # text may hold [[phoneme mnemonics]]
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3  # 0-100, 50 = the voice's own base pitch
_PARAM_RANGE = 4  # 0-100, 50 = the voice's own pitch range


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h); ``id`` is the union, read as the 8-byte phoneme name."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class PhonemeEvent:
    """An eSpeak phoneme (ASCII mnemonic, stress marks kept) starting at ``sample`` (22.05 kHz)."""

    sample: int
    name: str


@dataclass(frozen=True)
class WordEvent:
    """Start of the word at character ``text_position`` (1-based) of length ``length``."""

    sample: int
    text_position: int
    length: int


@dataclass
class Synthesis:
    """One synthesised utterance: ``samples`` int16 ``[n]`` at 22.05 kHz and its events in order."""

    samples: np.ndarray
    phonemes: list[PhonemeEvent]
    words: list[WordEvent]


def _require_loader():
    try:
        import espeakng_loader
    except ImportError as exc:
        raise SpidrkitError(
            "the synthetic corpus needs eSpeak NG from the package espeakng-loader: "
            "pip install 'spidrkit[synth]'"
        ) from exc
    return espeakng_loader


class ESpeak:
    """One loaded eSpeak NG library in this process; create one per worker process.

    >>> es = ESpeak()  # doctest: +SKIP
    >>> voice = es.add_voice("v1", "language en-us\\nflutter 0\\n")  # doctest: +SKIP
    >>> syn = es.synthesize("the cat sleeps", voice, rate=170)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        loader = _require_loader()
        lib_path, data_path = loader.get_library_path(), loader.get_data_path()
        try:
            self.lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise SpidrkitError(f"cannot load eSpeak NG from {lib_path}: {exc}") from exc
        lib = self.lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            data_path.encode(),
            _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT,
        )
        if rate != ESPEAK_RATE:
            raise SpidrkitError(
                f"eSpeak NG initialisation failed (returned {rate}, expected {ESPEAK_RATE} Hz) with "
                f"data at {data_path}; reinstall it: pip install --force-reinstall espeakng-loader"
            )
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)
        self._voice_dir: str | None = None

    def add_voice(self, name: str, text: str) -> str:
        """Write voice file ``text`` as ``name`` in a private folder with a short path; return it."""
        if self._voice_dir is None:
            base = tempfile.gettempdir()
            if len(base) > 20 and os.path.isdir("/tmp"):
                base = "/tmp"  # eSpeak's voice path limit
            self._voice_dir = tempfile.mkdtemp(prefix="spv", dir=base)
            atexit.register(shutil.rmtree, self._voice_dir, True)
        path = os.path.join(self._voice_dir, name)
        if len(path.encode()) > MAX_VOICE_PATH:
            raise SpidrkitError(
                f"voice file path {path} is longer than eSpeak's limit of {MAX_VOICE_PATH} bytes; "
                "set TMPDIR to a short folder such as /tmp"
            )
        with open(path, "w") as f:
            f.write(text)
        return path

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (_EVENT_PHONEME, _EVENT_WORD):
                self._events.append((e.type, e.sample, e.text_position, e.length, e.id))
            i += 1
        return 0

    # ------------------------------------------------------------------ in this process
    def _synthesize_here(
        self,
        text: str,
        voice_file: str,
        rate: int,
        phonemes: bool,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> Synthesis:
        lib = self.lib
        if len(str(voice_file).encode()) > MAX_VOICE_PATH:
            raise SpidrkitError(
                f"voice file path {voice_file} is longer than {MAX_VOICE_PATH} "
                "bytes, which eSpeak cannot load; use ESpeak.add_voice"
            )
        if lib.espeak_SetVoiceByFile(str(voice_file).encode()) != 0:
            raise SpidrkitError(f"eSpeak NG cannot load the voice file {voice_file}")
        lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        if (pitch, pitch_range) != (50, 50):  # the defaults: leave the library as it starts
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
        self._libc.srand(1)  # breath noise uses rand()
        lib.espeak_ng_SetRandSeed(1)  # the Klatt synthesiser uses espeak_rand()
        self._chunks.clear()
        self._events.clear()
        data = text.encode("utf-8")
        flags = _CHARS_UTF8 | (_PHONEMES if phonemes else 0)
        err = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
        if err != 0:
            raise SpidrkitError(f"eSpeak NG failed (error {err}) on {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        ph, words = [], []
        for typ, sample, pos, length, ident in self._events:
            if typ == _EVENT_PHONEME:
                ph.append(PhonemeEvent(int(sample), ident.decode("utf-8", "replace")))
            else:
                words.append(WordEvent(int(sample), int(pos), int(length)))
        return Synthesis(samples.astype(np.int16), ph, words)

    def _phonemize_here(self, words: list[str]) -> list[str]:
        out = []
        for word in words:
            buf = ctypes.c_char_p(word.encode("utf-8"))
            ptr = ctypes.pointer(buf)
            parts = []
            while ptr.contents.value:
                res = self.lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, 0)
                if res is None:
                    break
                parts.append(res.decode("utf-8"))
            out.append(" ".join(p.strip() for p in parts if p.strip()))
        return out

    # ------------------------------------------------------------------ isolated (forked) calls
    def synthesize(
        self,
        text: str,
        voice_file: str | Path,
        rate: int = 175,
        phonemes: bool = False,
        pitch: int = 50,
        pitch_range: int = 50,
    ) -> Synthesis:
        """Speak ``text`` (``[[...]]`` phoneme mnemonics allowed when ``phonemes``) with a voice file.

        ``pitch`` and ``pitch_range`` (0-100, 50 = the voice file's own) shift the utterance's
        intonation. Runs in a forked child so every call starts from the library's pristine state.
        """
        return _in_child(
            self._synthesize_here, text, str(voice_file), rate, phonemes, pitch, pitch_range
        )

    def phonemize(self, words: list[str], voice_file: str | Path) -> list[str]:
        """eSpeak's ASCII phoneme string (with stress marks) of each word, e.g. ``"k'at"``."""

        def run() -> list[str]:
            self.lib.espeak_SetVoiceByFile(str(voice_file).encode())
            return self._phonemize_here(words)

        return _in_child(run)


def _in_child(fn, *args):
    """Run ``fn(*args)`` in a forked child and return its (pickled) result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 0
        try:
            os.close(r)
            try:
                payload = pickle.dumps((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - report anything to the parent
                payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        raise SpidrkitError(f"eSpeak NG worker process died (status {status})")
    ok, value = pickle.loads(payload)
    if not ok:
        raise SpidrkitError(f"eSpeak NG synthesis failed: {value}")
    return value
