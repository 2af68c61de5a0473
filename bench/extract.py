"""Extraction throughput (audio-seconds per second) of the base-size model: layer 6 vs all 12.

Random weights (the speed does not depend on them), synthetic audio, the same batching code as
`spidrkit extract` (length-sorted padded batches through ``EncoderFeatures``), no disk I/O.

    .venv/bin/python bench/extract.py                      # CPU, 8 utterances of 4-12 s
    .venv/bin/python bench/extract.py --device cuda --utterances 64 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from spidrkit.models import SpidRConfig, build_model
from spidrkit.units.baselines import SpectralFeatures
from spidrkit.units.extract import AudioItem, EncoderFeatures, make_batches, run_batch


class FrontEnd(EncoderFeatures):
    """Only the conv feature extractor + projection: the fixed cost under every layer."""

    @torch.no_grad()
    def __call__(self, wavs: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        x, _ = self.prepare(wavs)
        return {self.layers[0]: self.model.features(x)}


def one_pass(source, batches, by_id, device: torch.device) -> float:
    """Wall time of one pass over every batch."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b in batches:
        run_batch(source, b, [by_id[it.fileid] for it in b])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--min-seconds", type=float, default=4.0)
    p.add_argument("--max-seconds", type=float, default=12.0)
    p.add_argument("--batch-seconds", type=float, default=40.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n = args.utterances
    secs = torch.linspace(args.min_seconds, args.max_seconds, n)
    wavs = [torch.randn(int(s * 16000), generator=g) * 0.1 for s in secs]
    items = sorted(
        (AudioItem(f"u{i}", "", w.shape[0]) for i, w in enumerate(wavs)),
        key=lambda it: -it.num_samples,
    )
    wavs = [wavs[int(it.fileid[1:])] for it in items]
    audio_s = sum(w.shape[0] for w in wavs) / 16000

    torch.manual_seed(0)
    model = build_model("spidr", SpidRConfig()).eval().to(device)
    sources = [
        ("SpidR base, layer 6", EncoderFeatures(model, [6])),
        ("SpidR base, layers 1-12", EncoderFeatures(model, list(range(1, 13)))),
        ("SpidR base, layer 12", EncoderFeatures(model, [12])),
        ("front end only", FrontEnd(model, [1])),
        ("MFCC (39-d, 20 ms)", SpectralFeatures("mfcc").to(device)),
    ]
    by_id = {it.fileid: w for it, w in zip(items, wavs, strict=True)}
    cap = int(args.batch_seconds * 16000)
    best = {name: float("inf") for name, _ in sources}
    for _, source in sources:
        run_batch(source, items[-1:], wavs[-1:])  # warm-up
    # interleaved repeats, best of each: fair under a noisy shared machine
    for _ in range(args.repeats):
        for name, source in sources:
            batches = make_batches(items, max_samples=cap, max_items=64, batchable=source.batchable)
            best[name] = min(best[name], one_pass(source, batches, by_id, device))
    rows = [(name, best[name], audio_s / best[name]) for name, _ in sources]
    base = rows[1][2]
    print(
        f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"{n} utterances, {audio_s:.1f} s of audio, batches of <= {args.batch_seconds:.0f} s, "
        f"best of {args.repeats} interleaved passes"
    )
    print(f"| {'source':<24} | {'wall s':>7} | {'audio-s/s':>9} | {'vs all 12':>9} |")
    print(f"|{'-' * 26}|{'-' * 9}|{'-' * 11}|{'-' * 11}|")
    for name, wall, speed in rows:
        print(f"| {name:<24} | {wall:7.3f} | {speed:9.1f} | {speed / base:8.2f}x |")


if __name__ == "__main__":
    main()
