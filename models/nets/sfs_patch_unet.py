"""Patch UNet of Multistable SfS (Han, Zickler, Nishino, NeurIPS 2024), as in the reference code xrhan/mssfs.

A small "annotated-diffusion"-style UNet for 16x16 tiles: input = noisy normals x_t (3 ch) with the shading image
concatenated as channel 0, output = the predicted noise (3 ch). 2,573,075 parameters in the default config.
The network knows nothing about diffusion: `t` is just the integer step index fed to a sinusoidal embedding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PatchUNetConfig:
    dim: int = 16  # base width; also the width of the sinusoidal time features
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    channels: int = 3  # noisy normal channels
    cond_channels: int = 1  # shading image channels (concatenated first)
    out_channels: int = 3
    resnet_groups: int = 4
    time_mult: int = 8  # time-embedding width = time_mult * dim (128 for dim 16)
    attn_heads: int = 4
    attn_dim_head: int = 32


class WSConv2d(nn.Conv2d):
    """Conv with weight standardization per output filter (Qiao et al. 2019): w <- (w - mean) / sqrt(var + eps),
    biased var."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) * torch.rsqrt(var + eps)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Block(nn.Module):
    """WS-conv3x3 -> GroupNorm -> optional FiLM h*(1+scale)+shift -> SiLU."""

    def __init__(self, dim_in: int, dim_out: int, groups: int):
        super().__init__()
        self.proj = WSConv2d(dim_in, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)

    def forward(self, x, scale_shift=None):
        x = self.norm(self.proj(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ResBlock(nn.Module):
    """Two Blocks, FiLM from the time embedding on the first; 1x1 skip when widths differ."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, groups: int):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out * 2))
        self.block1 = Block(dim_in, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups)
        self.skip = nn.Conv2d(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x, temb):
        scale, shift = self.time_mlp(temb)[:, :, None, None].chunk(2, dim=1)  # first half = scale
        h = self.block1(x, (scale, shift))
        h = self.block2(h)
        return h + self.skip(x)


class LinearAttention(nn.Module):
    """Linear attention: q softmaxed over features, k over positions, context k v^T per head; out conv + GN(1)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class Attention(nn.Module):
    """Standard softmax multi-head self-attention over all positions (middle block only)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        sim = torch.einsum("bhdi,bhdj->bhij", q * self.scale, k)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()  # stabilized softmax over keys
        out = torch.einsum("bhij,bhdj->bhid", sim.softmax(dim=-1), v)
        return self.to_out(out.permute(0, 1, 3, 2).reshape(b, -1, h, w))


class PreNormResidual(nn.Module):
    """x + fn(GroupNorm(1, dim)(x))."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.GroupNorm(1, dim), fn

    def forward(self, x):
        return x + self.fn(self.norm(x))


class Downsample(nn.Module):
    """Space-to-depth 2x2 ((c, p1, p2) channel order) then a 1x1 conv 4*in -> out; no strided conv or pooling."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in * 4, dim_out, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def sinusoidal_embedding(t: torch.Tensor, width: int) -> torch.Tensor:
    """[B] step indices -> [B, width] features [sin(t f_k), cos(t f_k)], f_k = exp(-k ln(1e4) / (width/2 - 1))."""
    half = width // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class PatchUNet(nn.Module):
    """eps = PatchUNet(x_t [B,3,16,16], t [B], cond [B,1,16,16]); the image is channel 0 of the network input."""

    def __init__(self, cfg: PatchUNetConfig | None = None):
        super().__init__()
        cfg = cfg or PatchUNetConfig()
        self.cfg = cfg
        dim, groups = cfg.dim, cfg.resnet_groups
        time_dim = cfg.time_mult * dim
        dims = [dim] + [dim * m for m in cfg.dim_mults]
        in_out = list(zip(dims[:-1], dims[1:]))

        def res(a, b):
            return ResBlock(a, b, time_dim, groups)

        def lin_attn(d):
            return PreNormResidual(d, LinearAttention(d, cfg.attn_heads, cfg.attn_dim_head))

        self.init_conv = nn.Conv2d(cfg.cond_channels + cfg.channels, dim, 1)
        self.time_mlp = nn.Sequential(nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))

        self.downs = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            down = Downsample(d_in, d_out) if not last else nn.Conv2d(d_in, d_out, 3, padding=1)
            self.downs.append(nn.ModuleList([res(d_in, d_in), res(d_in, d_in), lin_attn(d_in), down]))

        mid = dims[-1]
        self.mid_block1 = res(mid, mid)
        self.mid_attn = PreNormResidual(mid, Attention(mid, cfg.attn_heads, cfg.attn_dim_head))
        self.mid_block2 = res(mid, mid)

        self.ups = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(reversed(in_out)):
            last = i == len(in_out) - 1
            up = Upsample(d_out, d_in) if not last else nn.Conv2d(d_out, d_in, 3, padding=1)
            self.ups.append(nn.ModuleList([res(d_out + d_in, d_out), res(d_out + d_in, d_out), lin_attn(d_out), up]))

        self.final_res_block = res(dim * 2, dim)
        self.final_conv = nn.Conv2d(dim, cfg.out_channels, 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n_down = len(self.downs) - 1
        if x_t.shape[-1] % (2 ** n_down) or x_t.shape[-2] % (2 ** n_down):
            raise ValueError(f"tile size {tuple(x_t.shape[-2:])} must be divisible by {2 ** n_down}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        x = self.init_conv(torch.cat([cond.to(x_t.dtype), x_t], dim=1))
        r = x.clone()
        temb = self.time_mlp(sinusoidal_embedding(t, self.cfg.dim).to(x.dtype))

        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, temb)
            skips.append(x)
            x = attn(block2(x, temb))
            skips.append(x)
            x = down(x)

        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)

        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), temb)  # post-attention skip first (LIFO)
            x = block2(torch.cat([x, skips.pop()], dim=1), temb)
            x = up(attn(x))

        x = self.final_res_block(torch.cat([x, r], dim=1), temb)
        return self.final_conv(x)

    def stage_param_counts(self) -> dict[str, int]:
        """Parameter counts per stage in the network's stage order (for checks)."""
        def count(*mods):
            return sum(p.numel() for m in mods for p in m.parameters())

        out = {"init": count(self.init_conv), "time_mlp": count(self.time_mlp)}
        out.update({f"down{i}": count(m) for i, m in enumerate(self.downs)})
        out.update({"mid_block1": count(self.mid_block1), "mid_attn": count(self.mid_attn),
                    "mid_block2": count(self.mid_block2)})
        out.update({f"up{i}": count(m) for i, m in enumerate(self.ups)})
        out.update({"out_res": count(self.final_res_block), "out_conv": count(self.final_conv)})
        return out


__all__ = ["PatchUNetConfig", "PatchUNet", "sinusoidal_embedding"]
