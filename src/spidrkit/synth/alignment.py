"""From eSpeak events to phone segments, 10 ms frame labels, word timings and ABX items.

Times are sample indices at 16 kHz. Phone ``k`` of an utterance spans from its eSpeak phoneme event to
the next event; the first phone of a word starts at the word's event when that comes earlier (eSpeak
reports a stop's closure before the stop's phoneme event), and a stop or affricate also takes the
silent tail of the phone before it (its closure: eSpeak's event marks the release). Segments tile ``[0, num_samples)`` exactly,
silence (leading, trailing and pauses) being labelled ``SIL``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from spidrkit.audio.io import SAMPLE_RATE
from spidrkit.errors import SpidrkitError
from spidrkit.synth.espeak import Synthesis
from spidrkit.synth.phones import IGNORED, SILENCE, espeak_labels, is_pause, strip_stress

FRAME = 160  # samples per 10 ms label frame at 16 kHz
STOPS = frozenset({"p", "t", "k", "b", "d", "g", "ch", "jh"})
_CLOSURE_STEP = 32  # eSpeak samples scanned at a time when looking for a closure
_CLOSURE_LEVEL = 64  # |sample| at or under this counts as silence (-54 dBFS)
_MIN_KEEP = 441  # the phone before a closure keeps at least 20 ms


@dataclass(frozen=True)
class Segment:
    label: str
    start: int  # sample, inclusive
    end: int  # sample, exclusive
    word: int = -1  # index of the word it belongs to, -1 for silence


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: int
    end: int


def segments_from_synthesis(
    syn: Synthesis,
    words: list[str],
    text: str,
    ratio: float,
    offset: int,
    num_samples: int,
    phone_counts: list[int] | None = None,
) -> list[Segment]:
    """Phone segments of one utterance after resampling by ``ratio`` and shifting by ``offset``.

    ``words``/``text``: the spoken words and the text given to eSpeak (word events are matched to
    words by their character position). ``num_samples``: length of the final audio.
    ``phone_counts``: phones of each word in isolation; eSpeak speaks some function words together
    with the next word under one word event (``in the`` -> ``inD@``), and these counts share out
    the phones of such a merged word.
    """
    starts = _word_starts(text, words)
    # merge phoneme and word events in time order (word events come before their first phoneme)
    events: list[tuple[int, str, int]] = []  # (sample, phoneme name or "", word index)
    word_idx, pending_word_start = -1, None
    wi = 0
    phon = [p for p in syn.phonemes if strip_stress(p.name) not in IGNORED]
    wevents = sorted(syn.words, key=lambda w: w.sample)
    for p in phon:
        while wi < len(wevents) and wevents[wi].sample <= p.sample:
            w = wevents[wi]
            word_idx = starts.get(w.text_position - 1, word_idx + 1)
            pending_word_start = w.sample
            wi += 1
        start = p.sample
        if pending_word_start is not None and not is_pause(p.name):
            start = min(start, pending_word_start)
            pending_word_start = None
        events.append((start, p.name, -1 if is_pause(p.name) else word_idx))
    _closures(events, syn.samples)

    def at(sample: int) -> int:
        return min(num_samples, offset + round(sample * ratio))

    segs: list[Segment] = []
    cursor = 0
    for k, (start, name, widx) in enumerate(events):
        s = at(start)
        e = at(events[k + 1][0]) if k + 1 < len(events) else at(len(syn.samples))
        if s > cursor:
            segs.append(Segment(SILENCE, cursor, s))
        s = max(s, cursor)
        if e <= s:
            continue
        try:
            labels = espeak_labels(name)
        except KeyError as exc:
            raise SpidrkitError(
                f"eSpeak phoneme {name!r} has no label in spidrkit.synth.phones.ESPEAK_TO_PHONES"
            ) from exc
        pos = s
        for j, (lab, share) in enumerate(labels):
            end = e if j == len(labels) - 1 else s + round((e - s) * share)
            if end > pos:
                segs.append(Segment(lab, pos, end, -1 if lab == SILENCE else widx))
            pos = end
        cursor = e
    if cursor < num_samples:
        segs.append(Segment(SILENCE, cursor, num_samples))
    segs = _merge_silence(segs)
    if phone_counts is not None:
        _split_merged_words(segs, phone_counts)
    return segs


def _split_merged_words(segs: list[Segment], counts: list[int]) -> None:
    """Give the words eSpeak merged into the word before them their share of its phones (in place)."""
    by_word: dict[int, list[int]] = {}
    for i, seg in enumerate(segs):
        if seg.word >= 0:
            by_word.setdefault(seg.word, []).append(i)
    for w in sorted(by_word):
        k = w + 1
        while k < len(counts) and k not in by_word:
            k += 1
        group = list(range(w, k))
        if len(group) < 2:
            continue
        idx, pos = by_word[w], 0
        for j, g in enumerate(group):
            after = len(group) - 1 - j  # words still to serve, one phone each at least
            if after == 0:
                take = len(idx) - pos
            else:
                take = max(1, min(counts[g], len(idx) - pos - after))
            for i in idx[pos : pos + take]:
                segs[i] = replace(segs[i], word=g)
            pos += take


def _closures(events: list[tuple[int, str, int]], samples) -> None:
    """Move each stop's start back over the silent end of the phone before it (in place)."""
    x = abs(samples.astype("int32"))
    for k in range(1, len(events)):
        start, name, widx = events[k]
        prev_start, prev_name, _ = events[k - 1]
        if is_pause(name) or is_pause(prev_name) or strip_stress(name) in IGNORED:
            continue
        if espeak_labels(name)[0][0] not in STOPS:
            continue
        j = start
        while (
            j - _CLOSURE_STEP >= prev_start + _MIN_KEEP
            and x[j - _CLOSURE_STEP : j].max() <= _CLOSURE_LEVEL
        ):
            j -= _CLOSURE_STEP
        events[k] = (j, name, widx)


