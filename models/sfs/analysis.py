"""Evaluation helpers for SfS sample sets (the analysis of Multistable SfS, Han, Zickler & Nishino, NeurIPS 2024, and
our B checks): angular errors, convex/concave mode split, Wasserstein distance between sample sets, 2-D embeddings,
seam statistics, lighting coherence and simple baselines.

Normal maps are [.., 3, H, W] in the frame x right, y up, z to the viewer; masks are {0,1} [H, W] (1 = evaluated).
All functions accept torch tensors or numpy arrays and return plain Python numbers / numpy arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.core import geometry
from models.core.geometry import flip_normals
from models.sfs.lcg import fit_tile_lights, select_pixels
from models.sfs.tiling import PATCH, resize, tile


def _t(x, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(dtype)


def _unit(n: torch.Tensor) -> torch.Tensor:
    return n / n.norm(dim=-3, keepdim=True).clamp_min(1e-12)


def flip(n) -> torch.Tensor:
    """Depth-reversed field (-n_x, -n_y, n_z) of [.., 3, H, W], as a float64 tensor."""
    return flip_normals(_t(n), dim=-3)


# -- angular errors (reference compute_mae_mask) ----------------------------------------------------------------------
def angular_error(pred, gt, mask=None) -> tuple[float, float]:
    """(mean, median) angle in degrees over the mask (all pixels when None); pred/gt [3, H, W]."""
    return geometry.angular_error_stats(pred, gt, mask)


# -- baselines --------------------------------------------------------------------------------------------------------
def flat_normals(h: int, w: int, mask=None) -> np.ndarray:
    """The flat-surface baseline n = (0, 0, 1) [3, H, W] (background 0 when a mask is given)."""
    n = np.zeros((3, h, w), np.float32)
    n[2] = 1.0
    return n if mask is None else n * (np.asarray(mask) > 0.5)


def inflation_normals(mask) -> np.ndarray:
    """Silhouette inflation: h = sqrt(D (2R - D)), D = distance transform of the mask, R = max D; normals by finite
    differences of h (pixel units), n ∝ (-dh/dcol, +dh/drow, 1); background 0."""
    from scipy.ndimage import distance_transform_edt

    m = np.asarray(mask) > 0.5
    d = distance_transform_edt(m)
    r = max(float(d.max()), 1e-6)
    h = np.sqrt(np.clip(d * (2 * r - d), 0, None))
    n = geometry.normals_from_height(torch.from_numpy(h)).numpy()
    return (n * m).astype(np.float32)


# -- modes ---------------------------------------------------------------------------------------------------------------
def lambertian_r2(normals, image, mask=None, min_intensity: float = 1e-5) -> float:
    """How well ONE directional light explains `image` [H, W] on the map `normals` [3, H, W]: R^2 of the least-squares
    fit I ~ n . l (l free, so it absorbs the albedo) over the lit foreground pixels (I >= min_intensity).

    The Lambertian model of the paper's stimuli; a flat map predicts a constant and scores 0, a map of noise about 0
    or below, the true map (or its depth-reversed twin under the mirrored light) 1.
    """
    n, img = _t(normals).cpu(), _t(image).cpu().reshape(np.shape(image)[-2:])
    sel = img >= min_intensity
    if mask is not None:
        sel &= _t(mask).reshape(sel.shape) > 0.5
    x, y = n[:, sel].T, img[sel]
    sst = float(((y - y.mean()) ** 2).sum()) if y.numel() else 0.0
    if y.numel() < 3 or sst <= 0:
        return float("nan")
    l = torch.linalg.lstsq(x, y[:, None], driver="gelsd").solution  # SVD: rank-deficient x (a flat map) is fine
    return 1.0 - float(((x @ l)[:, 0] - y).square().sum()) / sst


def mode_split(samples, gt, mask=None, image=None, r2_min: float = 0.5) -> dict:
    """Assign each sample [S, 3, H, W] to the GT or depth-reversed ("flip") mode by the lower mean angle (check B4).

    With `image` (the input shading at the samples' size) a sample counts for its mode only when it explains the
    image (one-light Lambertian R^2 >= r2_min) and is closer to that mode than the flat map (0, 0, 1) is; otherwise
    its mode is "none". Without the gate a near-flat GT lets any blurry map "find" both modes: on a stimulus whose
    GT is 5 deg from flat, maps 12 deg from GT and 12 deg from the flip split at random between them.
    """
    samples, gt = _t(samples), _t(gt)
    e_gt = [angular_error(s, gt, mask)[0] for s in samples]
    e_fl = [angular_error(s, flip(gt), mask)[0] for s in samples]
    modes = ["gt" if a <= b else "flip" for a, b in zip(e_gt, e_fl)]
    out = {"err_gt": e_gt, "err_flip": e_fl,
           "mode_err": float(np.mean([min(a, b) for a, b in zip(e_gt, e_fl)]))}
    if image is not None:
        flat = angular_error(flat_normals(*gt.shape[-2:]), gt, mask)[0]  # the same for GT and flip (flip keeps z)
        r2 = [lambertian_r2(s, image, mask) for s in samples]
        modes = [m if r >= r2_min and min(a, b) < flat else "none" for m, r, a, b in zip(modes, r2, e_gt, e_fl)]
        out.update(r2=r2, flat_err=flat, r2_min=r2_min)
    n_gt, n_fl = modes.count("gt"), modes.count("flip")
    out.update(modes=modes, n_gt=n_gt, n_flip=n_fl, n_none=len(modes) - n_gt - n_fl, minority=min(n_gt, n_fl))
    return out


# -- optimal transport ---------------------------------------------------------------------------------------------------
def wasserstein(x, y) -> float:
    """Exact W1 (earth mover's) cost between point sets x [m, d] and y [k, d] with uniform weights, Euclidean cost.

    m == k: an optimal plan is a permutation (Birkhoff), so linear_sum_assignment is exact. Otherwise the transport LP
    is solved with scipy's HiGHS.
    """
    from scipy.optimize import linear_sum_assignment, linprog
    from scipy.sparse import coo_matrix, vstack

    x, y = np.asarray(x, np.float64).reshape(len(x), -1), np.asarray(y, np.float64).reshape(len(y), -1)
    cost = np.sqrt(np.maximum(((x[:, None] - y[None]) ** 2).sum(-1), 0.0))
    m, k = cost.shape
    if m == k:
        r, c = linear_sum_assignment(cost)
        return float(cost[r, c].mean())
    idx = np.arange(m * k)
    rows = coo_matrix((np.ones(m * k), (idx // k, idx)), shape=(m, m * k))
    cols = coo_matrix((np.ones(m * k), (idx % k, idx)), shape=(k, m * k))
    b = np.concatenate([np.full(m, 1.0 / m), np.full(k, 1.0 / k)])
    res = linprog(cost.ravel(), A_eq=vstack([rows, cols]).tocsr(), b_eq=b, bounds=(0, None), method="highs")
    if not res.success:
        raise RuntimeError(f"transport LP failed: {res.message}")
    return float(res.fun)


def flatten_maps(maps, size: int = 32) -> np.ndarray:
    """[M, 3, H, W] -> [M, 3*size*size]: renormalize, bilinear resize to size² (as the reference post_process.py),
    flatten."""
    m = _unit(_t(maps, torch.float32))
    return resize(m, size).flatten(1).numpy()


# -- 2-D embedding -------------------------------------------------------------------------------------------------------
def embed_2d(features, method: str = "auto", perplexity: float = 30.0, seed: int = 2) -> tuple[np.ndarray, str]:
    """2-D embedding of [M, D] features: t-SNE (sklearn, if installed and M > perplexity) or PCA (torch SVD)."""
    x = np.asarray(features, np.float64)
    if method in ("auto", "tsne") and len(x) > perplexity:
        try:
            from models.core.optional import require

            manifold = require("sklearn.manifold", feature="t-SNE embedding")
            pts = manifold.TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
            return np.asarray(pts), "tsne"
        except ImportError:
            if method == "tsne":
                raise
    xt = torch.as_tensor(x - x.mean(0, keepdims=True))
    _, _, v = torch.linalg.svd(xt, full_matrices=False)
    pts = (xt @ v[:2].T).numpy()
    if pts.shape[1] < 2:
        pts = np.pad(pts, ((0, 0), (0, 2 - pts.shape[1])))
    return pts, "pca"


def plot_embedding(points, labels: list[str], path: str | Path, title: str = "") -> Path:
    """Scatter plot of a 2-D embedding, one colour per label; saved atomically, figure closed."""
    from data.io import atomic_write
    from models.core.optional import require

    plt = _pyplot(require)
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        pts = np.asarray(points)
        for name in dict.fromkeys(labels):
            sel = np.array([lab == name for lab in labels])
            ax.scatter(pts[sel, 0], pts[sel, 1], s=24, label=name)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def _pyplot(require):
    mpl = require("matplotlib", feature="plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- seams and lighting (checks B2, B7) -------------------------------------------------------------------------------
def seam_ratio(normals, patch: int = PATCH, mask=None) -> dict:
    """Mean angle (deg) between neighbours across tile seams vs inside tiles; S = seam / interior (check B2)."""
    n = _unit(_t(normals))
    m = None if mask is None else _t(mask) > 0.5
    seam, inner = [], []
    for axis in (-2, -1):  # vertical neighbours (row pairs), then horizontal neighbours (column pairs)
        a = n.narrow(axis, 0, n.shape[axis] - 1)
        b = n.narrow(axis, 1, n.shape[axis] - 1)
        ang = geometry.angular_error(a, b, dim=0)
        pos = torch.arange(n.shape[axis] - 1)
        is_seam = (pos % patch) == patch - 1
        is_seam = is_seam.view(-1, 1) if axis == -2 else is_seam.view(1, -1)
        keep = torch.ones_like(ang, dtype=torch.bool)
        if m is not None:
            keep = m.narrow(axis, 0, m.shape[axis] - 1) & m.narrow(axis, 1, m.shape[axis] - 1)
        seam.append(ang[is_seam.expand_as(ang) & keep])
        inner.append(ang[~is_seam.expand_as(ang) & keep])
    s, i = torch.cat(seam).mean().item(), torch.cat(inner).mean().item()
    return {"seam_deg": s, "interior_deg": i, "ratio": s / max(i, 1e-9)}


def global_light(normals, image, mask=None) -> np.ndarray:
    """One least-squares light [3] from all selected pixels of a map (LCG's pixel rule), normalized."""
    n, img = _t(normals)[None], _t(image).reshape(1, 1, *np.shape(image)[-2:])
    sel = select_pixels(img, None if mask is None else _t(mask).reshape(img.shape))
    x = n.flatten(2)[0].T[sel.flatten()]
    y = img.flatten()[sel.flatten()]
    if x.shape[0] < 3:
        return np.zeros(3)
    l = torch.linalg.lstsq(x, y[:, None], driver="gelsd").solution  # SVD: rank-deficient x (a flat map) is fine[:, 0]
    return (l / l.norm().clamp_min(1e-12)).numpy()


def tile_lights(normals, image, mask=None, min_pixels: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile least-squares lights [N, 3] and used flags [N] of one map (LCG step 2)."""
    n, img = _t(normals)[None], _t(image).reshape(1, 1, *np.shape(image)[-2:])
    sel = select_pixels(img, None if mask is None else _t(mask).reshape(img.shape))
    light, used = fit_tile_lights(tile(n), tile(img), tile(sel.double()) > 0.5, min_pixels, faithful_norm=False)
    return light.numpy(), used.numpy()


def lighting_coherence(normals, image, mask=None, min_pixels: int = 10) -> float:
    """Fraction of used tiles whose light tilt is within 90° of the global light's tilt (check B7)."""
    g = global_light(normals, image, mask)
    lights, used = tile_lights(normals, image, mask, min_pixels)
    if not used.any() or np.linalg.norm(g[:2]) < 1e-9:
        return float("nan")
    return float(((lights[used, :2] @ g[:2]) > 0).mean())
