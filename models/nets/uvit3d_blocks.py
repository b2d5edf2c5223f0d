"""Building blocks of UViT3D / UViT3D-Mixer (DiffMotion, Han, Nishino & Zickler, NeurIPS 2025; reference code
xrhan/diffmotion).

Every block works on frames flattened into the batch: x is [B*T, C, H, W] and the per-frame noise embedding is
[B*T, E]. Frames interact only in `TemporalAttnBlock` (per pixel, over T) and `TransformerBlock` (global over T*H*W).
Submodule names follow the original state dict so that original checkpoints load by identity.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.nn.attention import neighborhood_attention
from models.nn.rope import apply_rope, grid_rope_angles

_ANGLES: dict = {}


def rope_table(sizes: tuple[int, ...], head_dim: int, device) -> torch.Tensor:
    """RoPE angles [prod(sizes), head_dim/2] for the integer grid of the live shape, axes split by `split_head_dim`.

    Computed from the actual (T, H, W) at run time (the original built 256-only tables); cached per shape.
    """
    key = (tuple(sizes), head_dim, str(device))
    table = _ANGLES.get(key)
    if table is None:
        table = grid_rope_angles(sizes, head_dim, device=device)
        if len(_ANGLES) > 64:  # bounded: only a handful of shapes occur in practice
            _ANGLES.clear()
        _ANGLES[key] = table
    return table


def zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    if channels % groups:
        raise ValueError(f"GroupNorm: {channels} channels are not divisible into {groups} groups (set net.gn_groups)")
    return nn.GroupNorm(groups, channels, eps=1e-6)


class RMSNorm(nn.Module):
    """RMS norm over the last dim with a learned weight, computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def film_conv(layer: nn.Conv2d, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[scale, shift] from a 1x1-conv FiLM projection of emb [N, E]; each [N, C, 1, 1]."""
    return layer(emb[:, :, None, None]).chunk(2, dim=1)


# ----------------------------------------------------------------------------------------------------------------------
# Noise-level embedding


class FourierFeatures(nn.Module):
    """y = sqrt(2) cos(c * freqs + phases); freqs = 2*pi*N(0,1), phases = 2*pi*U(0,1), persistent buffers."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(channels))
        self.register_buffer("phases", 2 * math.pi * torch.rand(channels))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return math.sqrt(2.0) * torch.cos(c.float()[..., None] * self.freqs.float() + self.phases.float())


class EmbeddingMLP(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.linear_1 = nn.Linear(c_in, c_out)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class NoiseLevelEmbedding(nn.Module):
    """c_noise [B, T] -> e [B, T, E]; no activation after the MLP (every block reads e directly)."""

    def __init__(self, fourier_channels: int, emb_channels: int):
        super().__init__()
        self.timesteps = FourierFeatures(fourier_channels)
        self.embedding = EmbeddingMLP(fourier_channels, emb_channels)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        feats = self.timesteps(c_noise)
        return self.embedding(feats.to(self.embedding.linear_1.weight.dtype))


class PatchEmbed(nn.Module):
    def __init__(self, c_in: int, c_out: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, c_out, patch, stride=patch)

    def forward(self, x):
        return self.proj(x)


class PatchUnembed(nn.Module):
    def __init__(self, c_in: int, c_out: int, patch: int):
        super().__init__()
        self.proj = zero_(nn.ConvTranspose2d(c_in, c_out, patch, stride=patch))

    def forward(self, x):
        return self.proj(x)


class Downsample(nn.Module):
    """2x2 average pool, then 3x3 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return self.conv(F.avg_pool2d(x, 2))


class Upsample(nn.Module):
    """3x3 conv, then 2x nearest-neighbour resize."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")


# ----------------------------------------------------------------------------------------------------------------------
# Per-frame 2-D blocks


class ResBlock(nn.Module):
    """out = x + Conv0(SiLU(GN(Conv(SiLU(GN(x)))) * (1 + s) + b))."""

    def __init__(self, c: int, emb: int, groups: int, dropout: float = 0.0):
        super().__init__()
        if dropout:
            raise ValueError("ResBlock dropout must be 0 (the original has none in use)")
        self.in_layers = nn.Sequential(group_norm(c, groups), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))
        self.emb_layer = nn.Conv2d(emb, 2 * c, 1)
        self.out_norm = group_norm(c, groups)
        self.out_rest = nn.Sequential(nn.SiLU(), zero_(nn.Conv2d(c, c, 3, padding=1)))

    def forward(self, x, emb, frames):
        h = self.in_layers(x)
        s, b = film_conv(self.emb_layer, emb)
        return x + self.out_rest(self.out_norm(h) * (1 + s) + b)


