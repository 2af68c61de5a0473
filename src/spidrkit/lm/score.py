"""Log-likelihood of unit sequences under a :class:`UnitLM`, batched and exact about ties.

Each sequence is scored as ``bos u_1 ... u_n eos``: the sum of ``log p(u_t | bos, u_<t)`` over the
units plus, by default, ``log p(eos | ...)`` (as fairseq's sequence scorer does); ``mean`` divides
by the number of scored tokens (the SpidR paper normalises by it). Sequences are sorted by length
and padded into batches of at most ``max_tokens`` tokens; identical unit sequences are scored once,
so two files with the same units get bit-identical scores (a tie, 0.5) whatever batches they land
in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spidrkit.errors import CheckpointError, DataError
from spidrkit.lm.model import UnitLM
from spidrkit.lm.vocab import PAD, encode
from spidrkit.utils.progress import progress


@dataclass(frozen=True)
class LogLikelihood:
    """Natural-log likelihood of one sequence: ``total`` (sum), ``mean`` (= total / num_tokens)."""

    total: float
    mean: float
    num_tokens: int


@torch.no_grad()
def score_sequences(
    model: UnitLM,
    sequences: Sequence[Sequence[int] | torch.Tensor],
    *,
    max_tokens: int = 32768,
    include_eos: bool = True,
    names: Sequence[str] | None = None,
    show_progress: bool = False,
) -> list[LogLikelihood]:
    """Score unit sequences (lists or LongTensors of unit ids, not token ids) with ``model``.

    Runs on the model's device, in float32 (no autocast: tie decisions must not depend on rounding).
    ``names`` (one per sequence) only serves error messages. Returns one result per input, in order.
    """
    cfg = model.cfg
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # identical sequences scored once
    keys = [tuple(torch.as_tensor(s).reshape(-1).tolist()) for s in sequences]
    first: dict[tuple, int] = {}
    for n, k in enumerate(keys):
        first.setdefault(k, n)
    unique = list(first)
    index = {k: i for i, k in enumerate(unique)}
    tokens = []
    for k in unique:
        where = names[first[k]] if names is not None else f"sequence {first[k]}"
        t = encode(k, cfg.num_units, where=where)
        if t.numel() - 1 > cfg.max_positions:
            raise DataError(
                f"{where}: {len(k)} units + bos/eos exceed the LM's max_positions "
                f"({cfg.max_positions}); score shorter files or train with a larger max_positions"
            )
        tokens.append(t)
    order = sorted(range(len(tokens)), key=lambda i: -tokens[i].numel())
    results: list[LogLikelihood | None] = [None] * len(tokens)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # longest first: the first row of a batch sets its width
        width = tokens[current[0]].numel() - 1 if current else tokens[i].numel() - 1
        if current and (len(current) + 1) * width > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    for batch in progress(batches, enabled=show_progress, desc="scoring", unit="batch"):
        width = tokens[batch[0]].numel() - 1
        inputs = torch.full((len(batch), width), PAD, dtype=torch.long)
        targets = torch.full((len(batch), width), PAD, dtype=torch.long)
        for j, i in enumerate(batch):
            n = tokens[i].numel() - 1
            inputs[j, :n] = tokens[i][:-1]
            targets[j, :n] = tokens[i][1:]
            if not include_eos:
                targets[j, n - 1] = PAD
        inputs, targets = inputs.to(device), targets.to(device)
        logp = F.log_softmax(model(inputs).float(), dim=-1)
        picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mask = targets != PAD
        sums = (picked * mask).double().sum(dim=1).cpu()
        counts = mask.sum(dim=1).cpu()
        for j, i in enumerate(batch):
            n = int(counts[j])
            total = float(sums[j])
            if not math.isfinite(total):  # a score is finite or an error, never a silent 0 %
                where = names[first[unique[i]]] if names is not None else f"sequence {i}"
                raise CheckpointError(
                    f"{where}: the unit LM gives a non-finite log-likelihood ({total}); its "
                    "weights are not usable (a diverged run?)"
                )
            results[i] = LogLikelihood(total, total / n if n else 0.0, n)
    model.train(was_training)
    return [results[index[k]] for k in keys]  # type: ignore[misc]
