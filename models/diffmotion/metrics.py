"""Metric helpers for the DiffMotion learning and diversity checks (models/diffmotion/checks.py).

Pure functions on torch tensors in the model's layout: frames/targets are [T, C, H, W] (or [..., C, H, W]) with the
channel axis third from the end, values in the model space [-1, 1] unless a function says otherwise, masks are
[T, H, W] booleans. Per-image quantities are returned per frame ([T], NaN where a frame has no foreground) so the
caller decides how to average ("averaged over frames" = nanmean over the T values).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import torch

from models.core.geometry import angular_error  # noqa: F401  (re-exported: the one definition)
from models.diffmotion.channels import ALBEDO, MATERIAL, MATERIAL_NAMES, NORMAL, foreground_mask  # noqa: F401

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)  # degrees; the classic normal-estimation accuracy bins


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Model space [-1, 1] -> [0, 1] by (x + 1)/2, clipped (the display mapping, without quantisation)."""
    return ((x.double() + 1.0) * 0.5).clamp(0.0, 1.0)


def masked_frame_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [T, H, W] over mask [T, H, W] per frame -> [T] float64 (NaN for frames without foreground)."""
    m = mask.to(torch.float64)
    count = m.sum(dim=(-2, -1))
    total = (values.double() * m).sum(dim=(-2, -1))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def frame_average(per_frame: torch.Tensor) -> float:
    """Average of per-frame values over frames that have foreground (NaN if none)."""
    v = per_frame.double()
    v = v[~torch.isnan(v)]
    return float(v.mean()) if v.numel() else float("nan")


def normal_angular_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                          thresholds: Iterable[float] = ANGLE_THRESHOLDS) -> dict[str, torch.Tensor]:
    """Normal metrics per frame for pred/gt [T, >=3, H, W] (channels 0:3 are the normal): {"mae": [T] mean angular
    error in degrees, "under_<t>": [T] share of foreground pixels with error < t degrees}."""
    err = angular_error(pred[..., NORMAL, :, :], gt[..., NORMAL, :, :])
    out = {"mae": masked_frame_mean(err, mask)}
    for t in thresholds:
        out[f"under_{t:g}"] = masked_frame_mean((err < t).double(), mask)
    return out


def si_mse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-invariant MSE per frame [T] for images pred/gt [T, C, H, W] already in [0, 1] (the albedo metric).

    Per image and channel the prediction is scaled by the least-squares s = <p, g> / <p, p> over the foreground, the
    error is mean((s p - g)^2) over the foreground, and the channels are averaged. An all-zero prediction gets s = 0.
    """
    p, g = pred.double(), gt.double()
    m = mask.to(torch.float64).unsqueeze(-3)  # [T, 1, H, W]
    pp = (p * p * m).sum(dim=(-2, -1))
    pg = (p * g * m).sum(dim=(-2, -1))
    s = torch.where(pp > 0, pg / pp.clamp_min(1e-300), torch.zeros_like(pp))
    err = ((s[..., None, None] * p - g).square() * m).sum(dim=(-2, -1))  # [T, C]
    count = m.sum(dim=(-2, -1))
    per_channel = torch.where(count > 0, err / count.clamp_min(1), torch.full_like(err, float("nan")))
    return per_channel.mean(dim=-1)


def mae_per_channel(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the foreground per frame and channel -> [T, C] (inputs on the same scale)."""
    diff = (pred.double() - gt.double()).abs()
    return torch.stack([masked_frame_mean(diff[..., c, :, :], mask) for c in range(diff.shape[-3])], dim=-1)


def pairwise_angular_diversity(samples: torch.Tensor, mask: torch.Tensor) -> float:
    """Diversity D: mean over seed pairs (i < j) of the foreground-mean angle between their normal maps.

    samples [K, T, >=3, H, W] (channels 0:3 = normal), mask [T, H, W]; the per-pair value is averaged over frames.
    NaN for K < 2.
    """
    k = samples.shape[0]
    if k < 2:
        return float("nan")
    normals = samples[:, :, NORMAL]
    vals = [frame_average(masked_frame_mean(angular_error(normals[i], normals[j]), mask))
            for i, j in itertools.combinations(range(k), 2)]
    return float(sum(vals) / len(vals))


def min_pairwise_max_abs_diff(samples: torch.Tensor) -> float:
    """min over seed pairs of max |sample_i - sample_j| (all channels and pixels); > 1e-3 means no two seeds are
    identical. NaN for fewer than 2 samples."""
    k = samples.shape[0]
    if k < 2:
        return float("nan")
    flat = samples.reshape(k, -1).double()
    return min(float((flat[i] - flat[j]).abs().max()) for i, j in itertools.combinations(range(k), 2))


def training_baselines(targets: Iterable[torch.Tensor], tol: float = 0.1) -> dict[str, torch.Tensor]:
    """Trivial baselines of the learning check from GT targets [9, H, W] (model space) of the training frames.

    Returns {"normal_map": [3, H, W] per-pixel mean of the foreground GT normals, renormalised ((0, 0, 1) where no
    training frame has foreground), "albedo": [3] and "material": [3] means over all foreground pixels in [0, 1],
    "frames": number of frames, "fg_share": mean foreground share}. Background pixels (GT normal length outside
    1 +- tol) are excluded: their -1 value would drag the means and make the baselines needlessly weak.
    """
    nsum = cnt = None
    asum, msum = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    npix, nframes, fg_share = 0, 0, 0.0
    for tgt in targets:
        t = tgt.double()
        fg = foreground_mask(t, tol).double()
        if nsum is None:
            nsum, cnt = torch.zeros_like(t[NORMAL]), torch.zeros_like(fg)
        nsum += t[NORMAL] * fg
        cnt += fg
        asum += (to_unit_range(t[ALBEDO]) * fg).sum(dim=(-2, -1))
        msum += (to_unit_range(t[MATERIAL]) * fg).sum(dim=(-2, -1))
        npix += int(fg.sum())
        nframes += 1
        fg_share += float(fg.mean())
    if nsum is None or npix == 0:
        raise ValueError("training_baselines: no training frames with foreground")
    mean_n = nsum / cnt.clamp_min(1)
    length = mean_n.norm(dim=0, keepdim=True)
    facing = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)[:, None, None].expand_as(mean_n)
    normal_map = torch.where((cnt > 0) & (length[0] > 1e-8), mean_n / length.clamp_min(1e-8), facing)
    return {"normal_map": normal_map, "albedo": asum / npix, "material": msum / npix,
            "frames": torch.tensor(nframes), "fg_share": torch.tensor(fg_share / nframes)}


def constant_normals(shape_thw: tuple[int, int, int], dtype=torch.float64) -> torch.Tensor:
    """Baseline B1: camera-facing (0, 0, 1) everywhere -> [T, 3, H, W]."""
    t, h, w = shape_thw
    out = torch.zeros(t, 3, h, w, dtype=dtype)
    out[:, 2] = 1.0
    return out


def ratio_rule(value: float, reference: float, factor: float) -> bool:
    """value <= factor * reference, False when either is NaN (an unmeasured check never passes)."""
    return not (math.isnan(value) or math.isnan(reference)) and value <= factor * reference
