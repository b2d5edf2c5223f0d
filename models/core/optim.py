"""Optimizer and learning-rate schedule shared by every system."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, optim, total: int) -> float:
    """LR of optimizer step `step` (0-based): linear warm-up to optim.lr, then constant or cosine decay to 0 at `total`."""
    if optim.warmup_steps and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        span = max(1, total - optim.warmup_steps)
        return optim.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - optim.warmup_steps) / span)))
    return optim.lr


def build_optimizer(system, optim) -> torch.optim.Optimizer:
    """AdamW over the system's trainable parameter groups only (frozen parts get no optimizer state)."""
    groups = system.param_groups(optim.lr)
    if not any(len(g["params"]) for g in groups):
        raise ValueError(f"system '{system.name}' has no trainable parameters")
    return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                             eps=optim.eps, foreach=True)
