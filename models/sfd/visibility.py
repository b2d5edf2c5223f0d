"""SfD's visibility field (Sec. 3.4/4.1): V(x_world, w) -> logits (occluded, visible) for shadows between the copies.
It lives in world space because shadows depend on the whole pile. SIREN layers (Sitzmann et al., NeurIPS 2020) with
a learnable frequency w0 = 30 + 15 a (a starts at 1) and a phase per layer, weights U(+-sqrt(6 / fan_in) / 25)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.sfd.fields import PosEnc


@dataclass
class VisConfig:
    hidden: int = 256
    layers: int = 4
    siren: bool = True
    dirs_per_point: int = 4      # secondary directions per surface point (cosine cone below)
    max_sin: float = 0.95        # polar angle asin(u), u ~ U[0, max_sin): within ~71.8 deg of the normal
    occluded_opacity: float = 0.95


class SineLayer(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        bound = math.sqrt(6 / d_in) / 25
        nn.init.uniform_(self.lin.weight, -bound, bound)
        nn.init.uniform_(self.lin.bias, -bound, bound)
        self.a = nn.Parameter(torch.ones(1))
        self.phase = nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        return torch.sin((30 + 15 * self.a) * self.lin(x) + self.phase.clamp(-math.pi, math.pi))


class VisibilityNet(nn.Module):
    def __init__(self, cfg: VisConfig):
        super().__init__()
        if cfg.siren:
            self.pe_x, self.pe_w = None, None
            layers, d = [], 6
            for _ in range(cfg.layers):
                layers.append(SineLayer(d, cfg.hidden))
                d = cfg.hidden
        else:  # the original's ReLU alternative: PE10(x) + PE4(w)
            self.pe_x, self.pe_w = PosEnc(10), PosEnc(4)
            layers, d = [], self.pe_x.out_dim + self.pe_w.out_dim
            for _ in range(cfg.layers):
                layers += [nn.Linear(d, cfg.hidden), nn.ReLU()]
                d = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, 2)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.int64))  # 1 once this stage has trained

    def forward(self, x, w):
        if self.pe_x is not None:
            x, w = self.pe_x(x), self.pe_w(w)
        return self.head(self.body(torch.cat([x, w], -1)))

    def visible_prob(self, x, w):
        return torch.softmax(self.forward(x, w), -1)[..., 1]


def cone_directions(normal, u_az, u_pol, max_sin: float):
    """Directions around unit normals (P, 3): azimuth 2 pi u_az, polar angle asin(max_sin u_pol); u_* (P, D)."""
    helper = torch.where(normal[:, 2:3].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0], dtype=normal.dtype),
                         torch.tensor([1.0, 0.0, 0.0], dtype=normal.dtype))
    t1 = torch.nn.functional.normalize(torch.cross(helper, normal, dim=-1), dim=-1)
    t2 = torch.cross(normal, t1, dim=-1)
    sin = max_sin * u_pol
    cos = (1 - sin ** 2).sqrt()
    phi = 2 * math.pi * u_az
    return ((sin * phi.cos())[..., None] * t1[:, None] + (sin * phi.sin())[..., None] * t2[:, None]
            + cos[..., None] * normal[:, None])
