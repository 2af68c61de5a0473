"""Unit-LM speed: scoring throughput (batched vs one file at a time) and training tokens/s.

    python bench/bench_lm.py [--threads 2] [--device cpu]

Prints a table; results with machine details go in docs/benchmarks.md (## lm).
"""

from __future__ import annotations

import argparse
import time

import torch

from spidrkit.lm.config import LM_PRESETS
from spidrkit.lm.model import UnitLM
from spidrkit.lm.score import score_sequences
from spidrkit.lm.vocab import PAD


def _time(fn, repeat: int = 1) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--files", type=int, default=400, help="sWUGGY-like files to score")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    rows = [("preset", "params", "work", "time s", "rate")]
    for preset in ("lm_small", "opt_125m"):
        cfg = LM_PRESETS[preset]
        model = UnitLM(cfg).to(device).eval()
        # sWUGGY-like: 15-40 deduplicated units per file
        n_files = args.files if preset != "opt_125m" else max(args.files // 4, 1)
        seqs = [
            torch.randint(0, cfg.num_units, (int(n),), generator=gen)
            for n in torch.randint(15, 40, (n_files,), generator=gen)
        ]
        n_tok = sum(len(s) + 1 for s in seqs)
        params = f"{model.num_parameters() / 1e6:.1f}M"
        t_batched = _time(lambda m=model, s=seqs: score_sequences(m, s, max_tokens=8192))
        rows.append(
            (
                preset,
                params,
                f"score {n_files} files, batched",
                f"{t_batched:.2f}",
                f"{n_files / t_batched:.0f} files/s, {n_tok / t_batched:.0f} tok/s",
            )
        )
        few = seqs[:20]
        t_single = _time(lambda m=model, s=few: [score_sequences(m, [x]) for x in s])
        rows.append(
            (
                preset,
                params,
                "score 20 files, one by one",
                f"{t_single:.2f}",
                f"{20 / t_single:.1f} files/s",
            )
        )
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = torch.randint(
            3, cfg.vocab_size, (4 if preset == "opt_125m" else 16, 257), generator=gen
        )

        def step(m=model, o=opt, b=batch):
            loss, n = m.loss(b[:, :-1].to(device), b[:, 1:].to(device))
            (loss / n).backward()
            o.step()
            o.zero_grad()

        t_step = _time(step, repeat=1 if preset == "opt_125m" else 3)
        tokens = batch.numel() - batch.shape[0]
        rows.append(
            (
                preset,
                params,
                f"train step {tuple(batch.shape)} fp32",
                f"{t_step:.2f}",
                f"{tokens / t_step:.0f} tok/s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, PAD={PAD}"
    )


if __name__ == "__main__":
    main()
