"""Evaluation of a fitted SfD scene against synthetic ground truth, computed the way they should be (decoded unit
normals, frames aligned before comparing env maps). Images are compared after clip(x, 0, 1)^(1/2.2).

3D metrics follow the common reconstruction protocol (e.g. DTU/Tanks-and-Temples style): Chamfer-L1 = mean of the two
directed mean nearest-neighbour distances, F-score at a distance threshold, normal consistency = mean |n_pred . n_gt|
over nearest-neighbour pairs; all distances reported as a fraction of the GT bounding-box diagonal.
"""
from __future__ import annotations

import math

import numpy as np


def tonemap(x):
    return np.clip(x, 0, 1) ** (1 / 2.2)


def psnr(pred, gt, mask=None):
    err = (np.asarray(pred, np.float64) - gt) ** 2
    if mask is not None:
        err = err[mask]
    mse = float(err.mean()) if err.size else float("nan")
    return -10 * math.log10(max(mse, 1e-12))


def ssim(pred, gt, window: int = 7, sigma: float = 1.5):
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, per channel, data range 1."""
    import cv2

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pred, gt = np.atleast_3d(pred).astype(np.float64), np.atleast_3d(gt).astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (window, window), sigma)  # noqa: E731
    out = []
    for ch in range(pred.shape[2]):
        x, y = pred[..., ch], gt[..., ch]
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def mask_iou(pred, gt):
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def normal_angle_deg(pred, gt, mask):
    """Mean angle between unit normals (decoded vectors, not their (n+1)/2 encodings)."""
    p = pred[mask] / np.linalg.norm(pred[mask], axis=-1, keepdims=True).clip(1e-9)
    g = gt[mask] / np.linalg.norm(gt[mask], axis=-1, keepdims=True).clip(1e-9)
    return float(np.degrees(np.arccos(np.clip((p * g).sum(-1), -1, 1))).mean())


def encoded_normal_angle_deg(pred, gt, mask):
    """The original's number: both normals encoded to (n+1)/2 and renormalised there (underestimates the error)."""
    return normal_angle_deg((pred + 1) / 2, (gt + 1) / 2, mask)


def albedo_psnr(pred, gt, mask):
    """(raw, scale-aligned) PSNR of tonemapped albedo; the per-channel scale sum(gt)/sum(pred) over the mask removes
    the albedo/light scale ambiguity of inverse rendering."""
    p, g = tonemap(pred), tonemap(gt)
    scale = g[mask].sum(0) / np.maximum(p[mask].sum(0), 1e-9)
    return psnr(p, g, mask), psnr(np.clip(p * scale, 0, 1), g, mask)


def roughness_errors(pred, gt, mask):
    d = np.asarray(pred)[mask] - gt
    return {"roughness_mae": float(np.abs(d).mean()), "roughness_mse": float((d ** 2).mean())}


def sample_mesh(verts, faces, n: int, rng: np.random.Generator):
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    pts = (1 - s)[:, None] * a[idx] + (s * (1 - r2))[:, None] * b[idx] + (s * r2)[:, None] * c[idx]
    return pts, cross[idx] / np.linalg.norm(cross[idx], axis=1, keepdims=True).clip(1e-12)


def surface_metrics(pred_pts, pred_n, gt_pts, gt_n, diag: float, taus=(0.005, 0.01, 0.02)) -> dict:
    from scipy.spatial import cKDTree

    d_pg, i_pg = cKDTree(gt_pts).query(pred_pts)
    d_gp, i_gp = cKDTree(pred_pts).query(gt_pts)
    out = {"chamfer_l1": float((d_pg.mean() + d_gp.mean()) / 2 / diag),
           "accuracy": float(d_pg.mean() / diag), "completeness": float(d_gp.mean() / diag),
           "normal_consistency": float((np.abs((pred_n * gt_n[i_pg]).sum(1)).mean()
                                        + np.abs((gt_n * pred_n[i_gp]).sum(1)).mean()) / 2)}
    for tau in taus:
        prec, rec = (d_pg < tau * diag).mean(), (d_gp < tau * diag).mean()
        out[f"fscore@{tau * 100:g}%"] = float(2 * prec * rec / max(prec + rec, 1e-12))
    return out


def rotation_between_frames(poses_pred, poses_gt) -> np.ndarray:
    """World rotation taking the predicted world frame to the GT one, averaged over instances (R_gt R_pred^T, then
    projected back onto SO(3)): the learned world frame is arbitrary, so env maps are compared after this."""
    m = sum(g[:3, :3] @ p[:3, :3].T for p, g in zip(poses_pred, poses_gt))
    u, _, vt = np.linalg.svd(m)
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    return u @ d @ vt


def envmap_error(light_pred: dict, light_gt: dict, rot_pred_to_gt: np.ndarray, height: int = 32, width: int = 64):
    """MSE of tonemapped lat-long maps after rotating the predicted SG axes into the GT frame, and a
    scale-aligned variant (global scale fitted in closed form)."""
    from models.sfd import scene_layout as L

    dirs = L.latlong_directions(height, width)
    pred = {k: np.asarray(v, np.float64) for k, v in light_pred.items()}
    pred["axis"] = (pred["axis"] / np.linalg.norm(pred["axis"], axis=1, keepdims=True)) @ rot_pred_to_gt.T
    p, g = L.eval_light(pred, dirs), L.eval_light(light_gt, dirs)
    s = float((p * g).sum() / max((p * p).sum(), 1e-12))
    return {"env_mse": float(((tonemap(p) - tonemap(g)) ** 2).mean()),
            "env_mse_scaled": float(((tonemap(s * p) - tonemap(g)) ** 2).mean())}
