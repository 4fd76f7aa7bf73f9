"""Learning-rate schedule: linear warm-up then cosine decay to ``min_ratio`` of the peak (AdamW's lr).

The official recipe is cosine without warm-up over 50 epochs; training from scratch in a few thousand
steps is steadier with a short warm-up. A LambdaLR keeps the state a plain step count (resumable)."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, total: int, warmup: int, min_ratio: float = 0.02):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, min_ratio))
