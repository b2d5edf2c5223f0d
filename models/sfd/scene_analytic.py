"""Pure-PyTorch renderer of the pile-of-duplicates scene: sphere tracing (Hart 1996) of the L-shaped object's exact SDF
(a union of two boxes) placed N times, shaded with SfD's own spherical-Gaussian direct-lighting model (models/sfd/sg.py)
with hard shadow rays against every instance. No Mitsuba, a few seconds on a CPU; the same outputs as the Mitsuba
renderer (linear rgb, exact instance ids, depth, world normals, albedo), so every code path can be tested with it.

Visibility is binary and per lobe: one shadow ray along each light lobe's axis (diffuse) and one along the mirror
direction (specular). SfD's material stage instead averages a learned visibility over cones; with this scene's sharp
lobes the two agree closely, and the GT stays exactly representable by the model.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from models.sfd import scene_layout as L
from models.sfd import sg

ROUGHNESS, F0 = 0.5, 0.02


def box_sdf(p: torch.Tensor, lo, hi) -> torch.Tensor:
    lo, hi = torch.as_tensor(lo, dtype=p.dtype), torch.as_tensor(hi, dtype=p.dtype)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    q = (p - centre).abs() - half
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def object_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed distance to the L-shaped object in its own frame (exact outside, a bound inside)."""
    return torch.minimum(box_sdf(p, *L.BOX_A), box_sdf(p, *L.BOX_B))


class Pile:
    """N rigid copies of the object; `sdf(x)` is the union distance and the argmin instance."""

    def __init__(self, object_to_world: np.ndarray, dtype=torch.float64):
        w2o = np.stack([np.linalg.inv(m) for m in object_to_world])
        self.rot = torch.as_tensor(w2o[:, :3, :3], dtype=dtype)    # N 3 3 (world -> object)
        self.trans = torch.as_tensor(w2o[:, :3, 3], dtype=dtype)   # N 3
        self.dtype = dtype

    def to_object(self, x: torch.Tensor) -> torch.Tensor:
        """World points (P, 3) -> object-frame points of every instance (N, P, 3)."""
        return torch.einsum("nij,pj->npi", self.rot, x) + self.trans[:, None]

    def sdf(self, x: torch.Tensor):
        d = object_sdf(self.to_object(x))  # N P
        best, idx = d.min(0)
        return best, idx


def sphere_trace(pile: Pile, origin: torch.Tensor, dirs: torch.Tensor, t_max: float, steps: int = 160,
                 eps: float = 1e-5, t0: float = 0.0):
    """Distance along each ray to the first surface (inf when missed) and the hit instance (0-based, -1 on miss)."""
    t = torch.full(dirs.shape[:1], t0, dtype=dirs.dtype)
    active = torch.ones_like(t, dtype=torch.bool)
    hit = torch.zeros_like(active)
    for _ in range(steps):
        if not active.any():
            break
        ids = active.nonzero().squeeze(1)
        d, _ = pile.sdf(origin[ids] + t[ids, None] * dirs[ids])
        t[ids] += d
        done = d < eps
        hit[ids[done]] = True
        gone = t[ids] > t_max
        active[ids[done | gone]] = False
    t = torch.where(hit, t, torch.full_like(t, math.inf))
    idx = torch.full(t.shape, -1, dtype=torch.long)
    if hit.any():
        _, idx_hit = pile.sdf(origin[hit] + t[hit, None] * dirs[hit])
        idx[hit] = idx_hit
    return t, idx


def _face_uv(p_obj: torch.Tensor, n_obj: torch.Tensor) -> torch.Tensor:
    """Atlas uv (OBJ convention) of object-frame surface points, via the face whose plane they lie on."""
    uv = torch.zeros(p_obj.shape[0], 2, dtype=p_obj.dtype)
    best = torch.full((p_obj.shape[0],), math.inf, dtype=p_obj.dtype)
    prof = L.PROFILE
    lo, hi = prof.min(0), prof.max(0)
    for f in L.mesh_faces():
        fn = torch.as_tensor(f["normal"], dtype=p_obj.dtype)
        v0 = torch.as_tensor(f["verts"][0], dtype=p_obj.dtype)
        dist = ((p_obj - v0) @ fn).abs() + (1 - n_obj @ fn) * 10
        if len(f["verts"]) == 4:
            e1 = torch.as_tensor(f["verts"][1] - f["verts"][0], dtype=p_obj.dtype)
            e3 = torch.as_tensor(f["verts"][3] - f["verts"][0], dtype=p_obj.dtype)
            s = ((p_obj - v0) @ e1) / (e1 @ e1)
            t = ((p_obj - v0) @ e3) / (e3 @ e3)
            st = torch.stack([s, t], 1)
        else:
            xz = p_obj[:, [0, 2]]
            st = (xz - torch.as_tensor(lo, dtype=p_obj.dtype)) / torch.as_tensor(hi - lo, dtype=p_obj.dtype)
        cell_uv = torch.as_tensor(L._cell_uv(f["cell"], st.clamp(0, 1).numpy()), dtype=p_obj.dtype)
        take = dist < best
        uv[take] = cell_uv[take]
        best = torch.where(take, dist, best)
    return uv


