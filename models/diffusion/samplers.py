"""DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models") as pure functions, and noise-level draws.

Noise levels are given as alpha_bar values (VP: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps), either Python floats or
tensors broadcastable to x as a prefix of its shape (e.g. per-sample [B] or per-frame [B, T] / [B, T, 1, 1, 1]).
Coefficients are formed in float64 and then cast to x's dtype, so alpha_bar values near 1 keep their precision.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .parameterization import append_dims, predict_x0_eps

__all__ = ["ddim_step", "ddim_sample", "sample_noise_levels"]


def _coef(c, x: Tensor) -> Tensor:
    # Python floats go straight to float64 (torch.as_tensor would round them to float32 first).
    if torch.is_tensor(c):
        return c.to(device=x.device, dtype=torch.float64)
    return torch.as_tensor(c, dtype=torch.float64, device=x.device)


def _cast(c: Tensor, x: Tensor) -> Tensor:
    return append_dims(c.to(x.dtype), x)


def _clip(x0: Tensor, clip_x0) -> Tensor:
    if clip_x0 is None:
        return x0
    lo, hi = (-clip_x0, clip_x0) if isinstance(clip_x0, (int, float)) else clip_x0
    return x0.clamp(lo, hi)


def ddim_step(x_t: Tensor, pred: Tensor, abar_t, abar_next, prediction: str = "eps", eta: float = 0.0,
              noise: Tensor | None = None, clip_x0=None, recompute_eps_after_clip: bool = True,
              ) -> tuple[Tensor, Tensor, Tensor]:
    """One DDIM update from level abar_t to abar_next (DDIM eq. 12; sigma_eta from eq. 16).

    x_next = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - s^2) eps_hat + s z,
    s = eta * sqrt((1 - abar_next)/(1 - abar_t)) * sqrt(1 - abar_t/abar_next). abar_next = 1 returns x0_hat.
    clip_x0: None, c (clamp to [-c, c]) or (lo, hi). After clipping, ``recompute_eps_after_clip=True`` re-derives
    eps_hat from the clipped x0_hat (diffusers' behaviour, keeps the step consistent); False keeps the raw predicted
    eps for the direction term, as the mssfs reference code does.
    noise: the z for eta > 0 (drawn from the global RNG if None). Returns (x_next, x0_hat, eps_hat used).
    """
    ab_t, ab_n = _coef(abar_t, x_t), _coef(abar_next, x_t)
    sig_t64 = (1.0 - ab_t).clamp(min=0.0).sqrt()
    alpha_t, sigma_t = _cast(ab_t.sqrt(), x_t), _cast(sig_t64, x_t)
    x0, eps = predict_x0_eps(x_t, pred, alpha_t, sigma_t, prediction)
    if clip_x0 is not None:
        x0 = _clip(x0, clip_x0)
        if recompute_eps_after_clip:
            # Where sigma_t = 0 the state is already clean and eps is undefined; keep the raw one there.
            safe = torch.where(sigma_t > 0, sigma_t, torch.ones_like(sigma_t))
            eps = torch.where(sigma_t > 0, (x_t - alpha_t * x0) / safe, eps)
    if eta > 0:
        one_minus_t = (1.0 - ab_t).clamp(min=0.0)
        ratio = torch.where(one_minus_t > 0, (1.0 - ab_n).clamp(min=0.0) / one_minus_t.clamp(min=1e-300),
                            torch.zeros_like(one_minus_t))
        s = eta * (ratio * (1.0 - ab_t / ab_n).clamp(min=0.0)).sqrt()
    else:
        s = torch.zeros_like(ab_n)
    c_dir = (1.0 - ab_n - s * s).clamp(min=0.0).sqrt()
    x_next = _cast(ab_n.sqrt(), x_t) * x0 + _cast(c_dir, x_t) * eps
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x_t)
        x_next = x_next + _cast(s, x_t) * noise
    return x_next, x0, eps


def ddim_sample(model_fn: Callable[[Tensor, int], Tensor], x_T: Tensor, abars: Sequence, prediction: str = "eps",
                eta: float = 0.0, generator: torch.Generator | None = None, clip_x0=None,
                callback: Callable[[int, Tensor, Tensor], None] | None = None, progress: bool = False, *,
                abars_next: Sequence | None = None, recompute_eps_after_clip: bool = True) -> Tensor:
    """Run DDIM from x_T through the levels ``abars`` (first = level of x_T, ..., last = final level, 1.0 = clean).

    Step i (i = 0 .. len(abars) - 2) calls ``pred = model_fn(x, i)`` at level abars[i] and moves to abars[i + 1],
    or to ``abars_next[i]`` when given (for the bit-faithful mssfs "t - 6" target level of the reference code, where the
    state's true level differs from the next list entry). Levels may be floats or per-sample/per-frame tensors.
    eta > 0 draws z from ``generator`` (on x's device). ``callback(i, x_next, x0_hat)`` runs after every step.
    Gradients are not disabled here; wrap the call in torch.no_grad() unless guidance needs them.
    Returns the final state (x0_hat of the last step when the last level is 1.0).
    """
    n = len(abars) - 1
    if n < 1:
        raise ValueError("abars needs at least two levels (start and end)")
    if abars_next is not None and len(abars_next) != n:
        raise ValueError(f"abars_next must have {n} entries, got {len(abars_next)}")
    steps = range(n)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="ddim", leave=False)
    x = x_T
    for i in steps:
        pred = model_fn(x, i)
        target = abars[i + 1] if abars_next is None else abars_next[i]
        noise = None
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x, x0, _ = ddim_step(x, pred, abars[i], target, prediction, eta=eta, noise=noise, clip_x0=clip_x0,
                             recompute_eps_after_clip=recompute_eps_after_clip)
        if callback is not None:
            callback(i, x, x0)
    return x


def sample_noise_levels(batch: int, frames: int, mode: str = "shared", generator: torch.Generator | None = None,
                        device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Continuous times t ~ U[0, 1) of shape [batch, frames] for video diffusion.

    "shared": one t per clip repeated over frames (DiffMotion training); "independent": one t per frame
    (diffusion-forcing style). Draws on the generator's device, then moves to ``device``.
    """
    gen_device = generator.device if generator is not None else (device or "cpu")
    if mode == "shared":
        t = torch.rand(batch, 1, generator=generator, device=gen_device, dtype=dtype).expand(batch, frames)
        t = t.contiguous()
    elif mode == "independent":
        t = torch.rand(batch, frames, generator=generator, device=gen_device, dtype=dtype)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'shared' or 'independent'")
    return t.to(device) if device is not None else t
