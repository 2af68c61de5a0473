"""Encoder inference on raw 16 kHz waveforms: the one core behind every feature and unit path.

``spidrkit.load(...).features``, ``spidrkit extract``, ``abx --model``, ``kmeans --model``,
``spidrkit units`` and ``slm-eval --model`` all run :func:`layer_features` or
:func:`codebook_units` on batches planned by :func:`plan_batches`, so they give the same numbers.

One batch: each waveform is standardised on its own, zero-padded to ``[batch, samples]`` with a
frame attention mask ``[batch, 1, 1, frames]``; a group-norm feature extractor (DinoSR) normalises
over time, so there the front end runs item by item and the projected features are padded instead;
mixed precision (``bf16``, ``fp16`` on CUDA) runs under autocast; the Transformer stops at the highest
layer needed. Outputs are padded ``[batch, frames, ...]`` tensors plus each item's frame count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from spidrkit.audio.io import standardize
from spidrkit.errors import ConfigError
from spidrkit.models.components import frame_attention_mask
from spidrkit.utils.precision import autocast as precision_autocast


def plan_batches(
    lengths: Sequence[int],
    *,
    max_samples: int,
    max_items: int | None = None,
    equal_lengths: bool = False,
) -> list[list[int]]:
    """Group indices of ``lengths`` (longest first, ties in input order) into batches.

    A batch holds at most ``max_items`` items and ``len(batch) * longest <= max_samples`` (an item
    longer than ``max_samples`` gets a batch of its own); with ``equal_lengths`` only items of
    exactly the same length share a batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -int(lengths[i]))
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if (
            cur is not None
            and (len(cur) + 1) * int(lengths[cur[0]]) <= max_samples
            and (max_items is None or len(cur) < max_items)
            and (not equal_lengths or int(lengths[cur[0]]) == int(lengths[i]))
        ):
            cur.append(i)
        else:
            batches.append([i])
    return batches


def pad_waveforms(wavs: Sequence[Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Zero-pad 1-D waveforms into ``[batch, max_samples]`` float32 on ``device``, plus lengths."""
    lengths = torch.tensor([w.shape[-1] for w in wavs], dtype=torch.long)
    x = torch.zeros(len(wavs), int(lengths.max()), device=device)
    for i, w in enumerate(wavs):
        x[i, : w.shape[-1]] = w.to(device, torch.float32)
    return x, lengths.to(device)


def autocast(precision: str, device: torch.device) -> Any:
    """Inference autocast (:mod:`spidrkit.utils.precision`), except that fp16 off CUDA runs in
    fp32 (CPU float16 kernels are slow and gain nothing at inference)."""
    if precision == "fp16" and device.type != "cuda":
        precision = "fp32"
    return precision_autocast(precision, device)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _projected(model: Any, wavs: Sequence[Tensor]) -> tuple[Tensor, Tensor | None, list[int]]:
    """Projected front-end features ``[batch, frames, dim]``, the frame mask and frame counts."""
    device = _device(model)
    std = [standardize(w.float()) for w in wavs]
    frames = [int(model.num_frames(int(w.shape[-1]))) for w in std]
    if model.config.extractor_mode == "group_norm" and len(std) > 1:
        feats = [model.features(w[None].to(device))[0] for w in std]
        x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    else:
        x = model.features(pad_waveforms(std, device)[0])
    return x, frame_attention_mask(frames, x.shape[1], device), frames


@torch.inference_mode()
def layer_features(
    model: Any,
    wavs: Sequence[Tensor],
    layers: Sequence[int],
    *,
    before_residual: bool = True,
    precision: str = "fp32",
) -> tuple[dict[int, Tensor], list[int]]:
    """``{layer: [batch, frames, dim] float32}`` (1-based layers) and each item's frame count.

    ``before_residual``: the layer results ``f`` the paper evaluates; False for the layer outputs.
    Only the layers up to ``max(layers)`` are computed.
    """
    with autocast(precision, _device(model)):
        x, mask, frames = _projected(model, wavs)
        _, results, outputs = model.student(x, mask, num_layers=max(layers))
    reps = results if before_residual else outputs
    return {n: reps[n - 1].float() for n in layers}, frames


def head_layers(model: Any) -> list[int]:
    """1-based layer named by each codebook head: head k predicts the codes of that teacher layer
    (SpidR: the head also sits on that student layer; DinoSR: on the last one)."""
    return [i + 1 for i in model.codebook_layers]


def check_head_layers(available: Sequence[int], layers: Sequence[int]) -> None:
    """A ConfigError naming the layers of ``layers`` that have no codebook head."""
    bad = [n for n in layers if n not in available]
    if bad:
        raise ConfigError(
            f"no codebook head for layer(s) {bad}; this model's heads name layers "
            f"{available[0]}..{available[-1]} (use k-means units for other layers)"
        )


@torch.inference_mode()
def codebook_units(
    model: Any,
    wavs: Sequence[Tensor],
    layers: Sequence[int] | None = None,
    *,
    precision: str = "fp32",
) -> tuple[dict[int, Tensor], list[int]]:
    """``{layer: int64 [batch, frames]}``: argmax of the student head of each layer (default: every
    head), and each item's frame count. SpidR stops at the highest layer asked."""
    available = head_layers(model)
    layers = list(available if layers is None else layers)
    check_head_layers(available, layers)
    same_layer = bool(model.heads_read_own_layer)
    with autocast(precision, _device(model)):
        x, mask, frames = _projected(model, wavs)
        depth = max(layers) if same_layer else None
        final, results, _ = model.student(x, mask, num_layers=depth)
        out = {}
        for n in layers:
            k = available.index(n)
            h = results[n - 1] if same_layer else model.head_inputs(results, final)[k]
            out[n] = model.heads[k](h).argmax(-1)
    return out, frames
