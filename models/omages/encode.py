"""Mesh -> omage without Blender (Yan et al. 2024, Sec. 3.1 "object images"): normalise, cut into charts with xatlas,
pack the charts into the unit square with a margin, bake position / normal / albedo / metallic / roughness by UV-space
rasterisation at a source resolution, add the 1-px occupancy ring, and reduce to 64x64 with sparse pooling.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from models.core.cli import UserError
from models.omages import format as fmt
from models.omages.pool import sparse_pool
from models.omages.raster import rasterize, uv_to_pixels

EXTENT = 1.9999  # largest bbox extent after normalisation, so positions lie in (-1, 1)

# material(points (N,3) normalised, faces (N,) input face ids, src_uv (N,2) or None) -> albedo (N,3) linear, metal, rough
MaterialFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], tuple[np.ndarray, np.ndarray, np.ndarray]]


class EncodeError(UserError, ValueError):
    """A mesh that cannot become an omage (empty, NaN, too many charts, ...): one-line message."""


def constant_material(albedo=(0.8, 0.8, 0.8), metallic: float = 0.0, roughness: float = 0.5) -> MaterialFn:
    alb = np.asarray(albedo, dtype=np.float32)

    def material(points, faces, src_uv):
        n = len(points)
        return np.broadcast_to(alb, (n, 3)), np.full(n, metallic, np.float32), np.full(n, roughness, np.float32)

    return material


@dataclass
class MeshInput:
    """A triangle mesh with an optional per-vertex source UV and a material function."""
    vertices: np.ndarray                      # (V, 3)
    faces: np.ndarray                         # (F, 3) int
    uv: np.ndarray | None = None              # (V, 2) source UVs (texture lookup; optionally the charts themselves)
    material: MaterialFn = field(default_factory=constant_material)
    name: str = "mesh"


@dataclass
class EncodeResult:
    omage: np.ndarray            # (out_res, out_res, 12) float32 file space, sparse-pooled
    source: np.ndarray           # (res, res, 12) float32 file space at the bake resolution
    chart_map: np.ndarray        # (res, res) int16 chart id of every occupied source pixel, -1 elsewhere
    n_charts: int                # charts kept
    margin: float                # effective packing margin, fraction of the square side
    vertices: np.ndarray         # normalised input vertices (the ground truth the omage encodes)
    faces: np.ndarray            # input faces that were kept (dropped tiny charts removed)
    input_faces: np.ndarray      # all input faces (the ground truth, including any dropped charts)
    chart_boxes: np.ndarray      # (n_charts, 4) UV bounding boxes (u0, v0, u1, v1) in [0, 1]
    center: np.ndarray = None    # normalisation: v_norm = (v - center) * scale
    scale: float = 1.0
    timings: dict = field(default_factory=dict)


def normalize(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre the bounding box at the origin and scale its largest extent to 1.9999."""
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    ext = float((hi - lo).max())
    if not ext > 0:
        raise EncodeError("mesh has zero extent (all vertices coincide)")
    center = (lo + hi) / 2
    scale = EXTENT / ext
    return (v - center) * scale, center, scale


def check_mesh(mesh: MeshInput) -> None:
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if v.ndim != 2 or v.shape[-1] != 3 or f.ndim != 2 or f.shape[-1] != 3 or len(f) == 0 or len(v) < 3:
        raise EncodeError(f"{mesh.name}: empty mesh ({len(v)} vertices, {len(f)} triangles)")
    if not np.isfinite(v).all():
        raise EncodeError(f"{mesh.name}: {int((~np.isfinite(v)).any(axis=1).sum())} vertices are NaN or Inf")
    if f.min() < 0 or f.max() >= len(v):
        raise EncodeError(f"{mesh.name}: face indices out of range")


def _triangle_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)


