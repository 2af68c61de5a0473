"""ABX speed on a ZeroSpeech-sized synthetic task: triplets per second and wall time per phase.

The task: ``--speakers`` speakers read utterances made of words from a Zipfian lexicon over
``--phones`` phones; every non-edge phone is a triphone item (so contexts repeat as in real item
files). Features: a class mean per phone + a speaker offset + noise, ``--dim`` dims, 20 ms frames,
3-8 frames per phone.

    python bench/abx.py            # default: ~25k items, 768-d, within + across speaker
    python bench/abx.py --small    # ~4k items, a few seconds
    python bench/abx.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from spidrkit.eval.abx import ABXConfig, Items
from spidrkit.eval.abx.scoring import (
    PairTable,
    aggregate,
    item_order,
    needed_pairs,
    pair_dtw,
    score_cells,
)
from spidrkit.eval.abx.task import build_cells, gather_frames, subsample


def make_task(n_items: int, speakers: int, phones: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    lexicon = [rng.integers(0, phones, size=rng.integers(3, 7)) for _ in range(150)]
    zipf = 1.0 / np.arange(1, len(lexicon) + 1)
    zipf /= zipf.sum()
    means = 0.1 * torch.randn(phones, dim, generator=gen)
    rows, feats = [], {}
    per_spk = n_items // speakers
    for s in range(speakers):
        offset = 0.1 * torch.randn(dim, generator=gen)
        count, u = 0, 0
        while count < per_spk:
            words = rng.choice(len(lexicon), size=12, p=zipf)
            seq = np.concatenate([lexicon[w] for w in words])
            durs = rng.integers(3, 9, size=len(seq))
            frames = torch.cat(
                [means[p].expand(int(d), dim) for p, d in zip(seq, durs, strict=True)]
            )
            frames = frames + offset + torch.randn(frames.shape, generator=gen)
            fid = f"s{s}/u{u}"
            feats[fid] = frames
            t = np.concatenate([[0], np.cumsum(durs)]) * 0.02
            for k in range(1, len(seq) - 1):
                rows.append(
                    (fid, t[k], t[k + 1], f"p{seq[k]}", f"p{seq[k - 1]}", f"p{seq[k + 1]}", f"s{s}")
                )
                count += 1
            u += 1
    return Items.from_rows(rows), feats


def run_mode(items, feats, config: ABXConfig, device: str) -> dict:
    t = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    keep = subsample(items, config, rng)
    bank = gather_frames(items.subset(keep), feats, config.step, show_progress=False)
    t["frames"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cells = build_cells(bank.items, config, rng)
    keys = needed_pairs(cells, len(bank.length))
    t["cells+pairs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    order = item_order(bank.items, config.speaker, config.context)
    values = pair_dtw(bank, keys, config.distance, device, order, show_progress=False)
    if device != "cpu":
        torch.cuda.synchronize()
    t["dtw"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    err, ntrip = score_cells(cells, PairTable(keys, values, len(bank.length)))
    error, _, _ = aggregate(cells, err)
    t["score"] = time.perf_counter() - t0
    total = sum(t.values())
    return dict(
        mode=f"{config.speaker}/{config.context}",
        items=len(bank.length),
        cells=len(cells),
        pairs=len(keys),
        triplets=int(ntrip.sum()),
        error=100 * error,
        total=total,
        **t,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="~4k items instead of ~25k")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--speakers", type=int, default=10)
    ap.add_argument("--phones", type=int, default=40)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--modes", default="within/within,across/within,within/any")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_items = args.items or (4000 if args.small else 25000)
    t0 = time.perf_counter()
    items, feats = make_task(n_items, args.speakers, args.phones, args.dim)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}; task: {len(items)} items, "
        f"{args.speakers} speakers, {args.phones} phones, {args.dim}-d "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    head = (
        "| mode | items | cells | item pairs | triplets | ABX % | frames s | cells s | DTW s "
        "| score s | total s | triplets/s |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for mode in args.modes.split(","):
        speaker, context = mode.split("/")
        cfg = ABXConfig(speaker=speaker, context=context)
        r = run_mode(items, feats, cfg, args.device)
        print(
            f"| {r['mode']} | {r['items']} | {r['cells']} | {r['pairs']} | {r['triplets']} "
            f"| {r['error']:.2f} | {r['frames']:.1f} | {r['cells+pairs']:.1f} | {r['dtw']:.1f} "
            f"| {r['score']:.1f} | {r['total']:.1f} | {r['triplets'] / r['total']:.3g} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
