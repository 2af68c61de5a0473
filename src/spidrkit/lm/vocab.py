"""Token ids of the unit LM: three special tokens first, then the units.

``pad = 0``, ``bos = 1``, ``eos = 2``, unit ``u`` -> token ``u + 3``. A sequence fed to the LM is
``bos u_1 ... u_n eos``; the LM predicts ``u_1 ... u_n eos``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spidrkit.errors import DataError

PAD = 0
BOS = 1
EOS = 2
NUM_SPECIALS = 3


def encode(
    units: Sequence[int] | torch.Tensor, num_units: int, where: str = "units"
) -> torch.Tensor:
    """Units -> LongTensor ``[n + 2]`` of token ids ``bos u+3 ... eos``.

    Raises :class:`DataError` naming ``where`` when a unit is outside ``[0, num_units)``.
    """
    t = torch.as_tensor(units, dtype=torch.long).reshape(-1)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_units):
        bad = int(t.max()) if int(t.max()) >= num_units else int(t.min())
        raise DataError(
            f"{where}: unit {bad} is outside [0, {num_units}); the LM was built for {num_units} "
            "units (set model.num_units to the k-means/codebook size)"
        )
    out = torch.empty(t.numel() + 2, dtype=torch.long)
    out[0] = BOS
    out[1:-1] = t + NUM_SPECIALS
    out[-1] = EOS
    return out


def decode(tokens: torch.Tensor) -> list[int]:
    """Token ids -> units, dropping the special tokens."""
    t = tokens[tokens >= NUM_SPECIALS]
    return (t - NUM_SPECIALS).tolist()
