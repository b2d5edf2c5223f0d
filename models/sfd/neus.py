"""NeuS volume rendering of a signed distance field (Wang et al., NeurIPS 2021), as SfD uses it (Sec. 3.4):
coarse uniform samples, hierarchical up-sampling with fixed sharpness, and the unbiased alpha of NeuS eq. 13.

Tensors: rays (R, 3); depths (R, S); an SDF callback maps world points (R, S, 3) to (R, S).
"""
from __future__ import annotations

import torch


def sphere_near_far(origin, dirs, centre, radius):
    """Entry/exit depths of unit rays through the sphere (centre, radius); rays that miss get near = far = the closest
    approach (zero-length segments render nothing)."""
    oc = origin - centre
    b = (oc * dirs).sum(-1)
    c = (oc * oc).sum(-1) - radius ** 2
    disc = b * b - c
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(1e-4)
    far = (-b + root).clamp_min(1e-4)
    miss = disc <= 0
    far = torch.where(miss, near, far)
    return near, far, ~miss


def sample_pdf(z, weights, n: int):
    """Inverse-CDF samples at mid-point u's (deterministic, NeRF's `sample_pdf` without jitter). z (R, S) section
    boundaries, weights (R, S - 1)."""
    w = weights + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], -1)
    u = ((torch.arange(n, dtype=z.dtype, device=z.device) + 0.5) / n).expand(z.shape[0], n).contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    lo, hi = (idx - 1).clamp(0, z.shape[1] - 1), idx.clamp(0, z.shape[1] - 1)
    c_lo, c_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    z_lo, z_hi = z.gather(1, lo), z.gather(1, hi)
    t = (u - c_lo) / (c_hi - c_lo).clamp_min(1e-5)
    return z_lo + t * (z_hi - z_lo)


def upsample_weights(z, sdf, inv_s: float, inside):
    """NeuS's up-sampling weights (their Sec. 3.4 implementation detail): the slope between consecutive SDF samples,
    min of the current and previous estimate, clamped to [-1000, 0] and zeroed outside the scene sphere, gives
    section alphas at a fixed sharpness."""
    mid_sdf = (sdf[:, :-1] + sdf[:, 1:]) / 2
    slope = (sdf[:, 1:] - sdf[:, :-1]) / (z[:, 1:] - z[:, :-1] + 1e-5)
    prev = torch.cat([torch.zeros_like(slope[:, :1]), slope[:, :-1]], -1)
    slope = torch.minimum(prev, slope).clamp(-1000.0, 0.0) * inside
    half = (z[:, 1:] - z[:, :-1]) / 2
    prev_sdf, next_sdf = mid_sdf - slope * half, mid_sdf + slope * half
    prev_cdf, next_cdf = torch.sigmoid(prev_sdf * inv_s), torch.sigmoid(next_sdf * inv_s)
    alpha = ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0, 1)
    return alpha * transmittance(alpha)


def transmittance(alpha):
    """T_i = prod_{j<i} (1 - alpha_j + 1e-7)."""
    ones = torch.ones_like(alpha[:, :1])
    return torch.cumprod(torch.cat([ones, 1 - alpha + 1e-7], -1), -1)[:, :-1]


def hierarchical_depths(sdf_fn, origin, dirs, near, far, inside_fn, n_coarse: int, n_fine: int, rounds: int,
                        jitter=None):
    """Sorted section boundaries (R, n_coarse + n_fine): uniform coarse depths (one shift per ray when `jitter`
    (R,) in [-0.5, 0.5) is given), then `rounds` rounds of inverse-CDF up-sampling at sharpness 64 * 2^i."""
    t = torch.linspace(0, 1, n_coarse, dtype=origin.dtype, device=origin.device)
    z = near[:, None] + (far - near)[:, None] * t
    if jitter is not None:
        z = z + jitter[:, None] * ((far - near) / n_coarse)[:, None]
        z = torch.minimum(torch.maximum(z, near[:, None]), far[:, None])
    with torch.no_grad():
        pts = origin[:, None] + dirs[:, None] * z[..., None]
        sdf = sdf_fn(pts)
        per = n_fine // max(rounds, 1)
        for i in range(rounds):
            w = upsample_weights(z, sdf, 64.0 * 2 ** i, inside_fn(pts[:, :-1]).to(z.dtype))
            new = sample_pdf(z, w, per if i < rounds - 1 else n_fine - per * (rounds - 1))
            new_pts = origin[:, None] + dirs[:, None] * new[..., None]
            z, order = torch.sort(torch.cat([z, new], -1), -1)
            sdf = torch.cat([sdf, sdf_fn(new_pts)], -1).gather(1, order)
            pts = torch.cat([pts, new_pts], 1).gather(1, order[..., None].expand(-1, -1, 3))
    return z


def section_midpoints(z, far, n_coarse):
    """Render positions z_i + delta_i / 2 with delta_i = z_{i+1} - z_i and a last delta of (far - near) / n_coarse."""
    last = ((far - z[:, 0]) / n_coarse)[:, None]
    dists = torch.cat([z[:, 1:] - z[:, :-1], last], -1)
    return z + dists / 2, dists


def neus_alpha(sdf, cos, dists, inv_s, anneal: float = 1.0):
    """Unbiased discrete opacity (NeuS eq. 13): sdf, cos = d . n, dists (R, S); inv_s the learned sharpness s.
    The cosine is annealed from 'always facing' to the true value (ratio 1 = the true value, SfD's setting)."""
    iter_cos = -(torch.relu(-cos * 0.5 + 0.5) * (1 - anneal) + torch.relu(-cos) * anneal)
    prev_sdf = sdf - iter_cos * dists * 0.5
    next_sdf = sdf + iter_cos * dists * 0.5
    prev_cdf, next_cdf = torch.sigmoid(prev_sdf * inv_s), torch.sigmoid(next_sdf * inv_s)
    return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0, 1)


def render_weights(alpha):
    return alpha * transmittance(alpha)
