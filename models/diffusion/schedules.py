"""Noise schedules: discrete alpha_bar tables, continuous logSNR curves, and DDIM index lists.

Conventions (variance preserving): x_t = alpha * x0 + sigma * eps with alpha^2 + sigma^2 = 1,
alpha_bar = alpha^2, logSNR = lambda = ln(alpha^2 / sigma^2), so alpha_bar = sigmoid(lambda).
Tables are float64; cast at the point of use.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

__all__ = [
    "cosine_alpha_bar", "cosine_betas", "linear_alpha_bar", "betas_to_alpha_bar", "alpha_bar_to_betas",
    "logsnr_cosine", "logsnr_cosine_inverse", "logsnr_cosine_interpolated",
    "alpha_sigma", "alpha_bar_to_logsnr", "logsnr_to_alpha_bar", "sigma_to_logsnr", "logsnr_to_sigma",
    "discrete_logsnr_table", "ddim_timesteps_round", "ddim_timesteps_floor", "abar_sequence",
]


def _t(x) -> Tensor:
    """Tensors pass through unchanged; Python numbers / lists become float64 tensors."""
    return x if torch.is_tensor(x) else torch.as_tensor(x, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------------------
# Discrete (index) schedules
# ----------------------------------------------------------------------------------------------------------------------

def betas_to_alpha_bar(betas: Tensor) -> Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) (DDPM, Ho et al. 2020 eq. 4 notation)."""
    return torch.cumprod(1.0 - betas.double(), dim=0)


def alpha_bar_to_betas(alpha_bar: Tensor) -> Tensor:
    """Inverse of :func:`betas_to_alpha_bar`: beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, alpha_bar_{-1} = 1."""
    ab = alpha_bar.double()
    prev = torch.cat([ab.new_ones(1), ab[:-1]])
    return 1.0 - ab / prev


def cosine_betas(T: int, s: float = 0.008, beta_min: float = 1e-4, beta_max: float = 0.9999) -> Tensor:
    """Clipped betas of the Nichol & Dhariwal (2021, eq. 17) cosine schedule, float64 [T] (the mssfs schedule).

    f(u) = cos^2(((u/T) + s)/(1 + s) * pi/2); beta_t = 1 - f(t+1)/f(t), clipped to [beta_min, beta_max].
    (The paper clips only from above at 0.999; the mssfs code clips to [1e-4, 0.9999].)
    """
    u = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((u / T + s) / (1 + s) * (math.pi / 2)) ** 2
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(beta_min, beta_max)


def cosine_alpha_bar(T: int, s: float = 0.008, beta_min: float = 1e-4, beta_max: float = 0.9999) -> Tensor:
    """alpha_bar of the clipped cosine schedule, recomputed as cumprod(1 - beta); float64 [T], index t = 0..T-1.

    mssfs (T = 300): alpha_bar_0 = 0.99984, alpha_bar_232 = 0.116329, beta_299 = 0.9999 (clipped).
    """
    return betas_to_alpha_bar(cosine_betas(T, s, beta_min, beta_max))


