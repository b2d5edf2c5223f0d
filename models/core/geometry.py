"""Normal-map geometry shared by every system: depth flip, normals from a height field, angular error.

Frame: x right, y up, z towards the viewer; normal maps are [..., 3, H, W] (channel axis third from the end) and
vectors such as lights are [..., 3]. Heights are in the units of `spacing` per pixel; rows grow downwards, so +y is
towards decreasing row index.
"""
from __future__ import annotations

import math

import numpy as np
import torch

DEG = 180.0 / math.pi


def flip_normals(n, dim: int | None = None):
    """Depth reversal (n_x, n_y, n_z) -> (-n_x, -n_y, n_z): the convex/concave twin, I(n, l) = I(flip n, flip l).

    Works on normal maps [..., 3, H, W] and vectors [..., 3] (lights), torch tensors or numpy arrays; `dim` is the
    channel axis (default -3 when that axis has 3 entries, else -1). Returns the same type.
    """
    if dim is None:
        dim = -3 if n.ndim >= 3 and n.shape[-3] == 3 else -1
    if n.shape[dim] != 3:
        raise ValueError(f"flip_normals: axis {dim} has {n.shape[dim]} entries, expected 3 (shape {tuple(n.shape)})")
    shape = [1] * n.ndim
    shape[dim] = 3
    if torch.is_tensor(n):
        return n * torch.tensor([-1.0, -1.0, 1.0], dtype=n.dtype, device=n.device).reshape(shape)
    n = np.asarray(n)
    return n * np.array([-1.0, -1.0, 1.0], dtype=n.dtype if n.dtype.kind == "f" else np.float64).reshape(shape)


def normals_from_height(z: torch.Tensor, spacing: float = 1.0) -> torch.Tensor:
    """Height field [..., H, W] -> unit normals [..., 3, H, W], n ∝ (-dz/dcol, +dz/drow, 1).

    Central differences inside, one-sided at the border (torch.gradient); `spacing` = pixel pitch in units of z.
    """
    dz_row, dz_col = torch.gradient(z, spacing=spacing, dim=(-2, -1))
    n = torch.stack([-dz_col, dz_row, torch.ones_like(z)], dim=-3)
    return n / n.norm(dim=-3, keepdim=True)


def angular_error(pred, gt, dim: int = -3, eps: float = 1e-8) -> torch.Tensor:
    """Per-pixel angle in degrees (float64) between two normal fields along `dim`, both normalised first.

    atan2(|a x b|, a . b) is exact near 0 degrees (identical normals give exactly 0; acos of a rounded dot product
    does not). A vector of (near) zero length has no direction and counts as 90 degrees, so it never scores as correct.
    Accepts torch tensors or numpy arrays.
    """
    a, b = torch.as_tensor(pred).double(), torch.as_tensor(gt).double()
    na, nb = a.norm(dim=dim, keepdim=True), b.norm(dim=dim, keepdim=True)
    a, b = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    (ax, ay, az), (bx, by, bz) = a.unbind(dim), b.unbind(dim)
    # the cross product written out (separate multiplies): a fused multiply-add, as in torch.linalg.cross, leaves a
    # rounding residue of 1e-17 for identical vectors instead of an exact 0
    cross = torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx]).norm(dim=0)
    ang = torch.atan2(cross, (a * b).sum(dim=dim)) * DEG
    degenerate = (na.squeeze(dim) < eps) | (nb.squeeze(dim) < eps)
    return torch.where(degenerate, torch.full_like(ang, 90.0), ang)


def angular_error_stats(pred, gt, mask=None, dim: int = -3) -> tuple[float, float]:
    """(mean, median) angular error in degrees over `mask` (> 0.5 = evaluated; all pixels when None); (NaN, NaN)
    when the mask selects nothing."""
    err = angular_error(pred, gt, dim=dim).numpy()
    if mask is not None:
        err = err[np.asarray(mask) > 0.5]
    if err.size == 0:
        return float("nan"), float("nan")
    return float(err.mean()), float(np.median(err))