class MixerMLP(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.act = nn.GELU()
        self.fc2 = zero_(nn.Linear(hidden, c))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ChannelMixer(nn.Module):
    """Per-pixel channel MLP with FiLM on a non-affine LayerNorm."""

    def __init__(self, c: int, emb: int, expansion: int = 3):
        super().__init__()
        self.emb_layer = nn.Linear(emb, 2 * c)
        self.mlp = MixerMLP(c, expansion * c)

    def forward(self, x, emb, frames):
        u = x.permute(0, 2, 3, 1)
        h = F.layer_norm(u, (u.shape[-1],), eps=1e-5)
        s, b = self.emb_layer(emb)[:, None, None, :].chunk(2, dim=-1)
        return x + self.mlp(h * (1 + s) + b).permute(0, 3, 1, 2)


class FiLMGroupNorm(nn.Module):
    def __init__(self, c: int, emb: int, groups: int):
        super().__init__()
        self.emb_layer = nn.Conv2d(emb, 2 * c, 1)
        self.norm = group_norm(c, groups)

    def forward(self, x, emb):
        s, b = film_conv(self.emb_layer, emb)
        return self.norm(x) * (1 + s) + b


class NeighborhoodSelfAttention(nn.Module):
    """x + W_o NA2D(RoPE(qknorm(W_qkv FiLM(GN(x))))) per frame, window k x k (shifted inward at borders)."""

    def __init__(self, c: int, emb: int, heads: int, groups: int, kernel: int = 7, dilation: int = 1,
                 backend: str = "auto"):
        super().__init__()
        self.heads, self.head_dim = heads, c // heads
        self.kernel, self.dilation, self.backend = kernel, dilation, backend
        self.norm = FiLMGroupNorm(c, emb, groups)
        self.qkv_proj = nn.Linear(c, 3 * c, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.out_proj = zero_(nn.Linear(c, c, bias=False))

    def forward(self, x, emb):
        n, c, hgt, wid = x.shape
        a = self.norm(x, emb).permute(0, 2, 3, 1)
        q, k, v = self.qkv_proj(a).view(n, hgt * wid, 3, self.heads, self.head_dim).unbind(2)
        angles = rope_table((hgt, wid), self.head_dim, x.device)
        q, k = apply_rope(self.q_norm(q), angles), apply_rope(self.k_norm(k), angles)
        shape = (n, hgt, wid, self.heads, self.head_dim)
        o = neighborhood_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape).contiguous(),
                                   kernel_size=self.kernel, dilation=self.dilation, backend=self.backend)
        return x + self.out_proj(o.reshape(n, hgt, wid, c)).permute(0, 3, 1, 2)


class NALayer(nn.Module):
    """A ResBlock whose first conv is neighborhood attention; note the outer residual is x, not the attention output."""

    def __init__(self, c: int, emb: int, heads: int, groups: int, kernel: int = 7, dilation: int = 1,
                 backend: str = "auto"):
        super().__init__()
        self.self_attn = NeighborhoodSelfAttention(c, emb, heads, groups, kernel, dilation, backend)
        self.emb_layer = nn.Conv2d(emb, 2 * c, 1)
        self.out_norm = group_norm(c, groups)
        self.out_rest = nn.Sequential(nn.SiLU(), zero_(nn.Conv2d(c, c, 3, padding=1)))

    def forward(self, x, emb, frames):
        h = self.self_attn(x, emb)
        s, b = film_conv(self.emb_layer, emb)
        return x + self.out_rest(self.out_norm(h) * (1 + s) + b)


