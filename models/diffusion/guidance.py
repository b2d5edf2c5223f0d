"""Classifier-free guidance (Ho & Salimans 2022) and the label dropout that trains its unconditional branch."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cfg_combine", "drop_labels"]


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float, eps_channels: int | None = None) -> Tensor:
    """eps = eps_u + s (eps_c - eps_u) on the first `eps_channels` channels (all when None); the remaining
    channels (e.g. a learned variance) come from the conditional branch. scale 1 returns `cond` exactly."""
    if scale == 1.0:
        return cond
    c = cond.shape[1] if eps_channels is None else eps_channels
    guided = uncond[:, :c] + scale * (cond[:, :c] - uncond[:, :c])
    return torch.cat([guided, cond[:, c:]], 1)


def drop_labels(labels: Tensor, p: float, null_label: int, u: Tensor) -> Tensor:
    """Replace each label by `null_label` where its uniform draw u < p (u from the per-sample generators)."""
    return torch.where(u.to(labels.device) < p, torch.full_like(labels, null_label), labels)
