"""Conversions between the eps / x0 / v parameterizations of a VP diffusion state.

x_t = alpha * x0 + sigma * eps with alpha^2 + sigma^2 = 1, and v = alpha * eps - sigma * x0
(Salimans & Ho 2022, "progressive distillation", Sec. 4, App. D). Every function takes alpha and sigma as floats or
tensors; a tensor with fewer dims than x is treated as a PREFIX of x's shape and padded with trailing singleton dims
(e.g. [B] -> [B,1,1,1], per-frame [B,T] -> [B,T,1,1,1]); a tensor with x's ndim broadcasts as usual.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "PREDICTIONS", "append_dims", "x0_from_eps", "eps_from_x0", "x0_from_v", "eps_from_v", "v_from_eps_x0",
    "v_from_x0", "v_from_eps", "predict_x0_eps", "convert_prediction", "make_target", "q_sample",
]

PREDICTIONS = ("eps", "x0", "v")


def append_dims(c, x: Tensor) -> Tensor | float:
    """Return ``c`` ready to broadcast against ``x``: floats pass through, tensors get trailing singleton dims."""
    if not torch.is_tensor(c):
        return c
    if c.ndim > x.ndim:
        raise ValueError(f"coefficient with shape {tuple(c.shape)} has more dims than x {tuple(x.shape)}")
    return c.reshape(*c.shape, *([1] * (x.ndim - c.ndim)))


def _prep(x: Tensor, *cs):
    return [append_dims(c, x) for c in cs]


def q_sample(x0: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
    """The forward (noising) process x_t = alpha * x0 + sigma * eps (DDPM eq. 4 with alpha = sqrt(alpha_bar))."""
    a, s = _prep(x0, alpha, sigma)
    return a * x0 + s * eps


def x0_from_eps(x_t: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
    """x0 = (x_t - sigma * eps) / alpha (DDPM eq. 15 / DDIM eq. 12 "predicted x0")."""
    a, s = _prep(x_t, alpha, sigma)
    return (x_t - s * eps) / a


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha, sigma) -> Tensor:
    """eps = (x_t - alpha * x0) / sigma."""
    a, s = _prep(x_t, alpha, sigma)
    return (x_t - a * x0) / s


def x0_from_v(x_t: Tensor, v: Tensor, alpha, sigma) -> Tensor:
    """x0 = alpha * x_t - sigma * v (uses alpha^2 + sigma^2 = 1)."""
    a, s = _prep(x_t, alpha, sigma)
    return a * x_t - s * v


def eps_from_v(x_t: Tensor, v: Tensor, alpha, sigma) -> Tensor:
    """eps = sigma * x_t + alpha * v (uses alpha^2 + sigma^2 = 1)."""
    a, s = _prep(x_t, alpha, sigma)
    return s * x_t + a * v


def v_from_eps_x0(eps: Tensor, x0: Tensor, alpha, sigma) -> Tensor:
    """v = alpha * eps - sigma * x0 (the v training target)."""
    a, s = _prep(eps, alpha, sigma)
    return a * eps - s * x0


def v_from_x0(x_t: Tensor, x0: Tensor, alpha, sigma) -> Tensor:
    """v from x_t and x0: (alpha * x_t - x0) / sigma."""
    a, s = _prep(x_t, alpha, sigma)
    return (a * x_t - x0) / s


def v_from_eps(x_t: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
    """v from x_t and eps: (eps - sigma * x_t) / alpha."""
    a, s = _prep(x_t, alpha, sigma)
    return (eps - s * x_t) / a


def predict_x0_eps(x_t: Tensor, pred: Tensor, alpha, sigma, kind: str) -> tuple[Tensor, Tensor]:
    """Turn a network output of type ``kind`` ("eps" | "x0" | "v") into (x0_hat, eps_hat)."""
    if kind == "eps":
        return x0_from_eps(x_t, pred, alpha, sigma), pred
    if kind == "x0":
        return pred, eps_from_x0(x_t, pred, alpha, sigma)
    if kind == "v":
        return x0_from_v(x_t, pred, alpha, sigma), eps_from_v(x_t, pred, alpha, sigma)
    raise ValueError(f"unknown prediction kind {kind!r}; expected one of {PREDICTIONS}")


def convert_prediction(x_t: Tensor, pred: Tensor, alpha, sigma, src: str, dst: str) -> Tensor:
    """Re-express a ``src`` prediction as a ``dst`` prediction ("eps" | "x0" | "v") at the same state."""
    if src == dst:
        return pred
    x0, eps = predict_x0_eps(x_t, pred, alpha, sigma, src)
    return make_target(x0, eps, alpha, sigma, dst)


def make_target(x0: Tensor, eps: Tensor, alpha, sigma, kind: str) -> Tensor:
    """Training target of type ``kind`` for clean data x0 and noise eps."""
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return v_from_eps_x0(eps, x0, alpha, sigma)
    raise ValueError(f"unknown prediction kind {kind!r}; expected one of {PREDICTIONS}")