# ----------------------------------------------------------------------------------------------------------------------
# Blocks that mix frames


class FiLMRMSNorm(nn.Module):
    def __init__(self, c: int, emb: int):
        super().__init__()
        self.emb_layer = nn.Linear(emb, 2 * c)
        self.norm = RMSNorm(c)

    def forward(self, x, emb):
        s, b = self.emb_layer(emb).chunk(2, dim=-1)
        return self.norm(x) * (1 + s) + b


class TemporalAttention(nn.Module):
    """Attention over the T frames at each pixel, 1-D RoPE over the frame index on the full head dim."""

    def __init__(self, c: int, emb: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, c // heads
        self.norm = FiLMRMSNorm(c, emb)
        self.proj = nn.Linear(c, 3 * c, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.out = zero_(nn.Linear(c, c, bias=False))

    def attend(self, u, emb):
        """u [B, P, T, C], emb [B, 1, T, E] -> attention output A [B, P, T, C] (before the output projection)."""
        bsz, pix, t, c = u.shape
        q, k, v = self.proj(self.norm(u, emb)).view(bsz, pix, t, 3, self.heads, self.head_dim).unbind(3)
        angles = rope_table((t,), self.head_dim, u.device)
        q, k = apply_rope(self.q_norm(q), angles), apply_rope(self.k_norm(k), angles)
        a = F.scaled_dot_product_attention(q.transpose(-2, -3), k.transpose(-2, -3), v.transpose(-2, -3))
        return a.transpose(-2, -3).reshape(bsz, pix, t, c)


class TemporalAttnBlock(nn.Module):
    """Faithful: out = A + W_o A (no identity skip from x, as the original). `residual=True`: out = x + W_o A."""

    def __init__(self, c: int, emb: int, heads: int, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.attn_block = TemporalAttention(c, emb, heads)

    def forward(self, x, emb, frames):
        bt, c, hgt, wid = x.shape
        bsz = bt // frames
        u = x.view(bsz, frames, c, hgt * wid).permute(0, 3, 1, 2)
        a = self.attn_block.attend(u, emb.view(bsz, 1, frames, -1))
        y = (u if self.residual else a) + self.attn_block.out(a)
        return y.permute(0, 2, 3, 1).reshape(bt, c, hgt, wid)


class TransformerBlock(nn.Module):
    """Parallel attention + MLP block with QK-norm and 3-D RoPE; global attention over all T*H*W tokens of a clip."""

    def __init__(self, c: int, emb: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.heads, self.head_dim, self.mlp_dim = heads, c // heads, mlp_ratio * c
        self.norm = FiLMRMSNorm(c, emb)
        self.fused_attn_mlp_proj = nn.Linear(c, 3 * c + self.mlp_dim)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.attn_out = zero_(nn.Linear(c, c))
        self.mlp_out = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_(nn.Linear(self.mlp_dim, c)))

    def forward(self, x, emb, frames):
        bt, c, hgt, wid = x.shape
        bsz, n = bt // frames, frames * hgt * wid
        h = x.view(bsz, frames, c, hgt * wid).transpose(2, 3)  # [B, T, HW, C], tokens ordered (t, h, w)
        f = self.fused_attn_mlp_proj(self.norm(h, emb.view(bsz, frames, 1, -1)).reshape(bsz, n, c))
        qkv, m = f.split([3 * c, self.mlp_dim], dim=-1)
        q, k, v = qkv.view(bsz, n, 3, self.heads, self.head_dim).unbind(2)
        angles = rope_table((frames, hgt, wid), self.head_dim, x.device)
        q, k = apply_rope(self.q_norm(q), angles), apply_rope(self.k_norm(k), angles)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        y = h.reshape(bsz, n, c) + self.attn_out(a.transpose(1, 2).reshape(bsz, n, c)) + self.mlp_out(m)
        return y.view(bsz, frames, hgt * wid, c).transpose(2, 3).reshape(bt, c, hgt, wid)
