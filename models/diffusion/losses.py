"""Loss weightings as functions of logSNR, plus the analytic loss-at-init used as a DiffMotion check.

A weight returned by :func:`loss_weight` multiplies the squared error of the chosen ``target`` ("eps" | "v" | "x0").
Identities used to move a weighting between targets (VP, snr = exp(logsnr)):
    (eps_hat - eps)^2 = alpha^2 (v_hat - v)^2 = snr (x0_hat - x0)^2,    alpha^2 = sigmoid(logsnr).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .parameterization import append_dims
from .schedules import logsnr_cosine

__all__ = ["WEIGHTINGS", "loss_weight", "weighted_mse", "expected_loss_at_init"]

WEIGHTINGS = ("uniform", "sigmoid", "min_snr")


def _eps_to_target(log_w_eps: Tensor, lam: Tensor, target: str) -> Tensor:
    # Work in log space so exp(logsnr) never overflows or cancels.
    if target == "eps":
        return log_w_eps.exp()
    if target == "v":
        return (log_w_eps + F.logsigmoid(lam)).exp()
    if target == "x0":
        return (log_w_eps + lam).exp()
    raise ValueError(f"unknown target {target!r}; expected 'eps', 'v' or 'x0'")


def loss_weight(kind: str, logsnr, *, target: str = "eps", bias: float = -1.0, gamma: float = 5.0) -> Tensor:
    """Per-sample loss weight for the MSE on ``target``.

    - "uniform": 1, i.e. plain MSE on whatever the target is.
    - "sigmoid": Kingma & Gao 2023 (eq. 19 with bias b) / SiD2: w_eps = sigmoid(bias - logsnr) on the eps-MSE;
      DiffMotion uses bias = -1 (the sigmoid weighting of Kingma & Gao 2023). For target "v" it becomes
      sigmoid(bias - l) * sigmoid(l), for "x0"
      sigmoid(bias - l) * exp(l), so the objective is the same whichever target the net predicts.
    - "min_snr": Hang et al. 2023 (min-SNR-gamma): min(snr, gamma) on the x0-MSE, i.e. min(snr, gamma)/snr for eps,
      min(snr, gamma)/(snr + 1) for v, min(snr, gamma) for x0.
    """
    lam = torch.as_tensor(logsnr) if not torch.is_tensor(logsnr) else logsnr
    if not lam.is_floating_point():
        lam = lam.double()
    if kind == "uniform":
        if target not in ("eps", "v", "x0"):
            raise ValueError(f"unknown target {target!r}; expected 'eps', 'v' or 'x0'")
        return torch.ones_like(lam)
    if kind == "sigmoid":
        return _eps_to_target(F.logsigmoid(bias - lam), lam, target)
    if kind == "min_snr":
        # log(min(snr, gamma) / snr) = min(0, log(gamma) - logsnr)
        return _eps_to_target(torch.clamp(math.log(gamma) - lam, max=0.0), lam, target)
    raise ValueError(f"unknown weighting {kind!r}; expected one of {WEIGHTINGS}")


def weighted_mse(pred: Tensor, target: Tensor, weight=None) -> Tensor:
    """mean(weight * (pred - target)^2) over all elements; ``weight`` broadcasts as a prefix of pred's shape."""
    err = (pred - target) ** 2
    if weight is not None:
        err = append_dims(weight, err).to(err.dtype) * err
    return err.mean()


def expected_loss_at_init(m2: float, logsnr_fn: Callable[[Tensor], Tensor] | None = None, bias: float = -1.0,
                          n: int = 100_000) -> float:
    """E_t[ w alpha^2 (alpha^2 + sigma^2 m2) ] for a v-predicting net that outputs 0 (DiffMotion's loss).

    With v_hat = 0: eps_hat = sigma z, eps_hat - eps = alpha sigma x0 - alpha^2 eps, whose mean square is
    alpha^2 (alpha^2 + sigma^2 m2) for m2 = E[x0^2]; w = sigmoid(bias - logsnr) is the eps-space weight.
    t ~ U[0, 1]; the default schedule is diffmotion's shifted cosine (shift 0.125). Midpoint rule with n points.
    Spec values: 0.0085 / 0.0217 / 0.0348 for m2 = 0 / 0.5 / 1.
    """
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    lam = logsnr_fn(t) if logsnr_fn is not None else logsnr_cosine(t, shift=0.125)
    lam = lam.double()
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    w = torch.sigmoid(bias - lam)
    return (w * a2 * (a2 + s2 * m2)).mean().item()
