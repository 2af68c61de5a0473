"""Spoken language modelling: a causal unit LM (OPT-125M by default) and zero-shot scores.

- ``config``: :class:`UnitLMConfig`, :data:`LM_PRESETS`, the ``lm-train`` config sections.
- ``vocab``: token ids (pad, bos, eos, then units), deduplication.
- ``model``: :class:`UnitLM`, a decoder-only Transformer in plain torch.
- ``data``: units JSONL reading, packed or length-bucketed batches.
- ``train``: the ``lm-train`` loop, :func:`load_lm` / :func:`save_lm`.
- ``score``: batched log-likelihoods of unit sequences.
- ``zerospeech``: sWUGGY / sBLIMP / StoryCloze folders, pairing and accuracies.
- ``evaluate``: ``slm-eval`` as an API (tokenize -> score -> accuracies -> submission files).
"""

from spidrkit.lm.config import LM_PRESETS, LMTrainConfig, UnitLMConfig
from spidrkit.lm.evaluate import (
    SLMReport,
    UnitsLookup,
    evaluate_slm,
    format_table,
    write_report,
    write_submission,
)
from spidrkit.lm.model import UnitLM
from spidrkit.lm.score import LogLikelihood, score_sequences
from spidrkit.lm.train import LMTrainResult, load_lm, save_lm, train_lm
from spidrkit.lm.zerospeech import Task, TaskResult, evaluate_task, load_task

__all__ = [
    "LM_PRESETS",
    "LMTrainConfig",
    "LMTrainResult",
    "LogLikelihood",
    "SLMReport",
    "Task",
    "TaskResult",
    "UnitLM",
    "UnitLMConfig",
    "UnitsLookup",
    "evaluate_slm",
    "evaluate_task",
    "format_table",
    "load_lm",
    "load_task",
    "save_lm",
    "score_sequences",
    "train_lm",
    "write_report",
    "write_submission",
]
