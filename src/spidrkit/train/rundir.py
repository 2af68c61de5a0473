"""The run folder of a training run: one writer at a time, no silent overwrite, no stale metrics.

``run_folder(output_dir, checkpoint_dir, resume=..., overwrite=...)`` is entered by rank 0 of
``spidrkit train`` and ``spidrkit lm-train`` before anything is written:

- it takes an exclusive, non-blocking ``flock`` on ``<output_dir>/.spidrkit.lock`` (released when
  the process exits, even on SIGKILL), so a second run on the same folder stops with one line
  instead of interleaving checkpoints and ``metrics.jsonl``;
- with ``resume=False`` a folder that already holds a run (checkpoints, ``metrics.jsonl``,
  ``config.json``, ``tb/``) is refused, unless ``overwrite=True``: then the old run's files are
  moved, never deleted, into ``<output_dir>/replaced-<UTC time>/``.

:func:`truncate_metrics` then drops the ``metrics.jsonl`` lines past the step the run resumes from
(they are logged again), so no step appears twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from spidrkit.errors import ConfigError
from spidrkit.train.checkpoint import CHECKPOINT_RE, CONFIG_NAME
from spidrkit.utils.files import atomic_write

log = logging.getLogger(__name__)

LOCK_NAME = ".spidrkit.lock"
METRICS_NAME = "metrics.jsonl"
_RUN_FILES = (METRICS_NAME, CONFIG_NAME, "tb", "best.pt")


def _run_files(output_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Files of an earlier run in the folder (checkpoints, metrics, config, TensorBoard, best)."""
    found: list[Path] = []
    for folder in dict.fromkeys([output_dir, checkpoint_dir]):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            name = p.name
            base = name.removesuffix(".sha256").removesuffix(".corrupt")
            if CHECKPOINT_RE.match(base) or name in _RUN_FILES:
                found.append(p)
    return found


def _set_aside(output_dir: Path, files: list[Path]) -> Path:
    """Move ``files`` (and an emptied checkpoint folder) into ``replaced-<time>/``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = output_dir / f"replaced-{stamp}"
    k = 1
    while dest.exists():
        k += 1
        dest = output_dir / f"replaced-{stamp}-{k}"
    for p in files:
        target = dest / p.relative_to(output_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    return dest


@contextlib.contextmanager
def run_folder(
    output_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    *,
    resume: bool,
    overwrite: bool = False,
    enabled: bool = True,
) -> Iterator[None]:
    """Hold the run folder's lock for the block; refuse or set aside an earlier run (see module).

    Args:
        checkpoint_dir: where checkpoints go (default: ``output_dir`` itself).
        resume: the run continues from its checkpoints (an existing run is expected, not refused).
        overwrite: with ``resume=False``, move an existing run aside instead of refusing.
        enabled: False on ranks other than 0 (they neither lock nor move anything).
    """
    if not enabled:
        yield
        return
    out = Path(output_dir)
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else out
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot use as run folder ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise ConfigError(
                f"{out}: another run is writing to this folder (pid {holder}); wait for it to "
                "finish or choose another run.output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if not resume:
            earlier = _run_files(out, ckdir)
            if earlier and not overwrite:
                raise ConfigError(
                    f"{out}: already holds a run ({', '.join(p.name for p in earlier[:4])}"
                    f"{' ...' if len(earlier) > 4 else ''}) and resume is off; resume it "
                    "(run.resume = true), pass --overwrite to move it aside into "
                    f"{out}/replaced-<time>/, or choose another run.output_dir"
                )
            if earlier:
                dest = _set_aside(out, earlier)
                log.warning("moved the earlier run's %d files into %s", len(earlier), dest)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def truncate_metrics(path: str | Path, step: int) -> int:
    """Keep the lines of a ``metrics.jsonl`` with ``step <= step`` (rewritten atomically).

    A run resumed from the checkpoint of ``step`` logs the later steps again; unreadable lines (a
    write cut by a kill) are dropped too. Returns the number of lines dropped.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    kept: list[str] = []
    dropped = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                keep = isinstance(row, dict) and int(row.get("step", 0)) <= step
            except (ValueError, TypeError):
                keep = False
            if keep:
                kept.append(raw.decode("utf-8").rstrip("\n") + "\n")
            else:
                dropped += 1
    if dropped:
        with atomic_write(path, "w") as f:
            f.writelines(kept)
        log.info("%s: dropped %d lines after step %d (logged again)", path, dropped, step)
    return dropped
