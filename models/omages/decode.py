"""Omage -> mesh (Yan et al. 2024, Sec. 3.1: "patches come naturally from 2D connected components").

One vertex per occupied pixel; two triangles per fully occupied 2x2 quad (split along the shorter 3D diagonal) and one
per 3-of-4 quad, so every configuration yields a triangle; no face ever joins pixels across an image border; faces are
oriented by the normal channels (or, without them, outwards per patch); triangles with an edge longer than k x the
median are dropped (webbing between charts); optional seam zipping merges nearby boundary vertices.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from models.omages import format as fmt


@dataclass
class DecodedMesh:
    vertices: np.ndarray                 # (V, 3) in [-1, 1]
    faces: np.ndarray                    # (F, 3) int64
    normals: np.ndarray                  # (V, 3) decoded normal channel (unit, or 0 when absent)
    albedo: np.ndarray                   # (V, 3) linear
    metallic: np.ndarray                 # (V,)
    roughness: np.ndarray                # (V,)
    uv: np.ndarray                       # (V, 2) pixel centres, glTF convention (v down the image)
    pixel: np.ndarray                    # (V, 2) (row, col) of each vertex in the omage
    patch: np.ndarray                    # (V,) 2D connected-component label (0-based)
    n_patches: int = 0
    stats: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return len(self.faces) == 0


def patches(occ: np.ndarray) -> tuple[np.ndarray, int]:
    """2D connected components of the occupancy (8-connectivity): labels 1..n, 0 = background."""
    labels, n = ndimage.label(occ, structure=np.ones((3, 3), dtype=int))
    return labels, int(n)


def grid_faces(occ: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Triangles over the pixel grid as (F, 3, 2) (row, col) corners, consistently wound in image space.

    Only quads fully inside the image are considered (no wrap-around). A full quad is split along its shorter 3D
    diagonal; a quad with exactly 3 occupied pixels gives the triangle of those 3.
    """
    h, w = occ.shape
    if h < 2 or w < 2:
        return np.zeros((0, 3, 2), dtype=np.int64)
    a, b = occ[:-1, :-1], occ[:-1, 1:]      # top-left, top-right
    c, d = occ[1:, :-1], occ[1:, 1:]        # bottom-left, bottom-right
    n = a.astype(int) + b + c + d
    r, cc = np.mgrid[0:h - 1, 0:w - 1]
    TL, TR, BL, BR = (np.stack([r, cc], -1), np.stack([r, cc + 1], -1), np.stack([r + 1, cc], -1),
                      np.stack([r + 1, cc + 1], -1))
    tris = []
    full = n == 4
    if full.any():
        p = lambda q: pos[q[..., 0], q[..., 1]]  # noqa: E731
        main = np.linalg.norm(p(TL[full]) - p(BR[full]), axis=-1)     # TL-BR diagonal
        anti = np.linalg.norm(p(TR[full]) - p(BL[full]), axis=-1)     # TR-BL diagonal
        use_anti = anti <= main
        tl, tr, bl, br = TL[full], TR[full], BL[full], BR[full]
        # same winding for all: (TL, BL, TR) style, i.e. counter-clockwise with rows pointing down
        t1 = np.where(use_anti[:, None, None], np.stack([tl, bl, tr], 1), np.stack([tl, bl, br], 1))
        t2 = np.where(use_anti[:, None, None], np.stack([tr, bl, br], 1), np.stack([tl, br, tr], 1))
        tris += [t1, t2]
    three = n == 3
    for missing, corners in ((~a, (TR, BL, BR)), (~b, (TL, BL, BR)), (~c, (TL, BR, TR)), (~d, (TL, BL, TR))):
        sel = three & missing
        if sel.any():
            tris.append(np.stack([q[sel] for q in corners], 1))
    return np.concatenate(tris) if tris else np.zeros((0, 3, 2), dtype=np.int64)


