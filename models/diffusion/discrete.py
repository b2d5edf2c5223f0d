"""Discrete-time DDPM pieces for an IDDPM-style model (Nichol & Dhariwal 2021, "Improved DDPM"):
the squaredcos_cap_v2 schedule, uniform respacing, the learned-range variance, the VLB term of the hybrid loss,
and the ancestral step. Tables are float64 [T]; cast at the point of use.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .parameterization import append_dims, predict_x0_eps
from .schedules import alpha_bar_to_betas, betas_to_alpha_bar, cosine_betas

__all__ = ["squaredcos_cap_v2_betas", "respace", "posterior", "learned_range_logvar", "normal_kl", "vlb_term",
           "ddpm_step"]


def squaredcos_cap_v2_betas(T: int = 1000) -> Tensor:
    """Nichol & Dhariwal 2021 eq. 17 with only the upper clip (beta <= 0.999), as the paper states."""
    return cosine_betas(T, beta_min=0.0, beta_max=0.999)


def respace(betas: Tensor, K: int) -> tuple[list[int], Tensor]:
    """K of the T indices, uniformly spaced, always including 0 and T-1 (IDDPM Sec. 4 "improving sampling speed"),
    and the betas of the respaced chain: beta_k = 1 - abar[t_k] / abar[t_{k-1}], so abar at the kept indices is
    unchanged. Returns (indices ascending, betas float64 [K])."""
    T = betas.numel()
    if not 1 <= K <= T:
        raise ValueError(f"respacing needs 1 <= K <= T, got K={K}, T={T}")
    idx = [0] if K == 1 else sorted({round(i * (T - 1) / (K - 1)) for i in range(K)})
    ab = betas_to_alpha_bar(betas)[idx]
    return idx, alpha_bar_to_betas(ab)


def posterior(betas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """q(x_{t-1} | x_t, x0) coefficients (Ho et al. 2020 eq. 7): (coef_x0, coef_xt, var beta_tilde, log var clipped).
    beta_tilde_0 = 0, so its log uses beta_tilde_1 (as IDDPM does)."""
    betas = betas.double()
    ab = betas_to_alpha_bar(betas)
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
    var = betas * (1 - ab_prev) / (1 - ab)
    logvar = torch.log(torch.cat([var[1:2], var[1:]])) if var.numel() > 1 else torch.log(betas)
    return betas * ab_prev.sqrt() / (1 - ab), (1 - ab_prev) * (1 - betas).sqrt() / (1 - ab), var, logvar


def learned_range_logvar(v: Tensor, log_beta: Tensor, log_beta_tilde: Tensor) -> Tensor:
    """Nichol & Dhariwal 2021 eq. 15: log sigma^2 = f log beta + (1 - f) log beta_tilde, f = (v + 1) / 2."""
    f = (v + 1) / 2
    return f * append_dims(log_beta.to(v.dtype), v) + (1 - f) * append_dims(log_beta_tilde.to(v.dtype), v)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _gather(table: Tensor, t: Tensor, x: Tensor) -> Tensor:
    return append_dims(table.to(x.device)[t].to(x.dtype), x)


def _model_mean_logvar(x_t, pred, v, t, betas, clip_x0, prediction="eps"):
    coef0, coeft, _, logvar_post = posterior(betas)
    ab = betas_to_alpha_bar(betas)
    # x0 straight from the output kind: from v it is alpha x_t - sigma v, well conditioned where alpha ~ 0
    x0, _ = predict_x0_eps(x_t, pred, _gather(ab.sqrt(), t, x_t), _gather((1 - ab).sqrt(), t, x_t), prediction)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    logvar = learned_range_logvar(v, torch.log(betas.double()).to(x_t.device)[t], logvar_post.to(x_t.device)[t])
    return _gather(coef0, t, x_t) * x0 + _gather(coeft, t, x_t) * x_t, logvar, x0


def vlb_term(x0: Tensor, x_t: Tensor, t: Tensor, pred: Tensor, v: Tensor, betas: Tensor,
             prediction: str = "eps") -> Tensor:
    """Per-sample L_vlb of the hybrid loss (IDDPM Sec. 3.1) with the model mean detached (stop-gradient), so it
    trains only the variance. A documented simplification: L_0 uses the same Gaussian KL against the (clipped)
    posterior instead of the discretised decoder likelihood. Mean over pixels, in bits."""
    coef0, coeft, _, logvar_post = posterior(betas)
    true_mean = _gather(coef0, t, x_t) * x0 + _gather(coeft, t, x_t) * x_t
    mean, logvar, _ = _model_mean_logvar(x_t, pred.detach(), v, t, betas, clip_x0=False, prediction=prediction)
    kl = normal_kl(true_mean, _gather(logvar_post, t, x_t), mean, logvar)
    return kl.flatten(1).mean(1) / math.log(2.0)


def ddpm_step(x_t: Tensor, pred: Tensor, v: Tensor, k: int, betas: Tensor, noise: Tensor | None,
              clip_x0: bool = True, prediction: str = "eps") -> tuple[Tensor, Tensor]:
    """One ancestral step k -> k-1 on a (respaced) chain with learned-range variance; no noise at k = 0.
    `pred` is the network's mean output of kind `prediction` ("eps" | "x0" | "v"). Returns (x_{k-1}, x0_hat)."""
    t = torch.full((x_t.shape[0],), k, device=x_t.device, dtype=torch.long)
    mean, logvar, x0 = _model_mean_logvar(x_t, pred, v, t, betas, clip_x0, prediction)
    if k == 0 or noise is None:
        return mean, x0
    return mean + torch.exp(0.5 * logvar) * noise, x0
