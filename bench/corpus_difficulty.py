"""How hard is a corpus? MFCC and log-mel triphone ABX (within and across speakers) on its dev set.

The spectral baselines follow the ZeroSpeech convention: 10 ms frames, per-utterance mean and
variance normalisation (CMVN); MFCC is 13 coefficients + deltas + delta-deltas (39-d).

  # existing corpora
  python bench/corpus_difficulty.py --corpus data/demo --corpus data/clean --threads 2
  # one corpus per realism factor (the rest clean), built at a reduced size into --work
  python bench/corpus_difficulty.py --factors --hours 0.5 --work /tmp/difficulty --threads 2

Prints a markdown table (error rates in %, chance 50 %); ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from spidrkit.data.manifest import read_manifest
from spidrkit.eval.abx import ABXConfig, compute_abx_modes, read_item_file
from spidrkit.synth.conditions import CLEAN, REALISTIC, Conditions
from spidrkit.units.baselines import SpectralFeatures


def factor_conditions() -> dict[str, Conditions]:
    """The realistic preset split into its factors, each alone on clean speech, then all."""
    r = REALISTIC
    voice = replace(
        CLEAN,
        name="voices",
        formant_scale=r.formant_scale,
        formant_jitter=r.formant_jitter,
        formant_shape=r.formant_shape,
        pitch_scale=r.pitch_scale,
        rate=r.rate,
        utterance_pitch=r.utterance_pitch,
        utterance_range=r.utterance_range,
        rate_jitter=r.rate_jitter,
        breath_prob=r.breath_prob,
    )
    room = replace(CLEAN, name="room", room_prob=r.room_prob, rt60=r.rt60, drr_db=r.drr_db)
    channel = replace(
        CLEAN,
        name="channel",
        eq_db=r.eq_db,
        tilt_db_per_octave=r.tilt_db_per_octave,
        highpass_hz=r.highpass_hz,
        lowpass_prob=r.lowpass_prob,
        lowpass_hz=r.lowpass_hz,
    )
    noise = replace(
        CLEAN, name="noise", noise_prob=r.noise_prob, snr_db=r.snr_db, babble_share=r.babble_share
    )
    level = replace(CLEAN, name="level", level_dbfs=r.level_dbfs, drift_db=r.drift_db)
    return {
        "clean": CLEAN,
        "voices": voice,
        "room": room,
        "channel": channel,
        "noise": noise,
        "level": level,
        "realistic": replace(r, clean_view=False),
    }


def spectral_features(corpus: Path, split: str, kind: str) -> dict[str, torch.Tensor]:
    src = SpectralFeatures(kind=kind, hop_ms=10, cmvn=True)
    manifest = read_manifest(corpus / split / "manifest.csv")
    feats = {}
    for i in range(len(manifest)):
        wav = manifest.load(i)
        feats[str(manifest.fileids[i])] = src.single(torch.as_tensor(wav))
    return feats


def difficulty(corpus: Path, split: str = "dev") -> dict[str, float]:
    items = read_item_file(corpus / split / "abx.item")
    row: dict[str, float] = {}
    for kind in ("mfcc", "logmel"):
        feats = spectral_features(corpus, split, kind)
        results = compute_abx_modes(
            items,
            feats,
            ABXConfig(step=0.01),
            speakers=("within", "across"),
            show_progress=False,
        )
        for r in results:
            row[f"{kind}_{r.config.speaker}"] = round(100 * r.error, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", action="append", default=[], help="a built corpus folder")
    ap.add_argument("--factors", action="store_true", help="build one corpus per realism factor")
    ap.add_argument("--hours", type=float, default=0.5, help="size of each factor corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/spidrkit-difficulty", help="where factor corpora go")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    targets = [(Path(c).name, Path(c)) for c in args.corpus]
    if args.factors:
        from spidrkit.synth import make_corpus

        for name, cond in factor_conditions().items():
            out = Path(args.work) / name
            if not (out / "corpus.json").exists():
                make_corpus(
                    out,
                    preset="demo",
                    seed=args.seed,
                    hours=args.hours,
                    workers=args.threads,
                    overwrite=True,
                    show_progress=False,
                    conditions=cond,
                )
            targets.append((name, out))
    for name, path in targets:
        t0 = time.perf_counter()
        row = {"corpus": name, **difficulty(path, args.split)}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| corpus | MFCC within | MFCC across | log-mel within | log-mel across |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['mfcc_within']:.2f} | {r['mfcc_across']:.2f} "
            f"| {r['logmel_within']:.2f} | {r['logmel_across']:.2f} |"
        )
    if args.json:
        Path(args.json).write_text("\n".join(json.dumps(r) for r in rows) + "\n")


if __name__ == "__main__":
    main()
