"""fastabx as a black box: run by the Python that has fastabx installed (see bench/abx.py).

Reads one JSON request per line on stdin, runs ``fastabx.zerospeech_abx`` on it and answers one JSON
line ``{"seconds": ..., "error": ...}`` on stdout (seconds = the call alone, imports excluded).
Only fastabx's public entry point is used; spidrkit is not imported here.

    /work/fastabx-venv/bin/python bench/fastabx_worker.py 1   # 1 torch thread
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    import fastabx

    hello = {"fastabx": version("fastabx"), "torch": torch.__version__}
    hello["threads"] = torch.get_num_threads()
    hello["python"] = sys.version.split()[0]
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        t0 = time.perf_counter()
        error = fastabx.zerospeech_abx(
            req["item"],
            req["features"],
            speaker=req["speaker"],
            context=req["context"],
            distance=req["distance"],
            frequency=req["frequency"],
            max_size_group=req["max_size_group"],
            max_x_across=req["max_x_across"],
            seed=req["seed"],
            device="cpu",
            progress=False,
        )
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "error": float(error)}), flush=True)


if __name__ == "__main__":
    main()
