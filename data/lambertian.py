"""Lambertian shading of normal maps, batched and device-agnostic: the image model of Multistable SfS
(Han, Zickler & Nishino, NeurIPS 2024).

Normal frame: x right (increasing column), y up (decreasing row), z toward the viewer; background = (0, 0, 0).
Image model: I = albedo * max(0, n . l) [+ ambient] [+ Gaussian noise]; background pixels are always 0.
No cast shadows, interreflections or specularity, as in the reference renderer.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.core.geometry import flip_normals  # noqa: F401  (re-exported: the one definition)

MIN_LZ = math.cos(math.pi / 2.5)  # 0.309: lights lie within 72 deg of the viewing axis (reference rejection bound)


def _per_batch(value, b: int, like: torch.Tensor) -> torch.Tensor:
    """Scalar / [B] / [B,1,H,W] -> tensor broadcastable against [B,1,H,W]."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if v.ndim == 0:
        return v
    if v.ndim == 1:
        if v.shape[0] != b:
            raise ValueError(f"expected {b} per-image values, got {v.shape[0]}")
        return v.view(b, 1, 1, 1)
    return v


def render_lambertian(normals: torch.Tensor, light: torch.Tensor, albedo=1.0, ambient=0.0, noise_std=0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Render [B,3,H,W] normals under per-image directional lights [B,3] (or one [3]) -> images [B,1,H,W].

    albedo: float, [B] or [B,1,H,W]. ambient, noise_std: float or [B]. Lights are normalized here.
    Attached shadows clamp to 0; background (n = 0) stays exactly 0. Values are clamped to [0, 1] only when an
    ambient term or noise is on (the clean model already lies in [0, albedo]). Noise comes from `generator`
    (drawn on the generator's device, then moved), else from the global RNG.
    """
    if normals.ndim != 4 or normals.shape[1] != 3:
        raise ValueError(f"normals must be [B,3,H,W], got {tuple(normals.shape)}")
    b = normals.shape[0]
    light = torch.as_tensor(light, dtype=normals.dtype, device=normals.device)
    if light.ndim == 1:
        light = light.expand(b, 3)
    light = light / light.norm(dim=1, keepdim=True).clamp_min(1e-12)
    shading = torch.einsum("bchw,bc->bhw", normals, light).clamp_min(0.0)[:, None]
    img = _per_batch(albedo, b, normals) * shading
    fg = (normals != 0).any(dim=1, keepdim=True)
    extra = False
    if torch.is_tensor(ambient) or ambient != 0:
        img = img + _per_batch(ambient, b, normals)
        extra = True
    if torch.is_tensor(noise_std) or noise_std != 0:
        gen_dev = generator.device if generator is not None else normals.device
        z = torch.randn(img.shape, generator=generator, device=gen_dev, dtype=normals.dtype).to(normals.device)
        img = img + _per_batch(noise_std, b, normals) * z
        extra = True
    if extra:
        img = img.clamp(0.0, 1.0)
    return torch.where(fg, img, torch.zeros((), dtype=img.dtype, device=img.device))


def _rand(n: int, generator, device, dtype) -> torch.Tensor:
    gen_dev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_dev, dtype=dtype).to(device)


def sample_lights(n: int, generator: torch.Generator | None = None, min_lz: float = MIN_LZ, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """n unit lights [n,3] uniform on the spherical cap l_z >= min_lz (uniform tilt, no light-from-above bias).

    Exact inverse-CDF sampling: on the unit sphere the area element is dz dphi (Archimedes), so z ~ U(min_lz, 1)
    and azimuth ~ U(0, 2 pi) give the same distribution as the reference's Gaussian-rejection sampler, with no
    rejection loop (and a fixed number of RNG draws, so results do not depend on acceptance luck).
    """
    device = torch.device(device) if device is not None else (generator.device if generator is not None else "cpu")
    z = min_lz + (1.0 - min_lz) * _rand(n, generator, device, dtype)
    phi = 2 * math.pi * _rand(n, generator, device, dtype)
    r = (1.0 - z * z).clamp_min(0.0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


def sample_albedo(n: int, generator: torch.Generator | None = None, low: float = 0.5, high: float = 1.0,
                  device=None, dtype=torch.float32) -> torch.Tensor:
    """n scalar albedos ~ U(low, high) (reference: U(0.5, 1))."""
    device = torch.device(device) if device is not None else (generator.device if generator is not None else "cpu")
    return low + (high - low) * _rand(n, generator, device, dtype)


def render_random(normals: torch.Tensor, generator: torch.Generator | None = None, min_lz: float = MIN_LZ,
                  albedo_range=(0.5, 1.0), ambient_range=(0.0, 0.0), noise_range=(0.0, 0.0)):
    """Render each map under a fresh random light/albedo. Returns (images [B,1,H,W], lights [B,3], albedo [B]).

    Ambient and noise std are drawn per image from their ranges; (0, 0) = off (the default, as in the reference).
    """
    b, dev, dt = normals.shape[0], normals.device, normals.dtype
    light = sample_lights(b, generator, min_lz, device=dev, dtype=dt)
    albedo = sample_albedo(b, generator, *albedo_range, device=dev, dtype=dt)
    ambient = sample_albedo(b, generator, *ambient_range, device=dev, dtype=dt) if ambient_range[1] > 0 else 0.0
    noise = sample_albedo(b, generator, *noise_range, device=dev, dtype=dt) if noise_range[1] > 0 else 0.0
    return render_lambertian(normals, light, albedo, ambient, noise, generator), light, albedo


def render_lambertian_np(normals: np.ndarray, light, albedo=1.0, ambient: float = 0.0, noise_std: float = 0.0,
                         seed: int | None = None) -> np.ndarray:
    """NumPy convenience: normals (3,H,W) -> image (H,W) float32, or (B,3,H,W) -> (B,H,W)."""
    n = torch.as_tensor(np.asarray(normals, dtype=np.float32))
    single = n.ndim == 3
    if single:
        n = n[None]
    light_t = torch.as_tensor(np.asarray(light, dtype=np.float32))
    alb = torch.as_tensor(np.asarray(albedo, dtype=np.float32))
    if single and alb.ndim == 2:
        alb = alb[None, None]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    img = render_lambertian(n, light_t, alb, ambient, noise_std, gen)[:, 0].numpy()
    return img[0] if single else img


__all__ = ["MIN_LZ", "render_lambertian", "sample_lights", "sample_albedo", "render_random", "flip_normals",
           "render_lambertian_np"]
