"""Pretraining engine: distributed setup, LR schedules, checkpoints, metrics, and the SpidR trainer.

``engine`` (precision, DDP/compile wrap, optimizer step, checkpoint state with every rank's RNG,
world-size check) and the modules under it are model-agnostic and shared with the unit-LM trainer
(``spidrkit lm-train``): ``optim`` (AdamW, schedules, clipping), ``distributed`` (DistInfo,
init_distributed), ``schedule`` (TriStage/Cosine/Constant), ``checkpoint`` (atomic save, pruning,
RNG, find latest), ``rundir`` (lock, overwrite, metrics truncation), ``monitor`` (JSONL/TensorBoard/W&B).
"""
