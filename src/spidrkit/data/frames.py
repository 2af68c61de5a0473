"""Encoder frames per waveform length: the conv formula of SPEC section 2.

``conv_num_frames(16000) == 49``: each feature-extractor conv (kernel k, stride s, no padding) maps n
samples to ``floor((n - k) / s) + 1`` (0 when n < k). Works on ints and numpy int arrays. The data
loader uses it unless given the model's own ``spidrkit.models.num_frames`` (same formula, read from
the model config).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spidrkit.models.components import num_frames

DEFAULT_CONV_LAYERS: tuple[tuple[int, int], ...] = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2
"""(kernel, stride) of the 7 extractor convs (the same in every official and tiny config)."""


def conv_num_frames(num_samples, conv_layers: Sequence[tuple[int, int]] = DEFAULT_CONV_LAYERS):
    """Frames out of the extractor for ``num_samples`` (int or int array)."""
    return num_frames(np.asarray(num_samples, dtype=np.int64), conv_layers)
