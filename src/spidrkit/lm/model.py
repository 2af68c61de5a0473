"""A decoder-only Transformer over units, OPT style, in plain torch.

Read top to bottom: ``CausalSelfAttention -> FeedForward -> Block -> UnitLM``. Pre-LN blocks,
learned absolute positions, ReLU feed-forward, a final layer norm and an output projection tied to
the token embedding, as in OPT-125M. Attention is ``F.scaled_dot_product_attention`` with
``is_causal=True``; padding needs no mask because padded positions come after the real ones and are
dropped from the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spidrkit.lm.config import UnitLMConfig
from spidrkit.lm.vocab import PAD


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention. ``[batch, time, dim] -> [batch, time, dim]``."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.attention_dropout = cfg.attention_dropout
        self.qkv_proj = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.bias)
        self.out_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv_proj(x).split(c, dim=-1)
        # (B, T, C) -> (B, H, T, C/H)
        q, k, v = (
            z.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2) for z in (q, k, v)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attention_dropout if self.training else 0.0, is_causal=True
        )
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class FeedForward(nn.Module):
    """``Linear(dim, ffn) -> activation -> Linear(ffn, dim)``."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_dim, bias=cfg.bias)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.embed_dim, bias=cfg.bias)
        self.activation = nn.ReLU() if cfg.activation == "relu" else nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + drop(attn(ln(x)))`` then ``x + drop(ffn(ln(x)))``."""

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.self_attn = CausalSelfAttention(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x)))
        return x + self.dropout(self.ffn(self.final_layer_norm(x)))


class UnitLM(nn.Module):
    """Causal LM over unit tokens (see :mod:`spidrkit.lm.vocab` for the token ids).

    ``forward(tokens [batch, time]) -> logits [batch, time, vocab_size]``; logits at position t
    predict token t + 1.
    """

    def __init__(self, cfg: UnitLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.embed_positions = nn.Embedding(cfg.max_positions, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.final_layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.output_projection = nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
        self.reset_parameters()
        if cfg.tie_embeddings:
            self.output_projection.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        """Normal(0, 0.02) weights, zero biases, residual output projections scaled by
        1/sqrt(2 x layers) (GPT-2/OPT practice)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02
                if name.endswith(("out_proj.weight", "fc2.weight")):
                    std = 0.02 / math.sqrt(2 * self.cfg.num_layers)
                nn.init.normal_(p, 0.0, std)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.embed_tokens.weight[PAD].zero_()

    def num_parameters(self) -> int:
        """Trainable parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens``: LongTensor ``[batch, time]`` -> logits ``[batch, time, vocab_size]``."""
        b, t = tokens.shape
        if t > self.cfg.max_positions:
            raise ValueError(
                f"sequence of {t} tokens is longer than max_positions={self.cfg.max_positions}"
            )
        pos = torch.arange(t, device=tokens.device)
        x = self.dropout(self.embed_tokens(tokens) + self.embed_positions(pos))
        for layer in self.layers:
            x = layer(x)
        return self.output_projection(self.final_layer_norm(x))

    def loss(
        self, tokens: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over non-pad targets and their count.

        ``tokens``, ``targets``: ``[batch, time]`` (targets = tokens shifted left, ``PAD`` ignored).
        Returns ``(loss_sum, num_tokens)``, both 0-dim; divide for the mean (nats per token).
        """
        logits = self(tokens)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), ignore_index=PAD, reduction="sum"
        )
        return loss, (targets != PAD).sum()