def _xatlas(v: np.ndarray, f: np.ndarray, uv: np.ndarray | None, pack_res: int, margin: float, max_cost: float):
    """Charts + packing; returns (vmap, faces, uv in [0,1]^2 isotropic, chart id per face, effective margin)."""
    from models.core.optional import require

    xatlas = require("xatlas", feature="the omage encoder", extra="omages")
    atlas = xatlas.Atlas()
    if uv is None:
        atlas.add_mesh(v.astype(np.float32), f.astype(np.uint32))
    else:
        atlas.add_mesh(v.astype(np.float32), f.astype(np.uint32), uvs=uv.astype(np.float32))
    co = xatlas.ChartOptions()
    co.max_cost = float(max_cost)
    co.use_input_mesh_uvs = uv is not None
    po = xatlas.PackOptions()
    po.resolution = int(pack_res)
    po.padding = int(math.ceil(margin * pack_res))
    po.bilinear = True
    po.rotate_charts = False  # the reference packs axis-aligned boxes without rotation
    atlas.generate(co, po)
    # xatlas may grow the atlas beyond `resolution`, which shrinks the margin as a fraction: repack with more padding
    for _ in range(3):
        side = max(atlas.width, atlas.height)
        if po.padding / side >= margin * 0.999:
            break
        po.padding = int(math.ceil(margin * side * 1.02))
        atlas.generate(co, po)
    if atlas.atlas_count != 1:
        raise EncodeError(f"xatlas spread the charts over {atlas.atlas_count} atlases")
    vmap, faces, uvs = atlas[0]
    _, chart_of_vertex = atlas.get_mesh_vertex_assignment(0)
    w, h = atlas.width, atlas.height
    side = max(w, h)
    # xatlas normalises u by width and v by height: undo it so a texel is square
    uvs = uvs.astype(np.float64) * np.array([w / side, h / side])
    return (vmap.astype(np.int64), faces.astype(np.int64), uvs, chart_of_vertex[faces[:, 0]].astype(np.int64),
            po.padding / side)


def compute_charts(v: np.ndarray, f: np.ndarray, uv: np.ndarray | None = None, *, max_charts: int = 64,
                   too_many: str = "error", min_area: float = 1e-4, margin: float = 0.02, pack_res: int = 256,
                   max_cost: float = 2.0, name: str = "mesh"):
    """xatlas charts (or the mesh's own UV islands when `uv` is given), tiny charts dropped, at most `max_charts`.

    Charts with 3D area < `min_area` are dropped as in the reference encoder; when more than `max_charts` remain,
    `too_many="error"` raises and `"largest"` keeps the largest by 3D area. Returns (vmap, faces_out, uv_out,
    chart_of_face, margin, kept input face ids).
    """
    keep = np.arange(len(f))
    vmap, fo, uvo, chart, eff = _xatlas(v, f, uv, pack_res, margin, max_cost)
    n = int(chart.max()) + 1
    area = np.bincount(chart, weights=_triangle_areas(v, f), minlength=n)
    good = area >= min_area
    if good.sum() == 0:
        raise EncodeError(f"{name}: every chart is smaller than the minimum area {min_area:g}")
    if good.sum() > max_charts:
        if too_many == "error":
            raise EncodeError(f"{name}: {int(good.sum())} charts after dropping tiny ones, more than the maximum "
                              f"{max_charts} (simplify the mesh, or keep the largest with --too-many largest)")
        order = np.argsort(-np.where(good, area, -1.0))
        good = np.zeros(n, dtype=bool)
        good[order[:max_charts]] = True
    if not good.all():
        # drop the faces of removed charts and chart the rest again (islands of a repack could split further)
        keep = np.nonzero(good[chart])[0]
        for _ in range(3):
            sub = f[keep]
            used, inv = np.unique(sub, return_inverse=True)
            sub_uv = None if uv is None else uv[used]
            vmap, fo, uvo, chart, eff = _xatlas(v[used], inv.reshape(-1, 3), sub_uv, pack_res, margin, max_cost)
            vmap = used[vmap]
            n = int(chart.max()) + 1
            area = np.bincount(chart, weights=_triangle_areas(v, sub), minlength=n)
            good = np.zeros(n, dtype=bool)
            good[np.argsort(-area)[:max_charts]] = True
            good &= area >= min_area
            if good.all():
                break
            keep = keep[good[chart]]
        else:
            raise EncodeError(f"{name}: could not reduce the mesh to {max_charts} charts")
    return vmap, fo, uvo, chart, eff, keep