def linear_alpha_bar(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """alpha_bar of the DDPM linear beta schedule (Ho et al. 2020, Sec. 4), float64 [T]."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return betas_to_alpha_bar(betas)


# ----------------------------------------------------------------------------------------------------------------------
# Continuous logSNR schedules (t in [0, 1], t = 0 clean, t = 1 noise)
# ----------------------------------------------------------------------------------------------------------------------

def _cosine_ab(logsnr_min: float, logsnr_max: float) -> tuple[float, float]:
    # t = 0 maps to logsnr_max and t = 1 to logsnr_min, since lambda = -2 ln tan(angle).
    a = math.atan(math.exp(-0.5 * logsnr_max))
    b = math.atan(math.exp(-0.5 * logsnr_min))
    return a, b


def logsnr_cosine(t, logsnr_min: float = -15.0, logsnr_max: float = 15.0, shift: float = 1.0) -> Tensor:
    """Shifted cosine logSNR (Hoogeboom et al. 2023 "simple diffusion", Sec. 3; DiffMotion training).

    lambda(t) = -2 ln tan(a + t (b - a)) + 2 ln(shift), a = atan(exp(-logsnr_max/2)), b = atan(exp(-logsnr_min/2)).
    shift = base_resolution / resolution (< 1 adds noise). diffmotion: shift = 0.125 -> lambda(0) = 10.841,
    lambda(0.5) = -4.159, lambda(1) = -19.159. Returns a tensor with t's shape (float64 for non-tensor t).
    """
    t = _t(t)
    a, b = _cosine_ab(logsnr_min, logsnr_max)
    return -2.0 * torch.log(torch.tan(a + t * (b - a))) + 2.0 * math.log(shift)


def logsnr_cosine_inverse(logsnr, logsnr_min: float = -15.0, logsnr_max: float = 15.0, shift: float = 1.0) -> Tensor:
    """t such that logsnr_cosine(t, ...) == logsnr (the inverse of :func:`logsnr_cosine`)."""
    lam = _t(logsnr)
    a, b = _cosine_ab(logsnr_min, logsnr_max)
    return (torch.atan(torch.exp(-0.5 * (lam - 2.0 * math.log(shift)))) - a) / (b - a)


def logsnr_cosine_interpolated(t, shift_lo: float, shift_hi: float, logsnr_min: float = -15.0,
                               logsnr_max: float = 15.0) -> Tensor:
    """Interpolated shifted cosine (Hoogeboom et al. 2023, "interpolating the schedule").

    lambda(t) = (1 - t) * lambda_cos(t; shift_lo) + t * lambda_cos(t; shift_hi).
    Naming follows t: ``shift_lo`` is the shift in force at low t (t = 0, clean end) and ``shift_hi`` the shift at
    high t (t = 1, pure noise). The paper's recipe for a d-pixel image starts sampling (t = 1) at the strong shift
    32/d and ends at the mild shift 256/d, i.e. shift_hi = 32/d, shift_lo = 256/d, so high-frequency detail gets
    more low-noise steps than a single strongly shifted cosine gives it.
    """
    t = _t(t)
    lo = logsnr_cosine(t, logsnr_min, logsnr_max, shift_lo)
    hi = logsnr_cosine(t, logsnr_min, logsnr_max, shift_hi)
    return (1.0 - t) * lo + t * hi


# ----------------------------------------------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------------------------------------------

def alpha_sigma(logsnr) -> tuple[Tensor, Tensor]:
    """VP coefficients from logSNR: alpha = sqrt(sigmoid(l)), sigma = sqrt(sigmoid(-l)) (stable at both ends)."""
    lam = _t(logsnr)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def logsnr_to_alpha_bar(logsnr) -> Tensor:
    """alpha_bar = alpha^2 = sigmoid(logsnr)."""
    lam = _t(logsnr)
    return torch.sigmoid(lam)


def alpha_bar_to_logsnr(alpha_bar) -> Tensor:
    """logsnr = ln(alpha_bar / (1 - alpha_bar)) (the logit)."""
    ab = _t(alpha_bar)
    return torch.log(ab) - torch.log1p(-ab)


def logsnr_to_sigma(logsnr) -> Tensor:
    """VP sigma = sqrt(sigmoid(-logsnr))."""
    return alpha_sigma(logsnr)[1]


def sigma_to_logsnr(sigma) -> Tensor:
    """logsnr = ln((1 - sigma^2) / sigma^2) for VP sigma in (0, 1)."""
    s = _t(sigma)
    return torch.log1p(-s * s) - 2.0 * torch.log(s)


# ----------------------------------------------------------------------------------------------------------------------
# diffmotion sampling table and DDIM index lists
# ----------------------------------------------------------------------------------------------------------------------

def discrete_logsnr_table(T: int = 300, logsnr_min: float = -15.0, logsnr_max: float = 15.0, shift: float = 1.0,
                          via_betas: bool = True, beta_clip: tuple[float, float] = (1e-9, 1.0)) -> Tensor:
    """The DiffMotion sampling table (reference code xrhan/diffmotion): float64 logSNR [T], k = 0..T-1, from
    logsnr_max down to logsnr_min.

    lambda_k = -2 ln tan(a + (k/(T-1)) (b - a)) + 2 ln(shift). The reference passes its shift under a keyword the
    builder ignores, so the faithful table is unshifted (shift = 1); ``shift`` is the optional "sampling_shift".
    via_betas=True reproduces the code path: alpha_bar_k = sigmoid(lambda_k) -> betas clipped to ``beta_clip`` ->
    alpha_bar = cumprod(1 - beta) -> logsnr = ln(alpha_bar / (1 - alpha_bar)). The round trip changes little.
    """
    if T < 2:
        raise ValueError(f"discrete_logsnr_table needs T >= 2, got {T}")
    k = torch.arange(T, dtype=torch.float64)
    lam = logsnr_cosine(k / (T - 1), logsnr_min, logsnr_max, shift)
    if not via_betas:
        return lam
    betas = alpha_bar_to_betas(torch.sigmoid(lam)).clamp(*beta_clip)
    return alpha_bar_to_logsnr(betas_to_alpha_bar(betas))


def _check_steps(T: int, n: int) -> None:
    if not (1 <= n <= T):
        raise ValueError(f"need 1 <= n <= T for a DDIM index list, got T={T}, n={n}")


def ddim_timesteps_round(T: int, n: int) -> list[int]:
    """diffusers "linspace" spacing used by the mssfs reference: round(linspace(0, T-1, n)) reversed.

    T=300, n=50 -> [299, 293, ..., 6, 0]; list[15] = 207, list[40] = 55. Exact rational arithmetic with
    round-half-to-even (numpy's rule), so no float ties can flip an index.
    """
    _check_steps(T, n)
    if n == 1:
        return [0]
    vals = [round(Fraction(i * (T - 1), n - 1)) for i in range(n)]
    return vals[::-1]


def ddim_timesteps_floor(T: int, n: int) -> list[int]:
    """DiffMotion sampling rows (reference code): integer part (toward 0) of linspace(-1, T-1, n+1), reversed.

    T=300, n=50 -> 51 entries [299, 293, ..., 11, 5, -1]; -1 means "clean" (alpha_bar = 1). n network calls.
    """
    _check_steps(T, n)
    # linspace(-1, T-1, n+1)[i] = -1 + i*T/n, evaluated exactly.
    vals = [math.trunc(Fraction(-n + i * T, n)) for i in range(n + 1)]
    return vals[::-1]


def abar_sequence(alpha_bar: Tensor, timesteps, final: float | None = 1.0) -> list[float]:
    """Map an index list to alpha_bar values for :func:`ddim_sample`; negative indices mean clean (1.0).

    ``final`` (default 1.0) is appended unless the list already ends in a negative index or ``final`` is None.
    """
    ab = alpha_bar.double().tolist()
    out = [1.0 if k < 0 else ab[k] for k in timesteps]
    if final is not None and not (len(timesteps) and timesteps[-1] < 0):
        out.append(final)
    return out
