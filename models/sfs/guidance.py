"""Guidance losses on the assembled x0-hat normal field (Multistable SfS, Han, Zickler & Nishino, NeurIPS 2024):
seam continuity and integrability (after Verbin & Zickler's shape from texture), as the reference code computes them.

Both take a batch of global normal maps N [S, 3, H, W] in the frame x right, y up, z to the viewer and return
one loss per sample ([S]). Summing them over the batch keeps the gradient of every sample independent of the others,
so S seeds can share one batch.

Optional mask M [S|1, 1, H, W] (1 = foreground): terms touching a background pixel are zeroed, and the mean is taken over
the remaining terms (with M = 1 this is exactly the reference's plain mean).
"""
from __future__ import annotations

import torch

from models.core.geometry import flip_normals, normals_from_height  # noqa: F401  (re-exported)
from models.sfs.tiling import PATCH

ANGLE_EPS = 1e-4  # the reference clamps cos to [-1 + 1e-4, 1 - 1e-4], so a perfect match still costs arccos(1 - 1e-4)


def angle(u: torch.Tensor, v: torch.Tensor, dim: int = 1, eps: float = ANGLE_EPS) -> torch.Tensor:
    """Angle in radians between u and v along `dim`; normalized here, the cosine clamped as in the reference."""
    un = u / u.norm(dim=dim, keepdim=True).clamp_min(1e-12)
    vn = v / v.norm(dim=dim, keepdim=True).clamp_min(1e-12)
    cos = (un * vn).sum(dim).clamp(-1.0 + eps, 1.0 - eps)
    return torch.arccos(cos)


def _masked_mean(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the batch dim; with a weight, a weighted mean over the kept terms."""
    if weight is None:
        return err.flatten(1).mean(1)
    weight = weight.expand_as(err).flatten(1)
    return (err.flatten(1) * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def _seam_along_rows(n: torch.Tensor, m: torch.Tensor | None, patch: int) -> torch.Tensor:
    """Linear-extrapolation seam error across horizontal tile seams (rows a = kP-1 | b = kP); per sample."""
    h = n.shape[-2]
    if h // patch < 2:
        return n.new_zeros(n.shape[0])
    a = torch.arange(patch - 1, h - 1, patch, device=n.device)  # last row of the upper tile
    b = a + 1
    na, na1, nb, nb1 = n[:, :, a], n[:, :, a - 1], n[:, :, b], n[:, :, b + 1]
    e_f = angle(2 * na - na1, nb)  # upper tile extrapolated one pixel down vs the lower tile
    e_b = angle(2 * nb - nb1, na)  # and the other way round
    err = 0.5 * (e_f + e_b)  # [S, n_seams, W]
    w = None
    if m is not None:  # every pixel used by the stencil must be foreground
        w = (m[:, 0, a] * m[:, 0, a - 1] * m[:, 0, b] * m[:, 0, b + 1])
    return _masked_mean(err, w)


def seam_loss(normals: torch.Tensor, mask: torch.Tensor | None = None, patch: int = PATCH) -> torch.Tensor:
    """L_seam = L_td + L_lr (top-down + left-right seams), radians, per sample [S].

    Asks normals to vary linearly across tile seams (second-order continuity), not to be equal. The image border is not a
    seam. A field that is exactly linear across all seams scores the clamp floor 2*arccos(1 - 1e-4) = 0.0283.
    """
    l_td = _seam_along_rows(normals, mask, patch)
    mt = None if mask is None else mask.transpose(-1, -2)
    l_lr = _seam_along_rows(normals.transpose(-1, -2), mt, patch)
    return l_td + l_lr


def gradients_pq(normals: torch.Tensor, clamp: float = 10.0, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """p = -n_x/n_z = dz/dcol and q = +n_y/n_z = dz/drow (y up), clamped to [-clamp, clamp].

    |n_z| < eps is replaced by +-eps so background zeros give finite (clamped, zero-gradient) values instead of NaN.
    """
    nx, ny, nz = normals[:, 0], normals[:, 1], normals[:, 2]
    safe = torch.where(nz.abs() < eps, torch.where(nz < 0, -eps, eps) * torch.ones_like(nz), nz)
    p = (-nx / safe).clamp(-clamp, clamp)
    q = (ny / safe).clamp(-clamp, clamp)
    return p, q


def curl(normals: torch.Tensor, clamp: float = 10.0) -> torch.Tensor:
    """Per 2x2 cell, twice the discrete curl dq/dcol - dp/drow of the gradient field; [S, H-1, W-1]."""
    p, q = gradients_pq(normals, clamp)
    p00, p01, p10, p11 = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]
    q00, q01, q10, q11 = q[:, :-1, :-1], q[:, :-1, 1:], q[:, 1:, :-1], q[:, 1:, 1:]
    return (p00 + p01) - (p10 + p11) - (q00 + q10) + (q01 + q11)


def integrability_loss(normals: torch.Tensor, mask: torch.Tensor | None = None, clamp: float = 10.0) -> torch.Tensor:
    """L_int = mean of the squared cell curl over the whole field, per sample [S].

    The reference leaves it unmasked; with a mask only cells whose four corners are foreground count.
    """
    c2 = curl(normals, clamp) ** 2
    w = None
    if mask is not None:
        m = mask[:, 0]
        w = m[:, :-1, :-1] * m[:, :-1, 1:] * m[:, 1:, :-1] * m[:, 1:, 1:]
    return _masked_mean(c2, w)