def _word_starts(text: str, words: list[str]) -> dict[int, int]:
    """Character offset of each word in ``text`` -> word index."""
    out, pos = {}, 0
    for i, w in enumerate(words):
        pos = text.index(w, pos)
        out[pos] = i
        pos += len(w)
    return out


def _merge_silence(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segs:
        if out and s.label == SILENCE and out[-1].label == SILENCE:
            out[-1] = Segment(SILENCE, out[-1].start, s.end)
        else:
            out.append(s)
    return out


def frame_labels(segs: list[Segment], num_samples: int) -> list[str]:
    """One label per 10 ms frame: the segment holding the frame's centre sample."""
    n = num_samples // FRAME
    labels, k = [], 0
    for i in range(n):
        centre = i * FRAME + FRAME // 2
        while segs[k].end <= centre:
            k += 1
        labels.append(segs[k].label)
    return labels


def word_timings(segs: list[Segment], words: list[str]) -> list[WordTiming]:
    """Start and end (samples) of each spoken word, from its phones."""
    spans: dict[int, list[int]] = {}
    for s in segs:
        if s.word >= 0:
            span = spans.setdefault(s.word, [s.start, s.end])
            span[0], span[1] = min(span[0], s.start), max(span[1], s.end)
    return [WordTiming(words[i], a, b) for i, (a, b) in sorted(spans.items())]


def abx_items(
    segs: list[Segment], fileid: str, speaker: str, sample_rate: int = SAMPLE_RATE
) -> list[str]:
    """Item-file rows (docs/evaluation.md, "ABX") for the phones whose neighbours are phones, not silence."""
    rows = []
    for k in range(1, len(segs) - 1):
        prev, cur, nxt = segs[k - 1], segs[k], segs[k + 1]
        if SILENCE in (prev.label, cur.label, nxt.label):
            continue
        rows.append(
            f"{fileid} {cur.start / sample_rate:.4f} {cur.end / sample_rate:.4f} "
            f"{cur.label} {prev.label} {nxt.label} {speaker}"
        )
    return rows
