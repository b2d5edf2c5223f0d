"""A tiny MLP denoiser for 2-D points: the test network that proves the training loop and checkpoint format."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ToyMLPConfig:
    dim: int = 2  # data dimension
    hidden: int = 64
    depth: int = 3


class ToyMLP(nn.Module):
    """forward(x [B, dim], noise_level [B]) -> prediction [B, dim]; knows nothing about diffusion."""

    def __init__(self, cfg: ToyMLPConfig):
        super().__init__()
        layers, width = [], cfg.dim + 2
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.SiLU()]
            width = cfg.hidden
        layers.append(nn.Linear(width, cfg.dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x, noise_level):
        c = noise_level[:, None].to(x.dtype)
        return self.body(torch.cat([x, torch.sin(c), torch.cos(c)], dim=1))
