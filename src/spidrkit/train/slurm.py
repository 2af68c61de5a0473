"""SLURM submission through submitit, with requeue-and-resume on preemption or time-out.

``submit(config_path, overrides, SlurmOptions(nodes=2, gpus_per_node=8, partition="gpu"))`` queues
one job of ``nodes * gpus_per_node`` tasks, one process per GPU. Each task exports the torchrun-style
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) with
submitit's ``TorchDistributedEnvironment`` and runs :func:`spidrkit.train.trainer.pretrain`, so the training
code is the same as under ``torchrun``. On preemption or time-out submitit calls
:meth:`TrainJob.checkpoint`, which requeues the same job; the new allocation resumes from the newest
complete checkpoint in ``run.output_dir`` (work since that checkpoint is redone, bit for bit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spidrkit.errors import ConfigError
from spidrkit.train.config import load_train_config
from spidrkit.train.distributed import cleanup
from spidrkit.train.trainer import pretrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of the SLURM job (``--slurm-arg key=value`` adds any other submitit parameter)."""

    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    time_min: int = 24 * 60
    cpus_per_task: int = 10
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str = "spidrkit-train"
    extra: dict[str, Any] = field(default_factory=dict)


def parse_time(text: str) -> int:
    """SLURM time formats to whole minutes (seconds round up): ``M``, ``M:S``, ``H:M:S``, ``D-H``,
    ``D-H:M``, ``D-H:M:S``."""
    raw = text.strip()
    days, _, rest = raw.rpartition("-") if "-" in raw else ("0", "", raw)
    parts = rest.split(":")
    if not days.isdigit() or not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--time {text!r}: expected M, M:S, H:M:S, D-H, D-H:M or D-H:M:S")
    nums = [int(p) for p in parts]
    if "-" in raw:
        h, m, sec = (nums + [0, 0])[:3]
    elif len(nums) == 3:
        h, m, sec = nums
    else:
        h, m, sec = 0, nums[0], (nums[1] if len(nums) == 2 else 0)
    total = int(days) * 24 * 60 + h * 60 + m + (1 if sec else 0)
    if total < 1:
        raise ConfigError(f"--time {text!r}: must be at least one minute")
    return total


class TrainJob:
    """The callable submitit runs on every task; :meth:`checkpoint` requeues it on preemption."""

    def __init__(self, config_path: str, overrides: list[str]) -> None:
        self.config_path = str(config_path)
        self.overrides = list(overrides)

    def __call__(self) -> int:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)

        cfg = load_train_config(self.config_path, self.overrides)
        try:
            result = pretrain(cfg)
        finally:
            cleanup()
        return result.step

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same job; it resumes from the newest checkpoint on disk."""
        import submitit

        log.warning("preempted or timed out: requeueing; the run resumes from its last checkpoint")
        return submitit.helpers.DelayedSubmission(TrainJob(self.config_path, self.overrides))


def make_executor(folder: str | Path, opts: SlurmOptions, cluster: str | None = None) -> Any:
    """A submitit AutoExecutor configured from ``opts`` (``cluster="local"`` for tests)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--slurm needs submitit: pip install 'spidrkit[slurm]'") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = dict(
        name=opts.job_name,
        nodes=opts.nodes,
        tasks_per_node=opts.gpus_per_node,
        gpus_per_node=opts.gpus_per_node,
        cpus_per_task=opts.cpus_per_task,
        timeout_min=opts.time_min,
    )
    if opts.mem_gb is not None:
        params["mem_gb"] = opts.mem_gb
    slurm = {
        "slurm_partition": opts.partition,
        "slurm_account": opts.account,
        "slurm_qos": opts.qos,
        "slurm_constraint": opts.constraint,
        "slurm_signal_delay_s": 120,
    }
    if executor.cluster == "slurm":
        params.update({k: v for k, v in slurm.items() if v is not None})
    params.update(opts.extra)
    executor.update_parameters(**params)
    return executor


def submit(
    config_path: str | Path, overrides: list[str], opts: SlurmOptions, cluster: str | None = None
) -> Any:
    """Validate the config here, then queue the job; returns the submitit Job."""
    cfg = load_train_config(config_path, overrides)  # fail now, not in the queue
    folder = Path(cfg.run.output_dir) / "slurm"
    executor = make_executor(folder, opts, cluster)
    job = executor.submit(TrainJob(str(Path(config_path).resolve()), overrides))
    log.info(
        "submitted job %s (%d node(s) x %d GPU(s)); logs in %s",
        job.job_id,
        opts.nodes,
        opts.gpus_per_node,
        folder,
    )
    return job
