"""Pretraining engine: distributed setup, LR schedules, checkpoints, metrics, and the SpidR trainer.

The first four modules are model-agnostic and reused by the unit-LM trainer (``spidrkit lm-train``):
``distributed`` (DistInfo, init_distributed), ``schedule`` (TriStage/Cosine/Constant),
``checkpoint`` (atomic save, pruning, RNG, find latest), ``monitor`` (JSONL/TensorBoard/W&B).
"""
