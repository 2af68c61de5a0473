"""Training checkpoints: atomic writes, keep-latest pruning, every RNG, and finding the latest one.

Layout of ``<dir>/checkpoint_<step:08d>.pt`` (the official keys first, then ours)::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "epoch": int, "step": int,
     "rng": capture_rng_state(), "sampler": {...}, "trainer": {...}}

A file only ever appears under its final name through one ``os.replace`` of a fully written,
fsynced temporary file, so a run killed at any moment leaves the previous checkpoint or the new one.
Beside each checkpoint, ``checkpoint_<step>.pt.sha256`` holds the SHA-256 of its bytes (the format
of ``sha256sum``, so ``sha256sum -c`` checks it too). :func:`~spidrkit.utils.integrity.verify_checkpoint`
checks that digest (or, for a file without one, the CRC-32 of every zip record), so a truncated or byte-corrupted
checkpoint is detected before it is used: :func:`find_latest_checkpoint` skips it and
:func:`latest_valid_checkpoint` (used to resume) renames it ``*.pt.corrupt`` so it neither counts
as the newest checkpoint nor is ever deleted. Loading always uses
``torch.load(..., weights_only=True)``, which is why the RNG states are stored as tensors and plain Python values.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spidrkit.errors import CheckpointError
from spidrkit.models.checkpoint import read_torch_file
from spidrkit.utils.files import atomic_write
from spidrkit.utils.integrity import (
    DIGEST_SUFFIX,
    HashingWriter,
    digest_path,
    verify_checkpoint,
)

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.pt$")
CONFIG_NAME = "config.json"


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"checkpoint_{step:08d}.pt"


# --------------------------------------------------------------------------------------------- RNG


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and (when available) every CUDA generator, weights-only loadable."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only restored when CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            log.warning(
                "checkpoint has %d CUDA RNG states, this machine %d GPUs: restoring the first ones",
                len(cuda),
                torch.cuda.device_count(),
            )
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, device=i)


# ------------------------------------------------------------------------------------------ writes


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint_<step>.pt`` in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(
    directory: str | Path,
    step: int,
    state: dict[str, Any],
    *,
    keep_last: int | None = 3,
    config: dict[str, Any] | None = None,
    before_replace: Callable[[], None] | None = None,
) -> Path:
    """Write ``state`` to ``<directory>/checkpoint_<step>.pt`` atomically, then prune old ones.

    Args:
        keep_last: keep this many newest checkpoints (None or 0 keeps all).
        config: the resolved run config, written as ``config.json`` beside the checkpoints.
        before_replace: test hook called once the temporary file is written but not yet renamed (the
            trainer uses it to die mid-write in the crash tests).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if config is not None:
        with atomic_write(directory / CONFIG_NAME, "w") as f:
            json.dump(config, f, indent=2, sort_keys=False)
            f.write("\n")
    path = checkpoint_path(directory, step)
    with atomic_write(path, "wb") as f:
        writer = HashingWriter(f)
        torch.save(state, writer)  # type: ignore[arg-type]  # a write-only file object
        # the digest lands first: a checkpoint never appears without its checksum
        with atomic_write(digest_path(path), "w") as d:
            d.write(f"{writer.h.hexdigest()}  {path.name}\n")
        if before_replace is not None:
            f.flush()
            os.fsync(f.fileno())
            before_replace()
    prune_checkpoints(directory, keep_last or None, newest=step)
    return path


def prune_checkpoints(
    directory: str | Path, keep_last: int | None, *, newest: int | None = None
) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints (None: keep all), stale temporary files
    left by interrupted writes and checksum files whose checkpoint is gone.

    ``newest``: the step just written; checkpoints of later steps (another run's) are never deleted
    and do not count among the kept ones.
    """
    removed = []
    found = list_checkpoints(directory)
    if newest is not None:
        found = [(s, p) for s, p in found if s <= newest]
    old = found[:-keep_last] if keep_last else []
    for _, p in old:
        p.unlink(missing_ok=True)
        digest_path(p).unlink(missing_ok=True)
        removed.append(p)
    for p in Path(directory).glob(".checkpoint_*.pt*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    for p in Path(directory).glob("checkpoint_*.pt" + DIGEST_SUFFIX):
        if not p.with_name(p.name.removesuffix(DIGEST_SUFFIX)).exists():
            p.unlink(missing_ok=True)
    return removed


# ------------------------------------------------------------------------------------------- reads


def find_latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest intact checkpoint in ``directory`` (corrupt ones are skipped), or None."""
    for step, p in reversed(list_checkpoints(directory)):
        problem = verify_checkpoint(p)
        if problem is None:
            return p
        log.warning("skipping checkpoint %s (step %d): %s", p, step, problem)
    return None


def latest_valid_checkpoint(directory: str | Path) -> Path | None:
    """Like :func:`find_latest_checkpoint`, for resuming: every corrupt checkpoint newer than the
    one returned is renamed ``checkpoint_<step>.pt.corrupt`` (kept, never pruned, no longer
    counted), so the resumed run cannot mistake it for its newest checkpoint."""
    for step, p in reversed(list_checkpoints(directory)):
        problem = verify_checkpoint(p)
        if problem is None:
            return p
        aside = p.with_name(p.name + ".corrupt")
        os.replace(p, aside)
        digest = digest_path(p)
        if digest.exists():
            os.replace(digest, aside.with_name(p.name + DIGEST_SUFFIX + ".corrupt"))
        log.warning("checkpoint %s (step %d): %s; set aside as %s", p, step, problem, aside.name)
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors turned into :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    problem = verify_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; use an earlier checkpoint")
    # weights only; a refused pickle or a foreign file is one line naming it
    state = read_torch_file(path, verify=False, map_location=map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a spidrkit/official checkpoint (no 'model' key)")
    return state