def _orient(v: np.ndarray, f: np.ndarray, vn: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Flip faces whose geometric normal disagrees with the decoded normals of their corners; without normals,
    flip whole patches so their faces point away from the object's centroid on average (a patch's own centroid
    would leave flat charts undefined: every offset lies in their plane)."""
    if len(f) == 0:
        return f
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    ref = vn[f].sum(axis=1)
    has_normal = np.linalg.norm(ref, axis=1) > 1e-6
    flip = has_normal & ((fn * ref).sum(axis=1) < 0)
    if (~has_normal).any():
        fp = patch[f[:, 0]]
        centres = v[f].mean(axis=1)
        out = (fn * (centres - centres.mean(axis=0))).sum(axis=1)
        score = np.bincount(fp, weights=np.where(~has_normal, out, 0.0), minlength=int(patch.max()) + 1)
        flip |= ~has_normal & (score[fp] < 0)
    f = f.copy()
    f[flip] = f[flip][:, [0, 2, 1]]
    return f


def decode(omage: np.ndarray, *, long_edge: float | None = 6.0, zip_eps: float | None = None) -> DecodedMesh:
    """Decode a file-space omage (any resolution) into a mesh with per-vertex materials.

    `long_edge`: drop triangles with an edge longer than this many median edges (None keeps all).
    `zip_eps`: merge boundary vertices of different patches closer than this, in units of the median edge
    (e.g. 0.5); None leaves seams open (the reference default).
    """
    om = np.asarray(omage, dtype=np.float32)
    if om.ndim != 3 or om.shape[-1] < 4:
        raise fmt.OmageError(f"expected an (H, W, >=4) omage, got {om.shape}")
    occ = om[..., fmt.OCC] >= 0.5
    labels, n_patches = patches(occ)
    h, w = occ.shape
    index = np.full((h, w), -1, dtype=np.int64)
    rr, cc = np.nonzero(occ)
    index[rr, cc] = np.arange(rr.size)
    pos_img = om[..., fmt.POS] * 2 - 1
    tri = grid_faces(occ, pos_img)
    f = index[tri[..., 0], tri[..., 1]] if len(tri) else np.zeros((0, 3), dtype=np.int64)
    v = pos_img[rr, cc].astype(np.float64)
    if om.shape[-1] >= 7:
        vn = om[rr, cc][:, fmt.NRM] * 2 - 1
        vn = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
        vn[np.abs(om[rr, cc][:, fmt.NRM]).sum(axis=1) == 0] = 0.0   # zero channels: no normal
    else:
        vn = np.zeros_like(v)
    patch = labels[rr, cc] - 1
    stats = {"faces_grid": int(len(f))}
    if len(f) and long_edge is not None:
        e = np.linalg.norm(v[f] - v[np.roll(f, -1, axis=1)], axis=2)
        med = float(np.median(e))
        keep = e.max(axis=1) <= long_edge * med if med > 0 else np.ones(len(f), dtype=bool)
        stats["faces_long_dropped"] = int((~keep).sum())
        f = f[keep]
    # degenerate faces (coincident positions, e.g. after nearest upsampling) carry no surface
    if len(f):
        area2 = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
        f = f[area2 > 1e-14]
    f = _orient(v, f, vn, patch)
    if om.shape[-1] >= 12:
        mat = om[rr, cc]
        alb, met, rgh = mat[:, fmt.ALB], mat[:, fmt.MET], mat[:, fmt.RGH]
    else:
        alb, met, rgh = np.full((rr.size, 3), 0.8), np.zeros(rr.size), np.full(rr.size, 0.5)
    uv = np.stack([(cc + 0.5) / w, (rr + 0.5) / h], axis=1)
    mesh = DecodedMesh(vertices=v, faces=f, normals=vn, albedo=np.asarray(alb, np.float64),
                       metallic=np.asarray(met, np.float64), roughness=np.asarray(rgh, np.float64), uv=uv,
                       pixel=np.stack([rr, cc], axis=1), patch=patch, n_patches=n_patches, stats=stats)
    if zip_eps is not None and len(f):
        from models.omages.seams import zip_seams

        mesh = zip_seams(mesh, zip_eps)
    return prune(mesh)


def prune(mesh: DecodedMesh) -> DecodedMesh:
    """Drop vertices no face uses (isolated pixels, lone pairs)."""
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces.reshape(-1)] = True
    if used.all():
        return mesh
    remap = np.cumsum(used) - 1
    keep = np.nonzero(used)[0]
    return DecodedMesh(vertices=mesh.vertices[keep], faces=remap[mesh.faces], normals=mesh.normals[keep],
                       albedo=mesh.albedo[keep], metallic=mesh.metallic[keep], roughness=mesh.roughness[keep],
                       uv=mesh.uv[keep], pixel=mesh.pixel[keep], patch=mesh.patch[keep], n_patches=mesh.n_patches,
                       stats=mesh.stats)


def face_components(n_vertices: int, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of a mesh through shared vertices: (count, label per vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(faces) == 0:
        return 0, np.zeros(n_vertices, dtype=np.int64)
    i = np.concatenate([faces[:, 0], faces[:, 1]])
    j = np.concatenate([faces[:, 1], faces[:, 2]])
    g = coo_matrix((np.ones(i.size), (i, j)), shape=(n_vertices, n_vertices))
    n, lab = connected_components(g, directed=False)
    used = np.zeros(n_vertices, dtype=bool)
    used[faces.reshape(-1)] = True
    return int(np.unique(lab[used]).size), lab


def point_cloud(omage: np.ndarray) -> np.ndarray:
    """The cheapest point cloud: xyz of every occupied pixel (non-uniform; use metrics.sample_surface for metrics)."""
    om = np.asarray(omage, dtype=np.float32)
    return om[om[..., fmt.OCC] >= 0.5][:, fmt.POS] * 2 - 1
