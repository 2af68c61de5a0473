"""Encoder frames per waveform length: the conv formula of docs/models.md, "The architecture".

``conv_num_frames(16000) == 49``: each feature-extractor conv (kernel k, stride s, no padding) maps n
samples to ``floor((n - k) / s) + 1`` (0 when n < k). The one place the formula lives: the models
(``spidrkit.models.num_frames``) and the data loader both use :func:`num_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor


def total_stride(conv_layers) -> int:  # type: ignore[no-untyped-def]
    """Samples between two output frames of the feature extractor (320 for SpidR: 20 ms)."""
    hop = 1
    for *_, _kernel, stride in conv_layers:
        hop *= stride
    return hop


def num_frames(num_samples, conv_layers):  # type: ignore[no-untyped-def]
    """Frames out of the feature extractor for ``num_samples`` samples (16000 -> 49).

    ``num_samples``: an int, a numpy int array or a tensor (the same kind comes back);
    ``conv_layers``: (channels, kernel, stride) or (kernel, stride) per conv. Each conv maps n samples
    to ``floor((n - kernel) / stride) + 1``; too-short inputs give 0.
    """
    n = num_samples
    for *_, kernel, stride in conv_layers:
        n = (n - kernel) // stride + 1
    if isinstance(n, Tensor):
        return n.clamp(min=0)
    if isinstance(n, np.ndarray) and n.ndim:
        return np.maximum(n, 0)
    return max(int(n), 0)


DEFAULT_CONV_LAYERS: tuple[tuple[int, int], ...] = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2
"""(kernel, stride) of the 7 extractor convs (the same in every official and tiny config)."""


def conv_num_frames(num_samples, conv_layers: Sequence[tuple[int, int]] = DEFAULT_CONV_LAYERS):
    """Frames out of the extractor for ``num_samples`` (int or int array)."""
    return num_frames(np.asarray(num_samples, dtype=np.int64), conv_layers)
