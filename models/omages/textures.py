"""Materials of loaded meshes: glTF PBR textures and factors, simple OBJ materials, vertex colours -> a material
function the encoder evaluates at every baked pixel (via the interpolated source UV)."""
from __future__ import annotations

import numpy as np

from models.omages.encode import EncodeError, MeshInput


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def sample_bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) float image at trimesh UVs (origin bottom-left, v up), repeating outside [0, 1]."""
    h, w = img.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (1.0 - uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0m, x1m = x0 % w, (x0 + 1) % w
    y0m, y1m = y0 % h, (y0 + 1) % h
    top = img[y0m, x0m] * (1 - fx) + img[y0m, x1m] * fx
    bot = img[y1m, x0m] * (1 - fx) + img[y1m, x1m] * fx
    return top * (1 - fy) + bot * fy


def _image(img) -> np.ndarray | None:
    if img is None:
        return None
    a = np.asarray(img.convert("RGBA") if hasattr(img, "convert") else img, dtype=np.float64)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a / 255.0 if a.max() > 1.0 else a


def _factor(value, n: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(n, default, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.max(initial=0) > 1.0:  # trimesh sometimes keeps 8-bit colours
        v = v / 255.0
    return v[:n] if v.size >= n else np.full(n, float(v[0]) if v.size else default)


class _PartMaterial:
    """glTF metallic-roughness model of one part: base colour (sRGB texture x linear factor), metallic and roughness
    (B and G of the metallicRoughness texture x factors)."""

    def __init__(self, material, vertex_colors: np.ndarray | None):
        self.vertex_colors = vertex_colors
        self.base = np.array([0.8, 0.8, 0.8])
        self.base_tex = self.mr_tex = None
        self.metal, self.rough = 0.0, 0.5
        if material is None:
            return
        if hasattr(material, "baseColorFactor") or hasattr(material, "baseColorTexture"):
            self.base = _factor(getattr(material, "baseColorFactor", None), 3, 1.0)   # glTF default: white
            self.base_tex = _image(getattr(material, "baseColorTexture", None))
            self.mr_tex = _image(getattr(material, "metallicRoughnessTexture", None))
            m, r = getattr(material, "metallicFactor", None), getattr(material, "roughnessFactor", None)
            self.metal = 1.0 if m is None and self.mr_tex is not None else float(m if m is not None else 0.0)
            self.rough = 1.0 if r is None else float(r)
        else:  # OBJ-style SimpleMaterial: diffuse colour (sRGB) and an optional image
            self.base = srgb_to_linear(_factor(getattr(material, "diffuse", None), 3, 0.8))
            self.base_tex = _image(getattr(material, "image", None))

    def __call__(self, uv: np.ndarray | None, vcol: np.ndarray | None, n: int):
        alb = np.broadcast_to(self.base, (n, 3)).astype(np.float64)
        if vcol is not None:
            alb = alb * vcol
        met = np.full(n, self.metal)
        rgh = np.full(n, self.rough)
        if uv is not None and self.base_tex is not None:
            alb = alb * srgb_to_linear(sample_bilinear(self.base_tex[..., :3], uv))
        if uv is not None and self.mr_tex is not None:
            mr = sample_bilinear(self.mr_tex[..., :3], uv)
            rgh, met = rgh * mr[:, 1], met * mr[:, 2]
        return alb, met, rgh


def mesh_from_trimesh(loaded, name: str = "mesh") -> MeshInput:
    """Flatten a trimesh Trimesh or Scene (with transforms) into one MeshInput whose material looks up each part."""
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        parts = []
        for node in loaded.graph.nodes_geometry:
            transform, geom_name = loaded.graph[node]
            geom = loaded.geometry[geom_name]
            if isinstance(geom, trimesh.Trimesh):
                g = geom.copy()
                g.apply_transform(transform)
                parts.append(g)
    elif isinstance(loaded, trimesh.Trimesh):
        parts = [loaded]
    else:
        raise EncodeError(f"{name}: holds no triangle mesh (got {type(loaded).__name__})")
    parts = [p for p in parts if len(p.faces)]
    if not parts:
        raise EncodeError(f"{name}: empty mesh (no triangles)")
    verts, faces, uvs, vcols, materials, face_part = [], [], [], [], [], []
    offset = 0
    any_uv = False
    for k, p in enumerate(parts):
        vis = p.visual
        uv = getattr(vis, "uv", None) if vis.kind == "texture" else None
        material = getattr(vis, "material", None) if vis.kind == "texture" else None
        vc = None
        if vis.kind == "vertex":
            vc = srgb_to_linear(np.asarray(vis.vertex_colors, dtype=np.float64)[:, :3] / 255.0)
        if uv is not None and len(uv) == len(p.vertices):
            any_uv = True
            uvs.append(np.asarray(uv, dtype=np.float64))
        else:
            uvs.append(np.zeros((len(p.vertices), 2)))
            uv = None
        vcols.append(vc if vc is not None else np.ones((len(p.vertices), 3)))
        materials.append((_PartMaterial(material, vc), uv is not None, vc is not None))
        verts.append(np.asarray(p.vertices, dtype=np.float64))
        faces.append(np.asarray(p.faces, dtype=np.int64) + offset)
        face_part.append(np.full(len(p.faces), k))
        offset += len(p.vertices)
    V, F = np.concatenate(verts), np.concatenate(faces)
    UV = np.concatenate(uvs) if any_uv else None
    VC = np.concatenate(vcols)
    part_of_face = np.concatenate(face_part)
    corner_vertex = F  # to look up vertex colours at the baked point, use the nearest corner's colour

    def material(points, face_ids, src_uv):
        n = len(points)
        alb, met, rgh = np.zeros((n, 3)), np.zeros(n), np.zeros(n)
        part = part_of_face[face_ids]
        for k, (mat, has_uv, has_vc) in enumerate(materials):
            sel = np.nonzero(part == k)[0]
            if sel.size == 0:
                continue
            uv = src_uv[sel] if (has_uv and src_uv is not None) else None
            vc = VC[corner_vertex[face_ids[sel], 0]] if has_vc else None
            alb[sel], met[sel], rgh[sel] = mat(uv, vc, sel.size)
        return alb, met, rgh

    return MeshInput(vertices=V, faces=F, uv=UV, material=material, name=name)
