"""A vectorised triangle rasteriser in numpy: every (triangle, pixel-in-its-bounding-box) pair at once, no Python loop
over triangles. Used in UV space to bake omages and in screen space (with a depth test) to render previews.

Coordinates are continuous pixel coordinates with pixel (row r, column c) centred at (x, y) = (c, r); a pixel is
covered when its centre lies inside the triangle (edges included).
"""
from __future__ import annotations

import numpy as np

_CHUNK = 1 << 22  # candidate (triangle, pixel) pairs per batch: bounds the memory at ~200 MB


def rasterize(tri: np.ndarray, height: int, width: int, depth: np.ndarray | None = None,
              eps: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles `tri` (F, 3, 2) of (x, y) pixel coordinates into an (H, W) grid.

    Returns `face` (H, W) int32 (-1 where empty) and `bary` (H, W, 3) float32 barycentric weights of the chosen
    triangle. With `depth` (F, 3) the nearest triangle wins (z-buffer); without it the triangle in which the pixel lies
    deepest wins, so pixels on a shared edge go to exactly one triangle.
    """
    tri = np.asarray(tri, dtype=np.float64)
    n_faces = tri.shape[0]
    face_img = np.full(height * width, -1, dtype=np.int32)
    bary_img = np.zeros((height * width, 3), dtype=np.float32)
    if n_faces == 0:
        return face_img.reshape(height, width), bary_img.reshape(height, width, 3)
    best = np.full(height * width, np.inf)

    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e0, e1 = b - a, c - a
    det = e0[:, 0] * e1[:, 1] - e1[:, 0] * e0[:, 1]          # twice the signed area
    lo = np.floor(tri.min(axis=1) + 1 - 1e-9).astype(np.int64)  # first pixel centre >= min (ceil with tolerance)
    hi = np.floor(tri.max(axis=1) + 1e-9).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    nx = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    ny = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = np.where(np.abs(det) > 1e-14, nx * ny, 0)
    faces = np.nonzero(counts)[0]
    if faces.size == 0:
        return face_img.reshape(height, width), bary_img.reshape(height, width, 3)

    # split the faces into chunks of at most _CHUNK candidate pairs (one huge triangle may exceed it alone)
    cum = np.cumsum(counts[faces])
    starts = np.searchsorted(cum, np.arange(0, cum[-1], _CHUNK), side="right")
    bounds = list(np.unique(np.concatenate([starts, [faces.size]])))
    if bounds[0] != 0:
        bounds.insert(0, 0)
    for s, t in zip(bounds[:-1], bounds[1:]):
        fsel = faces[s:t]
        cnt = counts[fsel]
        fi = np.repeat(fsel, cnt)
        local = np.arange(fi.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        px = lo[fi, 0] + local % nx[fi]
        py = lo[fi, 1] + local // nx[fi]
        vx = px - a[fi, 0]
        vy = py - a[fi, 1]
        d = det[fi]
        w1 = (vx * e1[fi, 1] - e1[fi, 0] * vy) / d
        w2 = (e0[fi, 0] * vy - vx * e0[fi, 1]) / d
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
        fi, px, py, w0, w1, w2 = fi[inside], px[inside], py[inside], w0[inside], w1[inside], w2[inside]
        pix = py * width + px
        if depth is not None:
            key = w0 * depth[fi, 0] + w1 * depth[fi, 1] + w2 * depth[fi, 2]
        else:
            key = -np.minimum(np.minimum(w0, w1), w2)
        order = np.lexsort((key, pix))                    # by pixel, then best key first
        pix, key = pix[order], key[order]
        first = np.ones(pix.size, dtype=bool)
        first[1:] = pix[1:] != pix[:-1]
        sel = order[first]
        pix, key = pix[first], key[first]
        better = key < best[pix]
        sel, pix = sel[better], pix[better]
        best[pix] = key[better]
        face_img[pix] = fi[sel]
        bary_img[pix] = np.stack([w0[sel], w1[sel], w2[sel]], axis=1)
    return face_img.reshape(height, width), bary_img.reshape(height, width, 3)


def uv_to_pixels(uv: np.ndarray, res: int) -> np.ndarray:
    """UV in [0, 1]^2 -> continuous pixel coordinates: pixel (r, c) has its centre at ((c + .5) / R, (r + .5) / R),
    and the row index grows with v."""
    return np.asarray(uv, dtype=np.float64) * res - 0.5
