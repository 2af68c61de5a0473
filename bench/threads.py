"""Thread oversubscription, side by side: one small training loop under each thread setting.

Each setting runs in a fresh process (OpenMP reads its settings at start) while ``--load``
competing processes keep CPUs busy with single-threaded torch work (what another job on a shared
machine does); settings alternate, ``--repeats`` times, and the table shows the median and spread
of the seconds per step. The competing processes stop with the script.

    python bench/threads.py                  # 1 competing process, threads 1 and all cores
    python bench/threads.py --load 0         # an otherwise idle machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

STEP = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
m = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(8)])
x = torch.randn(64, 256)
opt = torch.optim.AdamW(m.parameters())
for _ in range(5):
    m(x).sum().backward(); opt.step(); opt.zero_grad()
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    m(x).sum().backward(); opt.step(); opt.zero_grad()
print((time.perf_counter() - t0) / int(sys.argv[2]))
"""

LOAD = """
import time, torch
torch.set_num_threads(1)
a = torch.randn(512, 512)
end = time.time() + float(__import__("sys").argv[1])
while time.time() < end:
    a = torch.tanh(a @ a.T / 512)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--load", type=int, default=1, help="competing single-threaded processes")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = [
        ("1 thread", "1", None),
        (f"{cores} threads, OMP_WAIT_POLICY unset (spinning)", str(cores), None),
        (f"{cores} threads, OMP_WAIT_POLICY=PASSIVE (what the CLI sets)", str(cores), "PASSIVE"),
    ]
    loads = [
        subprocess.Popen([sys.executable, "-c", LOAD, "600"]) for _ in range(max(0, args.load))
    ]
    try:
        time.sleep(2 if loads else 0)
        times: dict[str, list[float]] = {name: [] for name, _, _ in settings}
        for rep in range(args.repeats):
            order = settings if rep % 2 == 0 else settings[::-1]
            for name, threads, policy in order:
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                env.pop("OMP_NUM_THREADS", None)
                if policy:
                    env["OMP_WAIT_POLICY"] = policy
                out = subprocess.run(
                    [sys.executable, "-c", STEP, threads, str(args.steps)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                times[name].append(float(out.stdout.strip()))
    finally:
        for proc in loads:
            proc.kill()
            proc.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {cores} usable cores, {args.load} competing process(es), load average {load:.1f} "
        f"at the end; 8 x Linear(256) MLP, batch 64, AdamW; median (min-max) of "
        f"{args.repeats} alternating runs of {args.steps} steps"
    )
    base = statistics.median(times[settings[0][0]])
    print("| setting | ms per step | vs 1 thread |\n|---|---|---|")
    for name, _, _ in settings:
        t = times[name]
        med = statistics.median(t)
        print(
            f"| {name} | {1e3 * med:.1f} ({1e3 * min(t):.1f}-{1e3 * max(t):.1f}) "
            f"| {med / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
