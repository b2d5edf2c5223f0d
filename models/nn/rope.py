"""Axial rotary position embedding (RoPE) on adjacent channel pairs (Su et al. 2021, RoFormer; axial as in DFoT's UViT3D).

Each pair (x[2i], x[2i+1]) = (a, b) is rotated by an angle φ: (a, b) -> (a cosφ - b sinφ, b cosφ + a sinφ).
The head dim is cut into consecutive per-axis chunks (`split_head_dim`); a chunk of width d_a uses the frequencies
theta**(-2i/d_a), i < d_a/2, and φ = position along that axis * frequency. With theta = 10000 this matches the
interleaved `rotate_half` convention of rotary-embedding-torch used by the reference code.

Typical use for a [B, H, W, heads, d] grid (heads-last, as `models.nn.attention` expects):
    angles = grid_rope_angles((H, W), d, device=x.device)           # [H*W, d/2]
    q = apply_rope(q.reshape(B, H * W, heads, d), angles).reshape(q.shape)
"""
from __future__ import annotations

import weakref
from typing import Sequence

import torch
from torch import Tensor

THETA = 10000.0
_CACHE_SIZE = 64  # bounded: a network sees a handful of token grids
_GRID_ANGLES: dict[tuple, Tensor] = {}
_COS_SIN: dict[tuple, tuple] = {}


def split_head_dim(d: int, n_axes: int) -> list[int]:
    """Per-axis channel widths (even, summing to d) for axial RoPE over `n_axes` axes.

    1 axis: [d]. 2 axes: [d/2, d/2] (d a multiple of 4). 3 axes (T, H, W): with p = d/2 pairs, equal thirds when
    p % 3 == 0; p % 3 == 1 gives T the extra pair; p % 3 == 2 gives H and W one extra pair each.
    Examples: 64 -> [20, 22, 22], 128 -> [44, 42, 42].
    """
    if n_axes not in (1, 2, 3):
        raise ValueError(f"n_axes must be 1, 2 or 3, got {n_axes}")
    if d <= 0 or d % 2:
        raise ValueError(f"RoPE needs a positive even head dim, got {d}")
    if n_axes == 1:
        return [d]
    if n_axes == 2:
        if d % 4:
            raise ValueError(f"2-D RoPE needs a head dim that is a multiple of 4, got {d}")
        return [d // 2, d // 2]
    pairs = d // 2
    base, rem = divmod(pairs, 3)
    if base == 0:
        raise ValueError(f"3-D RoPE needs a head dim of at least 6, got {d}")
    split = {0: (base, base, base), 1: (base + 1, base, base), 2: (base, base + 1, base + 1)}[rem]
    return [2 * p for p in split]


def grid_positions(*sizes: int, device=None) -> Tensor:
    """Integer coordinates [prod(sizes), len(sizes)] of a grid, tokens in row-major order (last axis fastest)."""
    if not sizes or any(int(s) < 1 for s in sizes):
        raise ValueError(f"grid sizes must be positive, got {sizes}")
    axes = [torch.arange(int(s), device=device) for s in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(sizes))


def rope_angles(positions: Tensor, axis_dims: Sequence[int], theta: float = THETA) -> Tensor:
    """Rotation angles [N, sum(axis_dims) // 2] (float32) for positions [N, n_axes].

    Axis a contributes d_a/2 angles positions[:, a] * theta**(-2i/d_a), placed in axis order.
    """
    if positions.dim() != 2 or positions.shape[1] != len(axis_dims):
        raise ValueError(f"positions must be [N, {len(axis_dims)}], got {tuple(positions.shape)}")
    if any(w <= 0 or w % 2 for w in axis_dims):
        raise ValueError(f"every axis width must be positive and even, got {list(axis_dims)}")
    pos = positions.to(torch.float64)  # float64 keeps large position * frequency products exact before rounding
    chunks = []
    for a, width in enumerate(axis_dims):
        freqs = theta ** (-torch.arange(0, width, 2, dtype=torch.float64, device=pos.device) / width)
        chunks.append(pos[:, a, None] * freqs)
    return torch.cat(chunks, dim=-1).to(torch.float32)


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def grid_rope_angles(sizes: Sequence[int], head_dim: int, theta: float = THETA, device=None) -> Tensor:
    """Angles [prod(sizes), head_dim // 2] for a row-major grid, with the head dim split by `split_head_dim`.

    Cached per (sizes, head_dim, theta, device): repeated calls return the same tensor (treat it as read-only), so
    `apply_rope` also reuses its cos/sin tables.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (tuple(int(s) for s in sizes), int(head_dim), float(theta), device, torch.is_inference_mode_enabled())
    table = _GRID_ANGLES.get(key)
    if table is None or torch.compiler.is_compiling():
        table = rope_angles(grid_positions(*sizes, device=device), split_head_dim(head_dim, len(sizes)), theta)
        if not torch.compiler.is_compiling():
            _remember(_GRID_ANGLES, key, table)
    return table


def rope_cos_sin(angles: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(cos, sin) of `angles` in `dtype`, computed once per angles tensor (same object, not modified since) and dtype.

    Inference-mode tables are kept apart (they cannot enter autograd); under torch.compile nothing is cached.
    """
    if angles.requires_grad or torch.compiler.is_compiling():
        return angles.cos().to(dtype), angles.sin().to(dtype)
    key = (id(angles), dtype, torch.is_inference_mode_enabled())
    hit = _COS_SIN.get(key)
    if hit is not None and hit[0]() is angles and hit[1] == angles._version:
        return hit[2], hit[3]
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    _remember(_COS_SIN, key, (weakref.ref(angles), angles._version, cos, sin))
    return cos, sin


def apply_rope(x: Tensor, angles: Tensor, heads_last: bool = True) -> Tensor:
    """Rotate adjacent channel pairs of x by `angles`.

    x: heads-last [..., N, heads, d] (default, the attention layout) or, with heads_last=False, [..., N, d].
    angles: [N, P] (or any shape broadcasting against x's token dims) with 2P <= d; channels from 2P on pass
    through unrotated. The rotation is computed in at least fp32 and returned in x's dtype.
    """
    n_pairs = angles.shape[-1]
    if 2 * n_pairs > x.shape[-1]:
        raise ValueError(f"angles rotate {2 * n_pairs} channels but x has only {x.shape[-1]}")
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    rot, rest = work[..., : 2 * n_pairs], work[..., 2 * n_pairs:]
    pairs = rot.unflatten(-1, (n_pairs, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = rope_cos_sin(angles, work.dtype)
    if heads_last:
        cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over heads
    rotated = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    out = torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated
    return out.to(x.dtype)


__all__ = ["THETA", "split_head_dim", "grid_positions", "rope_angles", "grid_rope_angles", "rope_cos_sin",
           "apply_rope"]
