"""Time the synthetic corpus: eSpeak calls (with and without the fork isolation) and whole builds.

.venv/bin/python bench/synth.py                 # tiny with 1 and 2 workers, eSpeak call costs
.venv/bin/python bench/synth.py --demo          # also the 2-hour demo preset (a few minutes)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from spidrkit.synth import make_corpus
from spidrkit.synth.espeak import ESPEAK_RATE, ESpeak
from spidrkit.synth.speakers import make_speakers

TEXT = "the old farmer feeds the hungry goats near the barn. then the children laughed."


def bench_calls(n: int = 50) -> list[tuple[str, float, float]]:
    es = ESpeak()
    spk = make_speakers(1, 1, 1, seed=0)[0]
    voice = es.add_voice("bench", spk.voice_file_text())
    rows = []
    for name, fn in (
        ("forked (default)", es.synthesize),
        ("in process (not reproducible)", lambda *a: es._synthesize_here(*a, False)),
    ):
        fn(TEXT, voice, 170)
        t0 = time.perf_counter()
        audio = 0.0
        for _ in range(n):
            audio += len(fn(TEXT, voice, 170).samples) / ESPEAK_RATE
        dt = (time.perf_counter() - t0) / n
        rows.append((name, dt * 1000, audio / n / dt))
    return rows


def bench_build(preset: str, workers: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = make_corpus(
            os.path.join(tmp, "c"), preset=preset, workers=workers, show_progress=False
        )
        dt = time.perf_counter() - t0
    return dt, info.hours, sum(s.utterances for s in info.splits.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--demo", action="store_true", help="also build the demo preset")
    args = ap.parse_args()
    print("| eSpeak call | ms per utterance | x real time |")
    print("|---|---|---|")
    for name, ms, rtf in bench_calls():
        print(f"| {name} | {ms:.1f} | {rtf:.0f} |")
    print()
    print("| preset | workers | wall s | hours | utterances | x real time |")
    print("|---|---|---|---|---|---|")
    builds = [("tiny", 1), ("tiny", 2)] + ([("demo", 2)] if args.demo else [])
    for preset, workers in builds:
        dt, hours, n = bench_build(preset, workers)
        print(f"| {preset} | {workers} | {dt:.1f} | {hours:.3f} | {n} | {hours * 3600 / dt:.0f} |")


if __name__ == "__main__":
    main()
