"""A pixel-space DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers") for 64x64 object images:
adaLN-Zero blocks (Sec. 3.2), a fixed 2-D sin-cos position embedding (MAE, He et al. 2022), a class table with one
extra null row for classifier-free guidance, and an optional condition image concatenated to the input channels.
No cross-attention: nothing would feed it."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class OmagesDiTConfig:
    res: int = 64
    patch: int = 1
    hidden: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    in_ch: int = 4
    cond_ch: int = 0  # condition image channels concatenated to the input (G2M)
    out_ch: int = 4
    learn_sigma: bool = True  # out_ch more channels: the learned-range variance interpolation v
    num_classes: int = 63  # + 1 null row (index num_classes)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE 2-D sin-cos embedding [grid*grid, dim]: half the channels encode the row, half the column."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], 1)
    gy, gx = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    return torch.from_numpy(np.concatenate([one_d(dim // 2, gy), one_d(dim // 2, gx)], 1)).float()


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 1e4) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps: cos half then sin half (DDPM / ADM convention)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, -1)
        B, N, D = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), sh1, sc1)).view(B, N, 3, self.heads, D // self.heads).permute(
            2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
        x = x + g1[:, None] * self.proj(a)
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class OmagesDiT(nn.Module):
    def __init__(self, cfg: OmagesDiTConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.res % cfg.patch or cfg.hidden % cfg.heads or cfg.hidden % 4:
            raise ValueError(f"bad DiT shape: res {cfg.res}, patch {cfg.patch}, hidden {cfg.hidden}, heads {cfg.heads}")
        self.grid = cfg.res // cfg.patch
        self.out_total = cfg.out_ch * (2 if cfg.learn_sigma else 1)
        self.x_embed = nn.Conv2d(cfg.in_ch + cfg.cond_ch, cfg.hidden, cfg.patch, cfg.patch)
        self.register_buffer("pos", sincos_2d(cfg.hidden, self.grid)[None], persistent=False)
        self.t_mlp = nn.Sequential(nn.Linear(256, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.y_embed = nn.Embedding(cfg.num_classes + 1, cfg.hidden)
        self.blocks = nn.ModuleList(DiTBlock(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_f = nn.LayerNorm(cfg.hidden, elementwise_affine=False, eps=1e-6)
        self.ada_f = nn.Sequential(nn.SiLU(), nn.Linear(cfg.hidden, 2 * cfg.hidden))
        self.out = nn.Linear(cfg.hidden, cfg.patch ** 2 * self.out_total)
        self.grad_ckpt = False
        self.reset_parameters()

    @property
    def null_label(self) -> int:
        return self.cfg.num_classes

    def reset_parameters(self):
        """DiT init: xavier Linear (patch conv as a Linear), zero biases, N(0, .02) tables and t-MLP, zero adaLN
        outputs and zero output layer, so the network outputs exactly 0 at init (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.x_embed.weight.view(self.x_embed.weight.shape[0], -1))
        nn.init.zeros_(self.x_embed.bias)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        for lin in (self.t_mlp[0], self.t_mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        for ada in [b.ada for b in self.blocks] + [self.ada_f]:
            nn.init.zeros_(ada[-1].weight)
            nn.init.zeros_(ada[-1].bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def set_gradient_checkpointing(self, on: bool):
        self.grad_ckpt = bool(on)

    def forward(self, x, t, y, cond=None):
        """x [B, in_ch, R, R], t [B] timestep indices, y [B] labels (null = num_classes), cond [B, cond_ch, R, R]."""
        if self.cfg.cond_ch:
            x = torch.cat([x, cond], 1)
        h = self.x_embed(x).flatten(2).transpose(1, 2) + self.pos.to(x.dtype)
        c = self.t_mlp(timestep_embedding(t)) + self.y_embed(y)
        for blk in self.blocks:
            if self.grad_ckpt and self.training:
                h = torch.utils.checkpoint.checkpoint(blk, h, c, use_reentrant=False)
            else:
                h = blk(h, c)
        sh, sc = self.ada_f(c).chunk(2, -1)
        h = self.out(modulate(self.norm_f(h), sh, sc))
        B, p, g = h.shape[0], self.cfg.patch, self.grid
        return h.view(B, g, g, p, p, self.out_total).permute(0, 5, 1, 3, 2, 4).reshape(B, self.out_total, g * p, g * p)