def _sample_atlas(atlas_linear: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup; uv in OBJ convention (v = 0 at the bottom row)."""
    grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1).to(atlas_linear.dtype)
    out = torch.nn.functional.grid_sample(atlas_linear.permute(2, 0, 1)[None], grid[None, None], mode="bilinear",
                                          padding_mode="border", align_corners=False)
    return out[0, :, 0].T.to(uv.dtype)


def _normals(pile: Pile, x: torch.Tensor, idx: torch.Tensor, h: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """World and object-frame normals of hit points on instance idx, by central differences of the object SDF."""
    p_obj = torch.einsum("pij,pj->pi", pile.rot[idx], x) + pile.trans[idx]
    grads = []
    for k in range(3):
        e = torch.zeros(3, dtype=x.dtype)
        e[k] = h
        grads.append((object_sdf(p_obj + e) - object_sdf(p_obj - e)) / (2 * h))
    n_obj = torch.stack(grads, -1)
    n_obj = n_obj / n_obj.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_world = torch.einsum("pji,pj->pi", pile.rot[idx], n_obj)  # object -> world = R^T of world -> object
    return n_world, n_obj, p_obj


def shade_points(pile: Pile, x, n_world, view, albedo, light: dict, t_max: float):
    """SG direct lighting with hard shadow rays (one per lobe axis, one along the mirror direction)."""
    lt = sg.light_tensors(light, x.dtype)
    axis = lt["axis"] / lt["axis"].norm(dim=-1, keepdim=True)
    origin = x + 2e-4 * n_world
    vis = []
    for k in range(axis.shape[0]):
        d = axis[k].expand_as(x).contiguous()
        t, _ = sphere_trace(pile, origin, d, t_max, steps=96, t0=1e-3)
        vis.append(torch.isinf(t).to(x.dtype))
    vis_d = torch.stack(vis, 1)
    mirror = 2 * (n_world * view).sum(-1, keepdim=True) * n_world - view
    t, _ = sphere_trace(pile, origin, mirror / mirror.norm(dim=-1, keepdim=True), t_max, steps=96, t0=1e-3)
    vis_s = torch.isinf(t).to(x.dtype)[:, None]
    rough = torch.full((x.shape[0], 1), ROUGHNESS, dtype=x.dtype)
    diffuse, specular = sg.render_sg(n_world, view, albedo, rough, F0, lt, vis_d, vis_s)
    return diffuse + specular


def render(layout: L.SceneLayout, *, atlas_size: int = 512, supersample: int = 2, chunk: int = 65536,
           progress: bool = False) -> dict:
    """Render rgb (linear, `supersample`^2 jittered-grid samples per pixel), and at pixel centres the exact instance
    ids (0 = background, k = instance k), Euclidean depth, world normals, albedo and object-frame hit points."""
    light = layout.light or L.default_light(layout.seed)
    pile = Pile(layout.object_to_world)
    atlas = L.make_atlas(atlas_size, layout.seed)
    atlas_lin = torch.as_tensor(atlas ** 2.2, dtype=torch.float32)
    w, h, f = layout.width, layout.height, layout.focal
    c2w = torch.as_tensor(layout.c2w_gl, dtype=torch.float64)
    centre_dist = np.linalg.norm(layout.object_to_world[:, :3, 3] - layout.c2w_gl[:3, 3], axis=1)
    t_max = float(centre_dist.max() + 2 * L.bounding_radius())
    offsets = [(0.5, 0.5)] + [((a + 0.5) / supersample, (b + 0.5) / supersample)
                              for a in range(supersample) for b in range(supersample)]
    rgb = torch.zeros(h * w, 3, dtype=torch.float64)
    centre_out = {}
    jobs = [(k, s) for k in range(len(offsets)) for s in range(0, h * w, chunk)]
    for k, start in tqdm(jobs, desc="analytic render", disable=not progress):
        ox, oy = offsets[k]
        pix = torch.arange(start, min(start + chunk, h * w))
        u = (pix % w).to(torch.float64) + ox
        v = (pix // w).to(torch.float64) + oy
        d_cam = torch.stack([(u - w / 2) / f, -(v - h / 2) / f, -torch.ones_like(u)], -1)
        dirs = d_cam @ c2w[:3, :3].T
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origin = c2w[:3, 3].expand_as(dirs)
        t, idx = sphere_trace(pile, origin, dirs, t_max)
        hit = torch.isfinite(t)
        col = torch.as_tensor(L.eval_light(light, dirs.numpy()), dtype=torch.float64)
        ids = torch.zeros(len(pix), dtype=torch.long)
        depth = torch.zeros(len(pix), dtype=torch.float64)
        n_out = torch.zeros(len(pix), 3, dtype=torch.float64)
        alb_out = torch.zeros(len(pix), 3, dtype=torch.float64)
        p_out = torch.zeros(len(pix), 3, dtype=torch.float64)
        if hit.any():
            x = origin[hit] + t[hit, None] * dirs[hit]
            n_world, n_obj, p_obj = _normals(pile, x, idx[hit])
            albedo = _sample_atlas(atlas_lin, _face_uv(p_obj, n_obj))
            col[hit] = shade_points(pile, x, n_world, -dirs[hit], albedo, light, t_max)
            ids[hit], depth[hit], n_out[hit], alb_out[hit], p_out[hit] = idx[hit] + 1, t[hit], n_world, albedo, p_obj
        if k == 0:
            for name, val in (("ids", ids), ("depth", depth), ("normal_world", n_out), ("albedo", alb_out),
                              ("points_object", p_out)):
                centre_out.setdefault(name, []).append(val)
        else:
            rgb[pix] += col / (len(offsets) - 1)
    out = {name: torch.cat(vals).reshape(h, w, *vals[0].shape[1:]).numpy() for name, vals in centre_out.items()}
    out["rgb"] = rgb.reshape(h, w, 3).numpy().astype(np.float32)
    out["ids"] = out["ids"].astype(np.int64)
    for name in ("depth", "normal_world", "albedo", "points_object"):
        out[name] = out[name].astype(np.float32)
    out["atlas"] = atlas
    return out
