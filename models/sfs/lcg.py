"""Lighting-consistency guidance, LCG (Multistable SfS, Han, Zickler & Nishino, NeurIPS 2024): make every tile agree
on one convex/concave interpretation.

Steps, per sample: select informative pixels; fit one light per tile by least squares; split the tile lights into two
clusters with 2-means; flip (n_x, n_y -> -n_x, -n_y) the minority tiles whose depth-reversed light is at least `margin`
closer (in cosine) to the majority centroid. The caller then re-noises and resumes sampling (done in vcycle.py).

Faithful quirks kept (and documented): the light is normalized as l / ||l + 1e-4|| (the 1e-4 is added to every
component before the norm; `faithful_norm=False` gives plain l / ||l||); the per-tile pixel threshold defaults to the
reference CLI's 10. Changed on purpose: k-means is our own deterministic 2-means seeded from the sample's generator (the
reference used sklearn with the global NumPy seed), and there is no assert on l_z ~ 0.
All the linear algebra runs in float64 on the CPU: it is tiny, and CUDA's lstsq cannot handle rank-deficient tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.core.geometry import flip_normals
from models.sfs.tiling import PATCH, tile


def select_pixels(image: torch.Tensor, mask: torch.Tensor | None = None, min_intensity: float = 1e-5) -> torch.Tensor:
    """Pixels with I >= min_intensity and |grad I|^2 >= its median over such pixels; bool [S, 1, H, W].

    Gradients are central differences with one-sided borders (numpy.gradient), no smoothing; the median is numpy's
    (mean of the two middle values). With a mask, background pixels are never selected.
    """
    img = image.double()
    gy, gx = torch.gradient(img, dim=(-2, -1))
    g2 = gx * gx + gy * gy
    valid = img >= min_intensity
    if mask is not None:
        valid = valid & (mask.to(valid.device) > 0.5)
    out = torch.zeros_like(valid)
    for s in range(img.shape[0]):
        vals = g2[s][valid[s]]
        if vals.numel() == 0:
            continue
        out[s] = valid[s] & (g2[s] >= torch.quantile(vals, 0.5))
    return out


def fit_tile_lights(normal_tiles: torch.Tensor, image_tiles: torch.Tensor, selected: torch.Tensor,
                    min_pixels: int = 10, faithful_norm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares light per tile: argmin_l ||X_sel l - I_sel|| (no clamping, no albedo split).

    normal_tiles [T, 3, P, P], image_tiles / selected [T, 1, P, P]. Returns (unit-ish lights [T, 3] float64, used [T]).
    Tiles with fewer than `min_pixels` selected pixels, or a degenerate fit (sum |l| <= 1e-3), are unused.
    """
    x = normal_tiles.detach().double().cpu().flatten(2).transpose(1, 2)  # [T, P*P, 3]
    i = image_tiles.detach().double().cpu().flatten(2).transpose(1, 2)  # [T, P*P, 1]
    w = selected.detach().cpu().flatten(2).transpose(1, 2).double()
    count = w.sum((1, 2))
    # zeroed rows contribute nothing, so this equals lstsq on the selected rows only (minimum-norm if rank-deficient)
    sol = torch.linalg.lstsq(x * w, i * w, driver="gelsd").solution[:, :, 0]
    if faithful_norm:
        light = sol / (sol + 1e-4).norm(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        light = sol / sol.norm(dim=1, keepdim=True).clamp_min(1e-12)
    used = (count >= min_pixels) & (light.abs().sum(1) > 1e-3)
    return light, used


def kmeans2(points: torch.Tensor, generator: torch.Generator, n_init: int = 4, iters: int = 100
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic 2-means (k-means++ init, Lloyd iterations, best of `n_init` by inertia) on [M, D] points.

    All randomness comes from `generator` (CPU), so a sample's seed fixes its clustering. Returns (labels [M], centers [2, D]).
    """
    pts = points.double()
    m = pts.shape[0]
    best = None
    for _ in range(n_init):
        first = int(torch.randint(m, (1,), generator=generator))
        d2 = ((pts - pts[first]) ** 2).sum(1)
        if float(d2.sum()) > 0:
            second = int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))
        else:
            second = first
        centers = pts[[first, second]].clone()
        labels = torch.full((m,), -1, dtype=torch.long)
        for _ in range(iters):
            new = ((pts[:, None] - centers[None]) ** 2).sum(2).argmin(1)
            if torch.equal(new, labels):
                break
            labels = new
            for k in range(2):
                if (labels == k).any():  # an empty cluster keeps its old centre
                    centers[k] = pts[labels == k].mean(0)
        inertia = float(((pts - centers[labels]) ** 2).sum())
        if best is None or inertia < best[0] - 1e-12:
            best = (inertia, labels.clone(), centers.clone())
    return best[1], best[2]


@dataclass
class LcgResult:
    """What LCG did to a batch of S samples of N tiles each."""

    tiles: torch.Tensor  # [S*N, 3, P, P] after flipping
    flipped: torch.Tensor  # bool [S, N]
    used: torch.Tensor  # bool [S, N]
    lights: torch.Tensor  # float64 [S, N, 3]
    anchors: torch.Tensor  # float64 [S, 3] majority centroid (zeros when fewer than 2 used tiles)
    counts: list = field(default_factory=list)  # per sample: {"used", "majority", "minority", "flipped"}


def lighting_consistency(tiles: torch.Tensor, image: torch.Tensor, generators: list[torch.Generator],
                         mask: torch.Tensor | None = None, min_pixels: int = 10, margin: float = 0.1,
                         faithful_norm: bool = True, patch: int = PATCH) -> LcgResult:
    """Run LCG (per-tile lights, 2-means, minority flip) on S samples at once.

    tiles: [S*N, 3, P, P] final (not renormalized) normals; image: [1|S, 1, R, R] shading at this resolution;
    generators: one CPU torch.Generator per sample (drives the k-means init); mask: optional [1|S, 1, R, R].
    """
    s = len(generators)
    n = tiles.shape[0] // s
    image = image.detach().cpu()
    if image.shape[0] == 1:
        image = image.expand(s, -1, -1, -1)
    if mask is not None:
        mask = mask.detach().cpu()
        mask = mask.expand(s, -1, -1, -1) if mask.shape[0] == 1 else mask
    sel = select_pixels(image, mask)
    lights, used = fit_tile_lights(tiles, tile(image.double(), patch), tile(sel.double(), patch) > 0.5,
                                   min_pixels, faithful_norm)
    lights, used = lights.reshape(s, n, 3), used.reshape(s, n)
    flipped = torch.zeros(s, n, dtype=torch.bool)
    anchors = torch.zeros(s, 3, dtype=torch.float64)
    counts = []
    for k in range(s):
        idx = torch.nonzero(used[k]).flatten()
        info = {"used": int(idx.numel()), "majority": int(idx.numel()), "minority": 0, "flipped": 0}
        if idx.numel() >= 2:
            labels, centers = kmeans2(lights[k, idx], generators[k])
            sizes = torch.bincount(labels, minlength=2)
            major = 0 if sizes[0] >= sizes[1] else 1  # ties go to cluster 0, as in the reference
            anchor = centers[major]
            anchors[k] = anchor
            minority = idx[labels != major]
            l = lights[k, minority]
            lf = flip_normals(l, dim=-1)
            cos = torch.nn.functional.cosine_similarity(l, anchor[None], dim=1)
            cos_f = torch.nn.functional.cosine_similarity(lf, anchor[None], dim=1)
            flipped[k, minority[cos_f >= cos + margin]] = True
            info.update(majority=int(sizes[major]), minority=int(minority.numel()), flipped=int(flipped[k].sum()))
        counts.append(info)
    sign = torch.where(flipped.reshape(-1).to(tiles.device), -1.0, 1.0).to(tiles.dtype)
    out = tiles.clone()
    out[:, :2] = out[:, :2] * sign[:, None, None, None]
    return LcgResult(out, flipped, used, lights, anchors, counts)
