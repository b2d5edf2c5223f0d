"""Spherical-Gaussian (SG) shading: the direct-illumination model SfD's material stage fits (Sec. 3.4, after PhySG,
Zhang et al. CVPR 2021, and InvRender, Zhang et al. CVPR 2022).

An SG is G(w; xi, lambda, mu) = mu * exp(lambda * (w . xi - 1)). Light = a sum of SG lobes. Diffuse and specular
terms use the SG closed forms: SG x SG products, the clamped cosine approximated by an SG, and the approximate
hemisphere integral of an SG (PhySG eq. for the upper hemisphere about n). All tensors are torch, last dim = xyz/rgb.
"""
from __future__ import annotations

import math

import torch

# max(n . w, 0) ~ COS_MU * exp(COS_LAMBDA * (w . n - 1)) - COS_OFFSET  (PhySG's fit of the clamped cosine)
COS_MU, COS_LAMBDA, COS_OFFSET = 32.7080, 0.0315, 31.7003


def _normalise(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def sg_eval(dirs, axis, sharp, amp):
    """Radiance sum_k mu_k exp(lambda_k (w . xi_k - 1)); dirs (..., 3), axis (K, 3), sharp (K,), amp (K, 3)."""
    cos = dirs @ _normalise(axis).T
    return torch.exp(sharp * (cos - 1)) @ amp


def sg_product(axis1, sharp1, amp1, axis2, sharp2, amp2):
    """Closed-form product of two SGs: one SG with axis (l1 x1 + l2 x2) / l3, l3 = |l1 x1 + l2 x2|,
    amplitude mu1 mu2 exp(l3 - l1 - l2). Sharpness tensors carry a trailing singleton dim."""
    um = sharp1 * axis1 + sharp2 * axis2
    sharp3 = um.norm(dim=-1, keepdim=True)
    axis3 = um / sharp3.clamp_min(1e-12)
    amp3 = amp1 * amp2 * torch.exp(sharp3 - sharp1 - sharp2)
    return axis3, sharp3, amp3


def hemisphere_integral(sharp, cos_beta):
    """Integral of exp(lambda (w . xi - 1)) over the hemisphere about n, cos_beta = xi . n (PhySG's approximation:
    exact at cos_beta = +-1 and 0, smooth in between)."""
    sharp = sharp + 1e-6
    inv = 1.0 / sharp
    t = torch.sqrt(sharp) * (1.6988 + 10.8438 * inv) / (1.0 + 6.2201 * inv + 10.2415 * inv * inv)
    inv_a = torch.exp(-t)
    up = cos_beta >= 0
    inv_b = torch.exp(-t * cos_beta.clamp_min(0))
    s1 = (1 - inv_a * inv_b) / (1 - inv_a + inv_b - inv_a * inv_b)
    b = torch.exp(t * cos_beta.clamp_max(0))
    s2 = (b - inv_a) / ((1 - inv_a) * (b + 1))
    s = torch.where(up, s1, s2)
    lower = 2 * math.pi / sharp * (torch.exp(-sharp) - torch.exp(-2 * sharp))
    upper = 2 * math.pi / sharp * (1 - torch.exp(-sharp))
    return lower + (upper - lower) * s


def _cosine_weighted(axis, sharp, amp, normal):
    """Hemisphere integral of SG(w) * max(n . w, 0) with the clamped cosine as an SG minus a constant."""
    cos_axis = normal.expand_as(axis)
    ax3, sh3, am3 = sg_product(axis, sharp, amp, cos_axis, torch.full_like(sharp, COS_LAMBDA),
                               torch.full_like(sharp, COS_MU))
    with_cos = am3 * hemisphere_integral(sh3, (ax3 * normal).sum(-1, keepdim=True))
    plain = amp * hemisphere_integral(sharp, (axis * normal).sum(-1, keepdim=True))
    return with_cos - COS_OFFSET * plain


def render_sg(normal, view, albedo, roughness, f0, light: dict, vis_diffuse=None, vis_specular=None):
    """Direct illumination from SG lights: diffuse (albedo / pi) + Cook-Torrance specular with SG approximations.

    normal, view (towards the camera): (P, 3) unit; albedo (P, 3) linear; roughness (P, 1); f0 scalar or (P, 1);
    light: {"axis": (K, 3), "sharpness": (K,), "amplitude": (K, 3)} tensors; vis_diffuse: (P, K) in [0, 1] scaling
    each lobe for the diffuse term; vis_specular: (P, 1). Returns (diffuse (P, 3), specular (P, 3)), both >= 0."""
    axis = _normalise(light["axis"])[None]                      # 1 K 3
    sharp = light["sharpness"].abs()[None, :, None]             # 1 K 1
    amp = light["amplitude"].abs()[None]                        # 1 K 3
    n = normal[:, None]                                         # P 1 3
    lobe_amp = amp if vis_diffuse is None else amp * vis_diffuse[..., None]
    diffuse = (albedo / math.pi) * _cosine_weighted(axis.expand(n.shape[0], -1, -1), sharp.expand(n.shape[0], -1, -1),
                                                    lobe_amp, n).sum(1)
    # specular: GGX NDF as an SG about n (lambda = 2 / r^4, mu = 1 / (pi r^4), alpha = r^2), warped to the reflection
    r4 = roughness.clamp_min(1e-3) ** 4
    v = view[:, None]
    nv = (n * v).sum(-1, keepdim=True)
    warp_axis = _normalise(2 * nv * n - v)
    warp_sharp = (2 / r4)[:, None] / (4 * nv.clamp_min(1e-4))
    half = _normalise(warp_axis + v)
    vh = (v * half).sum(-1, keepdim=True).clamp_min(0)
    fresnel = f0 + (1 - f0) * torch.pow(2.0, -(5.55473 * vh + 6.8316) * vh)
    k = ((roughness + 1) ** 2 / 8)[:, None]
    nl = (warp_axis * n).sum(-1, keepdim=True).clamp_min(1e-4)
    nv_c = nv.clamp_min(1e-4)
    geom = nl / (nl * (1 - k) + k) * nv_c / (nv_c * (1 - k) + k)
    spec_amp = (1 / (math.pi * r4))[:, None] * fresnel * geom / (4 * nl * nv_c)
    spec_light = amp if vis_specular is None else amp * vis_specular[..., None]
    ax3, sh3, am3 = sg_product(warp_axis.expand(-1, axis.shape[1], -1), warp_sharp.expand(-1, axis.shape[1], -1),
                               spec_amp.expand(-1, axis.shape[1], -1), axis, sharp, spec_light)
    specular = _cosine_weighted(ax3, sh3, am3, n).sum(1)
    return diffuse.clamp_min(0), specular.clamp_min(0)


def light_tensors(light: dict, dtype=torch.float32) -> dict:
    return {k: torch.as_tensor(light[k], dtype=dtype) for k in ("axis", "sharpness", "amplitude")}
