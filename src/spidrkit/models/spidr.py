"""SpidR and DinoSR: student/teacher self-distillation with online codebooks (docs/models.md).

Both models share everything but where the prediction heads read the student (``head_inputs``) and the
teacher's decay schedule (``ema_decay``).
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Sequence
from typing import cast, overload

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from spidrkit.audio.spectral import MFCCFrames
from spidrkit.errors import ConfigError
from spidrkit.models.codebook import Codebook
from spidrkit.models.components import (
    Encoder,
    FeatureExtractor,
    FeatureProjection,
    init_linear_weights,
    num_frames,
    total_stride,
)
from spidrkit.models.config import DinoSRConfig, SpidRConfig
from spidrkit.models.inference import layer_features

Monitors = dict[str, Tensor]


def _build_encoder(cfg: SpidRConfig | DinoSRConfig) -> Encoder:
    return Encoder(
        dim=cfg.encoder_embed_dim,
        num_layers=cfg.encoder_num_layers,
        num_heads=cfg.encoder_num_heads,
        ff_dim=cfg.encoder_ff_interm_features,
        dropout=cfg.encoder_dropout,
        attention_dropout=cfg.encoder_attention_dropout,
        ff_dropout=cfg.encoder_ff_interm_dropout,
        layer_norm_first=cfg.encoder_layer_norm_first,
        layer_drop=cfg.encoder_layer_drop,
        qkv_bias=cfg.encoder_qkv_bias,
        pos_conv_kernel=cfg.encoder_pos_conv_kernel,
        pos_conv_groups=cfg.encoder_pos_conv_groups,
        pos_conv_depth=cfg.encoder_pos_conv_depth,
    )


def _instance_norm(x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """Normalise [B, T, D] over time per utterance and channel, in float32, eps 1e-5 (all frames)."""
    return F.instance_norm(x.float().transpose(1, 2), eps=1e-5).transpose(1, 2)


def _perplexity(probs: Tensor) -> Tensor:
    """2 ** entropy (bits) of the average of the distributions ``probs`` [N, V]."""
    p = probs.float().mean(0)
    return torch.exp2(-(p * torch.log2(p.clamp_min(1e-30))).sum())


class _SelfDistillationModel(nn.Module, abc.ABC):
    """Shared body of SpidR and DinoSR. Inputs are standardised 16 kHz waveforms [batch, samples].

    Both implement :class:`spidrkit.api.FrameEncoder` (``layer_range``, ``dim``, ``batchable``,
    ``num_frames``, ``layer_features``), the protocol :class:`spidrkit.api.Encoder` runs.
    """

    config: SpidRConfig | DinoSRConfig
    current_step: Tensor
    warmup_codebook: Codebook
    heads_read_own_layer: bool
    """SpidR: head k reads the student layer whose codes it predicts; DinoSR: the last layer."""
    batchable = True  # padding never leaks: inference masks it and runs group norm item by item

    def __init__(self, cfg: SpidRConfig | DinoSRConfig) -> None:
        super().__init__()
        self.config = cfg
        dim = cfg.encoder_embed_dim
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
        self.register_buffer("current_step", torch.zeros(1, dtype=torch.long))
        self.feature_extractor = FeatureExtractor(
            cfg.extractor_conv_layer_config, cfg.extractor_mode, cfg.extractor_conv_bias
        )
        channels = cfg.extractor_conv_layer_config[-1][0]
        self.feature_projection = FeatureProjection(channels, dim)
        self.projection_dropout = nn.Dropout(cfg.encoder_projection_dropout)
        self.student = _build_encoder(cfg)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, cfg.codebook_size), nn.LogSoftmax(dim=-1))
            for _ in range(cfg.num_codebooks)
        )
        self.codebooks = nn.ModuleList(
            Codebook(
                dim,
                cfg.codebook_size,
                cfg.codebook_decay,
                cfg.codebook_distance,
                cfg.codebook_balance,
            )
            for _ in range(cfg.num_codebooks)
        )
        self.mfcc: MFCCFrames | None = None
        if cfg.warmup_targets == "mfcc":
            self.mfcc = MFCCFrames(hop=total_stride(cfg.extractor_conv_layer_config))
            self.warmup_codebook = Codebook(
                MFCCFrames.dim,
                cfg.codebook_size,
                cfg.codebook_decay,
                cfg.codebook_distance,
                cfg.codebook_balance,
            )
            if cfg.warmup_regression_weight > 0:
                self.warmup_regressors = nn.ModuleList(
                    nn.Linear(dim, MFCCFrames.dim) for _ in range(cfg.num_codebooks)
                )
                init_linear_weights(self.warmup_regressors)
        init_linear_weights(self.student)
        init_linear_weights(self.heads)
        init_linear_weights(self.feature_projection)
        self.teacher = _build_encoder(cfg)
        init_linear_weights(self.teacher)  # re-initialised, not copied (as the official code)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.idle_teacher_in_warmup = False
        """Skip the teacher's forward and codebook updates during the MFCC warm-up: no loss reads
        them there; they only prepare the codebooks for the self-distillation that follows. Set by
        the trainer when no self-distillation step follows in the run (exact: the losses and the
        student are the same; the teacher's weights still follow the student by EMA)."""

    # -- structure -------------------------------------------------------------------------------

    def codebook_modules(self) -> list[Codebook]:
        """The online codebooks, one per head (``codebooks``, typed)."""
        return [cast(Codebook, cb) for cb in self.codebooks]

    @property
    def codebook_layers(self) -> list[int]:
        """0-based teacher layers whose results the codebooks quantise (the top K)."""
        n, k = self.config.encoder_num_layers, self.config.num_codebooks
        return list(range(n - k, n))

    @overload
    def num_frames(self, num_samples: int) -> int: ...

    @overload
    def num_frames(self, num_samples: Tensor) -> Tensor: ...

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames produced for ``num_samples`` input samples."""
        return num_frames(num_samples, self.config.extractor_conv_layer_config)

    @property
    def layer_range(self) -> range:
        """The 1-based Transformer layers whose features can be read."""
        return range(1, self.config.encoder_num_layers + 1)

    @property
    def dim(self) -> int:
        """Feature dimension of every layer."""
        return self.config.encoder_embed_dim

    def layer_features(
        self,
        wavs: Sequence[Tensor],
        layers: Sequence[int],
        *,
        before_residual: bool = True,
        precision: str = "fp32",
    ) -> dict[int, Tensor]:
        """Raw 16 kHz waveforms -> ``{layer: [batch, frames, dim]}`` (padded; see
        :func:`spidrkit.models.inference.layer_features`)."""
        return layer_features(
            self, wavs, layers, before_residual=before_residual, precision=precision
        )[0]

    def train(self, mode: bool = True) -> _SelfDistillationModel:
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout
        return self

    @abc.abstractmethod
    def head_inputs(self, results: list[Tensor], final: Tensor) -> list[Tensor]:
        """What each head reads: [B, T, D] per head."""

    def _skip_final_norm(self) -> bool:
        return False

    @abc.abstractmethod
    def ema_decay(self, step: int) -> float:
        """Teacher decay after optimizer step ``step``."""

    # -- features --------------------------------------------------------------------------------

    def features(self, waveforms: Tensor) -> Tensor:
        """Projected features [B, T, D] of waveforms [B, S]."""
        return self.feature_projection(self.feature_extractor(waveforms))

    @torch.no_grad()
    def get_intermediate_outputs(
        self,
        waveforms: Tensor,
        *,
        attention_mask: Tensor | None = None,
        num_layers: int | None = None,
        before_residual: bool = True,
    ) -> list[Tensor]:
        """Student layer representations, a list of [B, T, D] (layer results ``f`` by default).

        Only the first ``num_layers`` layers are computed.
        """
        x = self.features(waveforms)
        _, results, outputs = self.student(x, attention_mask, num_layers=num_layers)
        return results if before_residual else outputs

    @torch.no_grad()
    def get_codebooks(
        self, waveforms: Tensor, *, attention_mask: Tensor | None = None, onehot: bool = False
    ) -> list[Tensor]:
        """Per head, the predicted codeword distribution [B, T, V] (one-hot of the argmax if asked)."""
        x = self.features(waveforms)
        final, results, _ = self.student(x, attention_mask)
        probs = [head(h).exp() for head, h in zip(self.heads, self.head_inputs(results, final))]
        if onehot:
            probs = [F.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype) for p in probs]
        return probs

    # -- objective -------------------------------------------------------------------------------

    def forward(
        self,
        waveforms: Tensor,
        *,
        mask_indices: Tensor | None = None,
        attention_mask: Tensor | None = None,
        target_waveforms: Tensor | None = None,
    ) -> tuple[Tensor, Monitors]:
        """Masked prediction of teacher codes.

        Args:
            waveforms: [B, S] standardised audio.
            mask_indices: [B, M] masked frame indices (same M for every row). Required.
            attention_mask: [B, 1, 1, T] bool, True = attend; None when nothing is padded.
            target_waveforms: [B, S] another view of the same audio (e.g. the dry speech of a
                synthetic corpus) that the teacher and the warm-up targets read; None = the
                teacher reads ``waveforms`` as the official model does.
        Returns:
            per-frame losses [B * M] and {"target_ppl", "pred_ppl", "target_ppl_<i>"} (averaged over
            ranks; ``target_ppl_<i>`` is codebook i's, ``target_ppl`` their mean).
            In training mode the codebooks are updated (statistics summed over ranks).
        """
        if mask_indices is None:
            raise ValueError("forward needs mask_indices [batch, M] (see spidrkit.data.masking)")
        feats = self.features(waveforms)
        b, t, d = feats.shape
        rows = torch.arange(b, device=feats.device)[:, None]
        x = self.projection_dropout(feats)
        x = x.clone()
        x[rows, mask_indices] = self.mask_embedding.to(x.dtype)

        with torch.no_grad():
            warm_all = self._warmup_targets(
                waveforms if target_waveforms is None else target_waveforms, t
            )
            targets: list[Tensor] = []
            codes: list[Tensor] = []
            if warm_all is None or not self.idle_teacher_in_warmup:
                teacher_in = (
                    feats.detach() if target_waveforms is None else self.features(target_waveforms)
                )
                _, teacher_results, _ = self.teacher(teacher_in, attention_mask)
                targets = [
                    _instance_norm(teacher_results[i])[rows, mask_indices].reshape(-1, d)
                    for i in self.codebook_layers
                ]
                codes = [cb.assign(tgt) for cb, tgt in zip(self.codebook_modules(), targets)]
            warm = None
            if warm_all is not None:
                warm = (
                    warm_all[0][rows, mask_indices].reshape(-1, warm_all[0].shape[-1]),
                    warm_all[1][rows, mask_indices].reshape(-1),
                )
            loss_codes = codes if warm is None else [warm[1]] * len(self.heads)

        final, results, _ = self.student(x, attention_mask, skip_final_norm=self._skip_final_norm())
        inputs = self.head_inputs(results, final)
        log_probs = [
            head(h[rows, mask_indices].reshape(-1, d)).float()
            for head, h in zip(self.heads, inputs)
        ]
        nll = torch.stack(
            [-lp.gather(-1, c[:, None]).squeeze(-1) for lp, c in zip(log_probs, loss_codes)]
        )
        per_frame_loss = nll.mean(0)
        if warm_all is not None and self.config.warmup_unmasked_weight > 0:
            per_frame_loss = per_frame_loss + self.config.warmup_unmasked_weight * (
                self._unmasked_loss(inputs, warm_all[1], rows, mask_indices, attention_mask)
            )
        if warm_all is not None and self.config.warmup_regression_weight > 0:
            per_frame_loss = per_frame_loss + self.config.warmup_regression_weight * (
                self._regression_loss(inputs, warm_all[0], attention_mask)
            )

        with torch.no_grad():
            v = self.config.codebook_size
            k = len(codes)  # 0 while the teacher idles
            each_ppl = (
                torch.stack([_perplexity(F.one_hot(c, v).float()) for c in codes])
                if codes
                else torch.zeros(0, device=per_frame_loss.device)
            )
            target_ppl = (
                each_ppl.mean() if warm is None else _perplexity(F.one_hot(warm[1], v).float())
            )
            pred_ppl = torch.stack([_perplexity(lp.exp()) for lp in log_probs]).mean()
            books = self.codebook_modules()[:k]
            stats = [cb.statistics(tgt, c) for cb, tgt, c in zip(books, targets, codes)]
            if warm is not None:
                books.append(self.warmup_codebook)
                stats.append(self.warmup_codebook.statistics(*warm))
            flat = torch.cat(
                [torch.stack([target_ppl, pred_ppl]), each_ppl]
                + [torch.cat([n[:, None], s], dim=1).flatten() for n, s in stats]
            )
            world = 1
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                world = dist.get_world_size()
                dist.all_reduce(flat)  # the one all-reduce of the step
            target_ppl, pred_ppl = flat[0] / world, flat[1] / world
            each_ppl = flat[2 : 2 + k] / world
            if self.training:
                offset = 2 + k
                for cb in books:
                    size = v * (cb.codebook.shape[1] + 1)
                    chunk = flat[offset : offset + size].view(v, -1)
                    cb.update(chunk[:, 0], chunk[:, 1:])
                    offset += size
        monitors = {"target_ppl": target_ppl, "pred_ppl": pred_ppl}
        monitors.update({f"target_ppl_{i}": each_ppl[i] for i in range(k)})
        return per_frame_loss, monitors

    def _warmup_targets(self, waveforms: Tensor, frames: int) -> tuple[Tensor, Tensor] | None:
        """(normalised MFCC frames [B, T, 39], their codes [B, T]) during the MFCC warm-up, else
        None. Codes come from ``warmup_codebook`` (updated from the masked frames only)."""
        if self.mfcc is None or int(self.current_step) >= self.config.warmup_target_steps:
            return None
        feats = self.mfcc(waveforms)[:, :frames]
        if (
            0 < feats.shape[1] < frames
        ):  # a frame short on odd extractor geometries: repeat the last
            feats = torch.cat([feats, feats[:, -1:].expand(-1, frames - feats.shape[1], -1)], 1)
        feats = _instance_norm(feats)
        b, t, dim = feats.shape
        return feats, self.warmup_codebook.assign(feats.reshape(-1, dim)).view(b, t)

    def _unmasked_loss(
        self,
        inputs: list[Tensor],
        codes: Tensor,
        rows: Tensor,
        mask_indices: Tensor,
        attention_mask: Tensor | None,
    ) -> Tensor:
        """Mean over heads and unmasked (non-padded) frames of -log p(MFCC code): a scalar."""
        keep = torch.ones_like(codes, dtype=torch.bool)
        keep[rows, mask_indices] = False
        if attention_mask is not None:
            keep &= attention_mask.reshape(codes.shape)
        if not bool(keep.any()):
            return codes.new_zeros((), dtype=torch.float32)
        nll = [
            -head(h[keep]).float().gather(-1, codes[keep][:, None]).squeeze(-1)
            for head, h in zip(self.heads, inputs)
        ]
        return torch.stack(nll).mean()

    def _regression_loss(
        self, inputs: list[Tensor], feats: Tensor, attention_mask: Tensor | None
    ) -> Tensor:
        """Mean over heads, frames (non-padded) and dimensions of the squared error between each
        head's linear regression of its input and the normalised MFCC frames ``feats`` [B, T, 39]."""
        keep = None if attention_mask is None else attention_mask.reshape(feats.shape[:2])
        errors = []
        for reg, h in zip(self.warmup_regressors, inputs):
            err = (reg(h).float() - feats.float()).pow(2).mean(-1)  # [B, T]
            errors.append(err.mean() if keep is None else err[keep].mean())
        return torch.stack(errors).mean()

    # -- teacher ---------------------------------------------------------------------------------

    @torch.no_grad()
    def update_ema(self, step: int) -> float:
        """Move the teacher toward the student after optimizer step ``step``; returns the decay."""
        self.current_step.fill_(step)
        decay = self.ema_decay(step)
        if not 0.0 < decay < 1.0:
            return decay
        excluded = tuple(self.config.ema_exclude_layers)
        student = dict(self.student.named_parameters())
        averaged_t: list[Tensor] = []
        averaged_s: list[Tensor] = []
        for name, p_t in self.teacher.named_parameters():
            p_s = student[name].detach()
            if name.split(".")[0] in excluded:
                p_t.copy_(p_s)
            else:
                averaged_t.append(p_t)
                averaged_s.append(p_s.to(p_t.dtype))
        # p_t <- p_t + (1 - d) (p_s - p_t), fused over all tensors
        torch._foreach_lerp_(averaged_t, averaged_s, 1.0 - decay)
        student_buffers = dict(self.student.named_buffers())
        for name, b_t in self.teacher.named_buffers():
            b_t.copy_(student_buffers[name])
        return decay

    def trainable_named_parameters(self, step: int) -> list[tuple[str, nn.Parameter]]:
        """Parameters the optimizer updates at ``step``: no teacher, no frozen extractor after
        ``freeze_step``, and (SpidR) not the student's last norm, which feeds no loss."""
        frozen = ["teacher."] + self._never_trained()
        if step >= self.config.freeze_step:
            frozen += ["feature_extractor.", "feature_projection."]
        return [(n, p) for n, p in self.named_parameters() if not n.startswith(tuple(frozen))]

    def _never_trained(self) -> list[str]:
        return []


class SpidR(_SelfDistillationModel):
    """SpidR (Poli et al. 2025): head k predicts codebook k from the same student layer."""

    heads_read_own_layer = True

    def __init__(self, cfg: SpidRConfig | None = None) -> None:
        super().__init__(cfg or SpidRConfig())

    def head_inputs(self, results: list[Tensor], final: Tensor) -> list[Tensor]:
        return [results[i] for i in self.codebook_layers]

    def _skip_final_norm(self) -> bool:
        return True

    def _never_trained(self) -> list[str]:
        if self.config.encoder_layer_norm_first:
            return ["student.layer_norm."]
        return [f"student.layers.{self.config.encoder_num_layers - 1}.final_layer_norm."]

    def ema_decay(self, step: int) -> float:
        cfg = self.config
        assert isinstance(cfg, SpidRConfig)
        decay = 1.0 - (1.0 - cfg.ema_start_decay) * math.exp(-step / cfg.ema_timescale)
        return 1.0 if 1.0 - decay <= cfg.ema_threshold else decay


class DinoSR(_SelfDistillationModel):
    """DinoSR (Liu et al. 2023): all K heads read the student's final output."""

    heads_read_own_layer = False

    def __init__(self, cfg: DinoSRConfig | None = None) -> None:
        super().__init__(cfg or DinoSRConfig())

    def head_inputs(self, results: list[Tensor], final: Tensor) -> list[Tensor]:
        return [final] * len(self.heads)

    def ema_decay(self, step: int) -> float:
        cfg = self.config
        if step >= cfg.freeze_step:
            return 1.0
        if step >= cfg.ema_final_step:
            return cfg.ema_final_decay
        frac = step / cfg.ema_final_step
        return cfg.ema_start_decay + (cfg.ema_final_decay - cfg.ema_start_decay) * frac


def build_model(model_type: str, cfg: SpidRConfig | DinoSRConfig | None = None) -> SpidR | DinoSR:
    """A fresh model of type "spidr" or "dinosr"."""
    if model_type == "spidr":
        return SpidR(
            cfg if cfg is None or isinstance(cfg, SpidRConfig) else _convert(cfg, SpidRConfig)
        )
    if model_type == "dinosr":
        return DinoSR(
            cfg if cfg is None or isinstance(cfg, DinoSRConfig) else _convert(cfg, DinoSRConfig)
        )
    raise ConfigError(f"model type {model_type!r}: expected 'spidr' or 'dinosr'")


def _convert(cfg, cls):  # type: ignore[no-untyped-def]
    fields = {f for f in cls.__dataclass_fields__}
    return cls(**{k: v for k, v in copy.copy(cfg).__dict__.items() if k in fields})


def model_type_of(model: nn.Module) -> str:
    """ "spidr" or "dinosr"."""
    return "dinosr" if isinstance(model, DinoSR) else "spidr"
