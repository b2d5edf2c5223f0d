"""SfD's material and lighting (Sec. 3.4, after InvRender, Zhang et al. CVPR 2022): a canonical-space BRDF
auto-encoder (PE10 -> 64-d sparse latent -> albedo, roughness) and an environment of spherical Gaussians, rendered
with `models.sfd.sg.render_sg` (direct light only) and visibility from the visibility field."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.sfd.fields import PosEnc, _mlp

ALBEDO_MIN, ALBEDO_MAX = 0.117 ** 2.2, 0.941 ** 2.2


@dataclass
class MatConfig:
    multires: int = 10
    enc_hidden: int = 512
    enc_layers: int = 4
    latent: int = 64
    dec_hidden: int = 128
    num_sgs: int = 128
    specular_albedo: float = 0.02     # F0 (dielectric)
    metallic_max: float = 0.0         # > 0 enables the metallic head (regularised by m (1 - m))
    vis_grid: int = 5                 # diffuse visibility: vis_grid x vis_grid cone samples per lobe
    vis_spec: int = 5                 # specular visibility: vis_spec x vis_spec cone samples (reflection lobe)
    fixed_lambda_min: float = 0.0     # > 0: cone widths from this constant instead of the batch minimum


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return torch.stack([theta.cos() * phi.sin(), theta.sin() * phi.sin(), phi.cos()], -1).float()


class MaterialNet(nn.Module):
    def __init__(self, cfg: MatConfig):
        super().__init__()
        self.cfg = cfg
        self.pe = PosEnc(cfg.multires)
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.encoder = _mlp(self.pe.out_dim, cfg.enc_hidden, cfg.enc_layers, cfg.latent, act)
        self.decoder = _mlp(cfg.latent, cfg.dec_hidden, 1, 5 if cfg.metallic_max > 0 else 4, act)
        # SG lights: axes on a Fibonacci sphere (half the lobes, used twice), sharpness 10 + |20 N(0,1)|, grey
        # amplitudes rescaled so the total lobe energy sum mu 2 pi / lambda (1 - e^{-2 lambda}) is 2 pi * 0.8
        k = cfg.num_sgs
        axes = fibonacci_sphere(max(k // 2, 1)).repeat(2, 1)[:k]
        gen = torch.Generator().manual_seed(0)
        sharp = 10 + (20 * torch.randn(k, generator=gen)).abs()
        amp = torch.rand(k, generator=gen)[:, None].expand(k, 3)
        energy = (amp[:, 0] * 2 * math.pi / sharp * (1 - torch.exp(-2 * sharp))).sum()
        amp = amp * (2 * math.pi * 0.8 / energy)
        self.lgt_axis = nn.Parameter(axes.clone())
        self.lgt_sharp = nn.Parameter(sharp.clone())
        self.lgt_amp = nn.Parameter(amp.clone().contiguous())
        self.register_buffer("fitted", torch.zeros((), dtype=torch.int64))  # 1 once this stage has trained

    def light(self) -> dict:
        return {"axis": self.lgt_axis, "sharpness": self.lgt_sharp.abs(), "amplitude": self.lgt_amp.abs()}

    def decode(self, latent):
        out = torch.sigmoid(self.decoder(latent))
        albedo = out[..., :3].clamp(ALBEDO_MIN, ALBEDO_MAX)
        rough = (0.09 + 0.9 * out[..., 3:4]).clamp(0, 1)
        metal = out[..., 4:5] * self.cfg.metallic_max if out.shape[-1] == 5 else torch.zeros_like(rough)
        return albedo, rough, metal

    def forward(self, x_canon, noise=None):
        """Albedo, roughness, metallic at canonical surface points; with `noise` (same shape as the latent) also the
        decode of the perturbed latent (latent smoothness) and the latent itself (sparsity)."""
        latent = torch.sigmoid(self.encoder(self.pe(x_canon)))
        albedo, rough, metal = self.decode(latent)
        out = {"albedo": albedo, "roughness": rough, "metallic": metal, "latent": latent}
        if noise is not None:
            out["albedo_s"], out["roughness_s"], _ = self.decode(latent + noise)
        return out


def kl_sparsity(latent, rho: float = 0.05):
    """KL(rho || rho_hat_j) averaged over latent dims, rho_hat_j = mean activation (sparse auto-encoder)."""
    rho_hat = latent.mean(0).clamp(1e-6, 1 - 1e-6)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).mean()


def cone_grid(axis, cos_half, n: int):
    """n x n directions on a regular (azimuth, polar) grid inside cones about unit axes (..., 3) of half-angle
    acos(cos_half) (...,). Returns (..., n*n, 3)."""
    az = (torch.arange(n, dtype=axis.dtype) + 0.5) / n * 2 * math.pi
    cos_t = 1 - (torch.arange(n, dtype=axis.dtype) + 0.5) / n * (1 - cos_half[..., None])   # ... n
    sin_t = (1 - cos_t ** 2).clamp_min(0).sqrt()
    helper = torch.where(axis[..., 2:3].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0], dtype=axis.dtype),
                         torch.tensor([1.0, 0.0, 0.0], dtype=axis.dtype))
    t1 = torch.nn.functional.normalize(torch.cross(helper.expand_as(axis), axis, dim=-1), dim=-1)
    t2 = torch.cross(axis, t1, dim=-1)
    d = (sin_t[..., :, None, None] * (az.cos()[:, None] * t1[..., None, None, :] + az.sin()[:, None]
                                       * t2[..., None, None, :])
         + cos_t[..., :, None, None] * axis[..., None, None, :])                              # ... n n 3
    return d.flatten(-3, -2)


def sg_visibility(vis_prob, x, normal, view, roughness, light: dict, cfg: MatConfig):
    """Visibility for the SG render (Sec. 3.4): per light lobe k, the softmax_s(lambda_k (w_s . xi_k - 1))-weighted mean
    of the visibility field over a grid of directions in a cone about xi_k of half-angle acos(1 - 1.95 lambda_min /
    lambda_k); one scalar per point for the specular lobe (cone about the reflection axis, half-angle
    acos(1 - 1.90 lambda_min / lambda), lambda = the warped BRDF sharpness clipped to [0.1, 50]). Directions below
    the surface count as occluded. vis_prob(x (M, 3), w (M, 3)) -> (M,). Returns (P, K), (P, 1)."""
    axis = torch.nn.functional.normalize(light["axis"], dim=-1)
    sharp = light["sharpness"]
    lam_min = cfg.fixed_lambda_min or sharp.min().detach()
    dirs = cone_grid(axis, (1 - 1.95 * lam_min / sharp).clamp(-1, 1), cfg.vis_grid)          # K G 3
    w = torch.softmax(sharp[:, None] * ((dirs * axis[:, None]).sum(-1) - 1), -1)            # K G
    p, (k, g) = x.shape[0], w.shape
    q = vis_prob(x[:, None].expand(p, k * g, 3).reshape(-1, 3), dirs.reshape(1, -1, 3).expand(p, -1, -1).reshape(-1, 3))
    above = ((dirs.reshape(1, -1, 3) * normal[:, None]).sum(-1) > 0).to(q.dtype)
    vis_d = ((q.view(p, k * g) * above).view(p, k, g) * w).sum(-1)
    nv = (normal * view).sum(-1, keepdim=True)
    refl = torch.nn.functional.normalize(2 * nv * normal - view, dim=-1)
    lam = ((2 / roughness.clamp_min(1e-3) ** 4) / (4 * nv.clamp_min(1e-4)))[:, 0].clamp(0.1, 50)
    lam_s_min = cfg.fixed_lambda_min or lam.min().detach()
    sdirs = cone_grid(refl, (1 - 1.90 * lam_s_min / lam).clamp(-1, 1), cfg.vis_spec)           # P G 3
    sw = torch.softmax(lam[:, None] * ((sdirs * refl[:, None]).sum(-1) - 1), -1)
    gs = sdirs.shape[1]
    sq = vis_prob(x[:, None].expand(p, gs, 3).reshape(-1, 3), sdirs.reshape(-1, 3)).view(p, gs)
    s_above = ((sdirs * normal[:, None]).sum(-1) > 0).to(sq.dtype)
    return vis_d, (sq * s_above * sw).sum(-1, keepdim=True)
