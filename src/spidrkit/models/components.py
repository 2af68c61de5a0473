"""Building blocks of the SpidR/DinoSR encoder, read top to bottom.

FeatureExtractor -> FeatureProjection -> Encoder(ConvPositionalEmbedding, LayerNorm, EncoderLayer x N)
with EncoderLayer = SelfAttention + FeedForward. Attribute names are the official checkpoint keys
(docs/models.md, "The architecture"); never rename them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spidrkit.data.frames import num_frames, total_stride  # noqa: F401  (the frame formula)
from spidrkit.models.config import ConvLayerConfig


def frame_attention_mask(
    frames: Sequence[int], total: int, device: torch.device | str = "cpu"
) -> Tensor | None:
    """Bool ``[batch, 1, 1, total]`` mask, True on each row's first ``frames[i]`` frames; None when
    no row is padded (the model then skips masking)."""
    if min(frames) >= total:
        return None
    valid = torch.as_tensor(list(frames), device=device)
    return (torch.arange(total, device=device)[None, :] < valid[:, None])[:, None, None, :]


class ConvBlock(nn.Module):
    """Conv1d (no padding) -> optional norm -> exact GELU. Input/output [batch, time, channels].

    Data stays time-major between blocks: the conv runs as a 2-D convolution on a channels-last view
    ([B, C, 1, T] over [B, T, C] memory), which oneDNN and cuDNN run without layout copies, and the
    LayerNorm over channels then needs no transpose copy either (~35% faster inference on CPU).
    The parameters are the official ``Conv1d`` ones.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, bias: bool, norm: str | None
    ) -> None:
        super().__init__()
        if norm == "layer_norm":
            self.layer_norm: nn.Module | None = nn.LayerNorm(out_ch, elementwise_affine=True)
        elif norm == "group_norm":
            self.layer_norm = nn.GroupNorm(out_ch, out_ch, affine=True)
        else:
            self.layer_norm = None
        self.norm_kind = norm
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = x.unsqueeze(1).permute(0, 3, 1, 2)  # [B, C, 1, T], channels-last strides
        conv, norm = self.conv, self.layer_norm
        x = F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]))
        if norm is not None and self.norm_kind == "group_norm":
            x = norm(x)
        x = x.permute(0, 2, 3, 1).squeeze(1)  # [B, T, C]
        if norm is not None and self.norm_kind == "layer_norm":
            x = norm(x)
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    """Waveform [batch, samples] -> features [batch, frames, channels] (official ``feature_extractor``)."""

    def __init__(
        self, conv_layers: ConvLayerConfig, mode: str = "layer_norm", bias: bool = False
    ) -> None:
        super().__init__()
        blocks = []
        in_ch = 1
        for i, (out_ch, kernel, stride) in enumerate(conv_layers):
            norm = "layer_norm" if mode == "layer_norm" else ("group_norm" if i == 0 else None)
            blocks.append(ConvBlock(in_ch, out_ch, kernel, stride, bias, norm))
            in_ch = out_ch
        self.conv_layers = nn.ModuleList(blocks)
        self.conv_config = tuple(conv_layers)

    def forward(self, waveforms: Tensor) -> Tensor:
        x = waveforms.unsqueeze(-1)  # [B, S, 1]
        for block in self.conv_layers:
            x = block(x)
        return x  # [B, T, C]