def _closest_on_triangles(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of 2D triangles t (N, 3, 2) to points p (N, 2): squared distance (N,) and barycentric weights
    (N, 3) of that point (an orthogonal projection onto the nearest edge when p lies outside)."""
    best_d = np.full(len(p), np.inf)
    best_w = np.zeros((len(p), 3))
    for i, j in ((0, 1), (1, 2), (2, 0)):
        a, b = t[:, i], t[:, j]
        ab = b - a
        s = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-24), 0.0, 1.0)
        d = ((a + s[:, None] * ab - p) ** 2).sum(1)
        w = np.zeros((len(p), 3))
        w[np.arange(len(p)), i] = 1 - s
        w[np.arange(len(p)), j] = s
        better = d < best_d
        best_d[better], best_w[better] = d[better], w[better]
    return best_d, best_w


def _extend_ring(face: np.ndarray, bary: np.ndarray, tri_px: np.ndarray):
    """Dilate the coverage by one pixel (3x3). Each ring pixel takes, among the triangles of its covered 8-neighbours,
    the one nearest to its centre, evaluated at the orthogonal projection of the centre onto it: the nearest point of
    the chart, which lies on the chart's true outline (the role of the reference's 1-px 'extend' bake margin). Taking
    any neighbour's triangle instead can land on an interior edge, half a pixel inside the chart."""
    h, w = face.shape
    covered = face >= 0
    pad = np.pad(face, 1, constant_values=-1)
    cand = np.stack([pad[1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                     if dr or dc], axis=-1)                             # (H, W, 8) neighbours' triangles
    ring = ~covered & (cand >= 0).any(axis=-1)
    rr, cc = np.nonzero(ring)
    out_face, out_bary = face.copy(), bary.copy()
    if rr.size == 0:
        return out_face, out_bary
    p = np.stack([cc, rr], axis=1).astype(np.float64)
    best_d = np.full(rr.size, np.inf)
    best_f = np.full(rr.size, -1, dtype=face.dtype)
    best_w = np.zeros((rr.size, 3))
    for k in range(cand.shape[-1]):
        fk = cand[rr, cc, k]
        ok = fk >= 0
        d, wk = _closest_on_triangles(p[ok], tri_px[fk[ok]])
        idx = np.nonzero(ok)[0]
        better = d < best_d[idx]
        sel = idx[better]
        best_d[sel], best_f[sel], best_w[sel] = d[better], fk[ok][better], wk[better]
    out_face[rr, cc] = best_f
    out_bary[rr, cc] = best_w
    return out_face, out_bary


def bake(v: np.ndarray, f_in: np.ndarray, vmap: np.ndarray, fo: np.ndarray, uvo: np.ndarray, material: MaterialFn,
         res: int, src_uv: np.ndarray | None = None, face_ids: np.ndarray | None = None,
         vertex_normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the packed atlas at `res`; returns the (res, res, 12) file-space omage and the face map."""
    tri_px = uv_to_pixels(uvo, res)[fo]
    face, bary = rasterize(tri_px, res, res)
    face, bary = _extend_ring(face, bary, tri_px)
    occ = face >= 0
    fi = face[occ]
    wts = bary[occ].astype(np.float64)[:, :, None]
    corners = vmap[fo[fi]]                                   # input vertex ids of the 3 corners
    pos = (wts * v[corners]).sum(axis=1)
    if vertex_normals is None:
        fv = v[f_in[fi]]
        nrm = np.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0])
    else:
        nrm = (wts * vertex_normals[corners]).sum(axis=1)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    suv = (wts * src_uv[corners]).sum(axis=1) if src_uv is not None else None
    ids = face_ids[fi] if face_ids is not None else fi
    alb, met, rgh = material(pos, ids, suv)
    out = np.zeros((res, res, fmt.N_CHANNELS), dtype=np.float32)
    vals = np.concatenate([(pos + 1) / 2, np.ones((len(fi), 1)), (nrm + 1) / 2, np.asarray(alb).reshape(-1, 3),
                           np.asarray(met).reshape(-1, 1), np.asarray(rgh).reshape(-1, 1)], axis=1)
    out[occ] = np.clip(vals, 0.0, 1.0)
    return out, face


def encode_mesh(mesh: MeshInput, *, res: int = 256, out_res: int = 64, margin: float = 0.02, max_charts: int = 64,
                too_many: str = "error", min_area: float = 1e-4, use_mesh_uvs: bool = False, max_cost: float = 2.0,
                vertex_normals: np.ndarray | None = None) -> EncodeResult:
    """Encode a mesh into an omage at `out_res` (sparse-pooled from a bake at `res`).

    `margin` is requested as a fraction of the square and never less than one pooling block, so two charts never
    share a block after pooling. Normals are face normals unless `vertex_normals` (V, 3) are given.
    """
    if res % out_res:
        raise EncodeError(f"source resolution {res} is not a multiple of the output resolution {out_res}")
    check_mesh(mesh)
    timings = {}
    t0 = time.perf_counter()
    v, center, scale = normalize(mesh.vertices)
    f = np.asarray(mesh.faces, dtype=np.int64)
    factor = res // out_res
    margin = max(margin, factor / res)
    charts_uv = np.asarray(mesh.uv, dtype=np.float64) if (use_mesh_uvs and mesh.uv is not None) else None
    vmap, fo, uvo, chart, eff, keep = compute_charts(v, f, charts_uv, max_charts=max_charts, too_many=too_many,
                                                     min_area=min_area, margin=margin, max_cost=max_cost,
                                                     name=mesh.name)
    timings["charts"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    src_uv = None if mesh.uv is None else np.asarray(mesh.uv, dtype=np.float64)
    vn = None if vertex_normals is None else np.asarray(vertex_normals, dtype=np.float64)
    source, face_map = bake(v, f[keep], vmap, fo, uvo, mesh.material, res, src_uv=src_uv, face_ids=keep,
                            vertex_normals=vn)
    timings["bake"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    omage = source if factor == 1 else sparse_pool(source, factor)
    timings["pool"] = time.perf_counter() - t2
    chart_map = np.where(face_map >= 0, chart[np.maximum(face_map, 0)], -1).astype(np.int16)
    n = int(chart.max()) + 1
    boxes = np.zeros((n, 4))
    cu = uvo[fo]  # (F, 3, 2)
    for k, axis in ((0, 0), (1, 1)):
        boxes[:, k] = np.full(n, np.inf)
        np.minimum.at(boxes[:, k], chart, cu[:, :, axis].min(axis=1))
        boxes[:, k + 2] = np.full(n, -np.inf)
        np.maximum.at(boxes[:, k + 2], chart, cu[:, :, axis].max(axis=1))
    timings["total"] = time.perf_counter() - t0
    return EncodeResult(omage=omage, source=source, chart_map=chart_map, n_charts=n, margin=float(eff),
                        vertices=v, faces=f[keep], input_faces=f, chart_boxes=boxes, center=center, scale=scale, timings=timings)


def encode_with_retries(mesh: MeshInput, costs=(2.0, 4.0, 8.0), **kwargs) -> tuple[EncodeResult, dict]:
    """Encode; when xatlas over-segments (more than 64 charts), retry with larger charts (xatlas max_cost) and
    finally keep the 64 largest. Returns the result and {max_cost, charts_dropped}."""
    kwargs.pop("too_many", None)
    err = None
    for cost in costs:
        try:
            return encode_mesh(mesh, max_cost=cost, **kwargs), {"max_cost": cost, "charts_dropped": False}
        except EncodeError as e:
            if "charts" not in str(e):
                raise
            err = e
    res = encode_mesh(mesh, max_cost=costs[-1], too_many="largest", **kwargs)
    return res, {"max_cost": costs[-1], "charts_dropped": True, "first_error": str(err)}


def load_mesh(path: str | Path) -> MeshInput:
    """Read a mesh file (GLB/GLTF/OBJ/PLY/OFF/STL) through trimesh, with textures or vertex colours as its material."""
    from models.omages.textures import mesh_from_trimesh
    from models.core.optional import require

    trimesh = require("trimesh", feature="reading meshes", extra="omages")
    path = Path(path)
    if not path.is_file():
        raise EncodeError(f"mesh not found: {path}")
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as err:
        raise EncodeError(f"{path}: cannot be read as a mesh ({type(err).__name__}: {str(err)[:200]})") from None
    return mesh_from_trimesh(loaded, name=str(path))
