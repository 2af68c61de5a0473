"""Extraction throughput (audio-seconds per second) of the base-size model: layer 6 vs all 12.

Random weights (the speed does not depend on them), synthetic audio, the same batching code as
`spidrkit extract` (length-sorted padded batches through ``spidrkit.api.Encoder.stream``), no disk
I/O.

    .venv/bin/python bench/extract.py                      # CPU, 8 utterances of 4-12 s
    .venv/bin/python bench/extract.py --device cuda --utterances 64 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from spidrkit.api import Encoder
from spidrkit.audio import standardize
from spidrkit.models import SpidR, SpidRConfig, build_model
from spidrkit.models.inference import pad_waveforms
from spidrkit.units.baselines import SpectralFeatures


class FrontEnd:
    """Only the conv feature extractor + projection of ``model`` (the fixed cost under every
    layer), as a frame encoder with one layer."""

    batchable = True
    layer_range = range(1, 2)

    def __init__(self, model: SpidR) -> None:
        self.model = model
        self.dim = model.dim

    def num_frames(self, num_samples: int) -> int:
        return self.model.num_frames(num_samples)

    def to(self, device: torch.device) -> FrontEnd:
        self.model.to(device)
        return self

    @torch.inference_mode()
    def layer_features(self, wavs, layers, *, before_residual=True, precision="fp32"):
        device = next(self.model.parameters()).device
        x, _ = pad_waveforms([standardize(w) for w in wavs], device)
        return {1: self.model.features(x)}


def one_pass(encoder: Encoder, layers: list[int], wavs: list[torch.Tensor]) -> float:
    """Wall time of one pass over every batch."""
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in encoder.stream(
        range(len(wavs)), wavs.__getitem__, [len(w) for w in wavs], layers=layers
    ):
        pass
    if encoder.device.type == "cuda":
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
    wavs.sort(key=lambda w: -w.shape[0])
    audio_s = sum(w.shape[0] for w in wavs) / 16000

    torch.manual_seed(0)
    model = build_model("spidr", SpidRConfig()).eval()
    caps = {"max_batch_samples": int(args.batch_seconds * 16000), "max_batch_items": 64}
    spidr = Encoder(model, device, **caps)
    sources = [
        ("SpidR base, layer 6", spidr, [6]),
        ("SpidR base, layers 1-12", spidr, list(range(1, 13))),
        ("SpidR base, layer 12", spidr, [12]),
        ("front end only", Encoder(FrontEnd(model), device, **caps), [1]),
        ("MFCC (39-d, 20 ms)", Encoder(SpectralFeatures("mfcc"), device, **caps), [0]),
    ]
    best = {name: float("inf") for name, _, _ in sources}
    for _, encoder, layers in sources:
        encoder.features(wavs[-1], layers=layers)  # warm-up
    # interleaved repeats, best of each: fair under a noisy shared machine
    for _ in range(args.repeats):
        for name, encoder, layers in sources:
            best[name] = min(best[name], one_pass(encoder, layers, wavs))
    rows = [(name, best[name], audio_s / best[name]) for name, _, _ in sources]
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