class FeatureProjection(nn.Module):
    """LayerNorm(C) then Linear(C -> D) (official ``feature_projection``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_features)
        self.projection = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class ConvPositionalEmbedding(nn.Module):
    """Stack of grouped convs whose output is added to the input (``pos_conv_embed``).

    Each conv is followed by a LayerNorm over channels without affine and GELU; padded frames are zeroed
    before every conv and at the end.
    """

    def __init__(self, dim: int, kernel: int, groups: int, depth: int) -> None:
        super().__init__()
        k = max(3, kernel // depth)
        self.kernel = k
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, dim, k, padding=k // 2, groups=groups) for _ in range(depth)
        )

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: [B, T, D]; padding_mask: bool [B, T], True at padded frames."""
        h = x.transpose(1, 2)  # [B, D, T]
        pad = None if padding_mask is None else padding_mask.unsqueeze(1)
        for conv in self.convs:
            if pad is not None:
                h = h.masked_fill(pad, 0.0)
            h = conv(h)
            if self.kernel % 2 == 0:
                h = h[..., :-1]
            h = F.layer_norm(h.transpose(1, 2), (h.shape[1],)).transpose(1, 2)
            h = F.gelu(h)
        if pad is not None:
            h = h.masked_fill(pad, 0.0)
        return x + h.transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head attention with one fused qkv Linear (``attention.qkv``, ``attention.proj``)."""

    def __init__(self, dim: int, num_heads: int, dropout: float, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """x: [B, T, D]; attention_mask: bool [B, 1, 1, T], True = attend."""
        b, t, d = x.shape
        q, k, v = (
            self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        )
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """Linear(D -> F), GELU, dropout, Linear(F -> D)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.intermediate_dropout = nn.Dropout(dropout)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(self.intermediate_dropout(F.gelu(self.intermediate_dense(x))))


class EncoderLayer(nn.Module):
    """Transformer layer, post-LN by default. Returns (output x, result f = feed-forward output)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        ff_dropout: float,
        layer_norm_first: bool,
        qkv_bias: bool,
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(dim, num_heads, attention_dropout, qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_dim, ff_dropout)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.layer_norm_first = layer_norm_first

    def forward(
        self, x: Tensor, attention_mask: Tensor | None = None, skip_final_norm: bool = False
    ) -> tuple[Tensor, Tensor]:
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), attention_mask))
            f = self.feed_forward(self.final_layer_norm(x))
            return x + self.dropout(f), f
        x = self.layer_norm(x + self.dropout(self.attention(x, attention_mask)))
        f = self.feed_forward(x)
        x = x + self.dropout(f)
        return (x if skip_final_norm else self.final_layer_norm(x)), f


class Encoder(nn.Module):
    """Positional conv + layer norm + Transformer layers (the ``student`` and ``teacher``)."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        ff_dropout: float,
        layer_norm_first: bool,
        layer_drop: float,
        qkv_bias: bool,
        pos_conv_kernel: int,
        pos_conv_groups: int,
        pos_conv_depth: int,
    ) -> None:
        super().__init__()
        self.pos_conv_embed = ConvPositionalEmbedding(
            dim, pos_conv_kernel, pos_conv_groups, pos_conv_depth
        )
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                dim,
                num_heads,
                ff_dim,
                dropout,
                attention_dropout,
                ff_dropout,
                layer_norm_first,
                qkv_bias,
            )
            for _ in range(num_layers)
        )
        self.layer_norm_first = layer_norm_first
        self.layer_drop = layer_drop

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        num_layers: int | None = None,
        skip_final_norm: bool = False,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """x: [B, T, D] -> (final output, layer results f, layer outputs x), each [B, T, D].

        Only the first ``num_layers`` layers run. ``skip_final_norm`` skips the last normalisation
        (used by SpidR training, where its output feeds no loss).
        """
        padding_mask = None if attention_mask is None else ~attention_mask[:, 0, 0, :]
        x = self.pos_conv_embed(x, padding_mask)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        n = len(self.layers) if num_layers is None else num_layers
        results: list[Tensor] = []
        outputs: list[Tensor] = []
        for i, layer in enumerate(self.layers[:n]):
            last = i == len(self.layers) - 1
            new_x, f = layer(x, attention_mask, skip_final_norm=skip_final_norm and last)
            if not (self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop):
                x = new_x
            results.append(f)
            outputs.append(x)
        if self.layer_norm_first and n == len(self.layers) and not skip_final_norm:
            x = self.layer_norm(x)
        return x, results, outputs


def init_linear_weights(module: nn.Module) -> None:
    """Every Linear N(0, 0.02) with zero bias; then qkv Xavier-uniform (gain 1/sqrt 2), proj Xavier."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, SelfAttention):
            nn.init.xavier_uniform_(m.qkv.weight, gain=1 / math.sqrt(2))
            nn.init.xavier_uniform_(m.proj.weight)
            nn.init.zeros_(m.proj.bias)
