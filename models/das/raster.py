"""A small triangle rasteriser in torch (in place of Blender for mesh tracking videos): edge functions,
perspective-correct barycentric interpolation of per-vertex attributes, a z-buffer (nearest wins, ties go to the
lowest face index), and S x S supersampling with a box filter for antialiasing. Faces with a vertex at or behind
`near` are dropped (no clipping), faces are two-sided. Samples sit at pixel centres, as in models/das/camera.py.
"""
from __future__ import annotations

import torch

from models.das.camera import project, scale_intrinsics

MAX_PAIRS = 1 << 22  # (face, pixel) candidates per chunk: bounds the memory of one pass


def _setup(verts, faces, K, height, width, near):
    uv, z = project(verts, K)
    tri_uv, tri_z = uv[faces], z[faces]  # [F, 3, 2], [F, 3]
    ok = (tri_z > near).all(1) & torch.isfinite(tri_uv).all(2).all(1)
    a, b, c = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ok &= area.abs() > 1e-12
    lo = torch.where(ok[:, None], tri_uv.amin(1), torch.zeros_like(a))
    hi = torch.where(ok[:, None], tri_uv.amax(1), torch.zeros_like(a))
    x0 = torch.ceil(lo[:, 0] - 0.5).clamp(0, width).long()  # first pixel whose centre is >= the box's left edge
    x1 = torch.floor(hi[:, 0] - 0.5).clamp(-1, width - 1).long()
    y0 = torch.ceil(lo[:, 1] - 0.5).clamp(0, height).long()
    y1 = torch.floor(hi[:, 1] - 0.5).clamp(-1, height - 1).long()
    nx, ny = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    count = torch.where(ok, nx * ny, torch.zeros_like(nx))
    return tri_uv, tri_z, area, x0, y0, nx, count


def _bary(tri_uv, area, fid, px, py):
    """Screen-space barycentrics of pixel centres (px + 0.5, py + 0.5) in faces fid."""
    a, b, c = tri_uv[fid, 0], tri_uv[fid, 1], tri_uv[fid, 2]
    x, y = px.to(a.dtype) + 0.5, py.to(a.dtype) + 0.5

    def edge(p, q):
        return (q[:, 0] - p[:, 0]) * (y - p[:, 1]) - (q[:, 1] - p[:, 1]) * (x - p[:, 0])

    return torch.stack([edge(b, c), edge(c, a), edge(a, b)], dim=1) / area[fid, None]


def _chunks(count):
    """Face ranges whose candidate counts sum to at most MAX_PAIRS (a single huge face is its own chunk)."""
    csum = torch.cumsum(count, 0).tolist()
    start, base = 0, 0
    for i, c in enumerate(csum):
        if c - base > MAX_PAIRS and i > start:
            yield start, i
            start, base = i, csum[i - 1]
    if start < len(csum):
        yield start, len(csum)


def _candidates(setup, f0, f1, width):
    tri_uv, tri_z, area, x0, y0, nx, count = setup
    cnt = count[f0:f1]
    fid = torch.repeat_interleave(torch.arange(f0, f1, device=cnt.device), cnt)
    if fid.numel() == 0:
        return None
    first = torch.cumsum(cnt, 0) - cnt
    k = torch.arange(fid.numel(), device=cnt.device) - first.repeat_interleave(cnt)
    px = x0[fid] + k % nx[fid]
    py = y0[fid] + torch.div(k, nx[fid], rounding_mode="floor")
    w = _bary(tri_uv, area, fid, px, py)
    inside = (w >= 0).all(1)
    fid, px, py, w = fid[inside], px[inside], py[inside], w[inside]
    inv_z = (w / tri_z[fid]).sum(1)
    return py * width + px, 1.0 / inv_z, fid


def rasterize(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, height: int, width: int,
              attrs: torch.Tensor | None = None, supersample: int = 1, near: float = 1e-6) -> dict:
    """Camera-space vertices [V, 3], faces [F, 3] -> buffers at the supersampled size (H*S, W*S):
    depth (+inf = empty), face (-1 = empty), attrs [., ., C] (0 = empty) and K (the supersampled K)."""
    S = int(supersample)
    Ks = scale_intrinsics(K.to(verts), S, S)
    H, W = height * S, width * S
    faces = faces.long().to(verts.device)
    setup = _setup(verts, faces, Ks, H, W, near)
    zbuf = torch.full((H * W,), float("inf"), dtype=verts.dtype, device=verts.device)
    ranges = list(_chunks(setup[-1]))
    cache = [_candidates(setup, a, b, W) for a, b in ranges] if len(ranges) == 1 else None
    for i, (a, b) in enumerate(ranges):
        cand = cache[i] if cache else _candidates(setup, a, b, W)
        if cand is not None:
            zbuf.scatter_reduce_(0, cand[0], cand[1], reduce="amin")
    n_faces = faces.shape[0]
    best = torch.full((H * W,), n_faces, dtype=torch.long, device=verts.device)
    for i, (a, b) in enumerate(ranges):
        cand = cache[i] if cache else _candidates(setup, a, b, W)
        if cand is not None:
            win = cand[1] == zbuf[cand[0]]
            best.scatter_reduce_(0, cand[0][win], cand[2][win], reduce="amin")
    hit = best < n_faces
    best[~hit] = -1
    out = {"depth": zbuf.view(H, W), "face": best.view(H, W), "K": Ks, "supersample": S}
    if attrs is not None:
        pix = torch.nonzero(hit).squeeze(1)
        fid = best[pix]
        w = _bary(setup[0], setup[2], fid, pix % W, torch.div(pix, W, rounding_mode="floor"))
        wz = w / setup[1][fid]  # perspective-correct weights: b_i / z_i, normalised
        wz = wz / wz.sum(1, keepdim=True)
        vals = (wz[:, :, None] * attrs.to(verts)[faces[fid]]).sum(1)
        img = torch.zeros(H * W, attrs.shape[1], dtype=verts.dtype, device=verts.device)
        img[pix] = vals
        out["attrs"] = img.view(H, W, -1)
    return out


def box_filter(img: torch.Tensor, S: int) -> torch.Tensor:
    """[H*S, W*S, C] -> [H, W, C] block means (the antialiasing resolve)."""
    if S == 1:
        return img
    H, W, C = img.shape[0] // S, img.shape[1] // S, img.shape[2]
    return img.reshape(H, S, W, S, C).mean(dim=(1, 3))
