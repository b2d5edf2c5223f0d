"""Procedural scenes for tests and toy training data: spheres, boxes and planes with textures, rigid motions and a
camera path, rendered to paired RGB (Lambert + procedural texture), tracking video, depth and object masks.

Scene coordinates are the first-frame camera's (OpenCV: x right, y down, z forward), so a floor is a plane at
y > 0. An object's `motion` uses the camera-template grammar, applied about the object's centre
(T(c) M_f T(-c)); `camera_motion` moves the camera as in camera control. A scene is a JSON-able dict:

    {"height": 48, "width": 72, "frames": 9, "fov": 55, "camera_motion": "trans 0.2 0 0",
     "objects": [{"kind": "sphere", "radius": 0.5, "center": [0, 0.5, 4], "color": [0.8, 0.2, 0.2],
                  "texture": "checker", "motion": "trans 0.5 0 0"}, ...]}
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch

from models.core.cli import UserError
from models.das import colors as C
from models.das.camera import intrinsics_from_fov, transform, translation
from models.das.meshes import vertex_colors
from models.das.raster import box_filter, rasterize
from models.das.templates import camera_motion

KINDS = ("sphere", "box", "plane")
TEXTURES = ("solid", "checker", "stripes")
LIGHT = torch.tensor([-0.4, -0.8, -0.45], dtype=torch.float64)  # towards the light: upper left, in front
AMBIENT, BACKGROUND = 0.3, 0.08


def _grid(nu: int, nv: int) -> torch.Tensor:
    """Faces of an (nu + 1) x (nv + 1) vertex grid, two triangles per cell."""
    i, j = torch.meshgrid(torch.arange(nu), torch.arange(nv), indexing="ij")
    a = (i * (nv + 1) + j).reshape(-1)
    b, c, d = a + 1, a + nv + 1, a + nv + 2
    return torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])


def sphere(radius: float, n: int = 24) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vertices, faces, normals) of a UV sphere about the origin."""
    th = torch.linspace(0, math.pi, n + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, 2 * n + 1, dtype=torch.float64)
    T, P = torch.meshgrid(th, ph, indexing="ij")
    nrm = torch.stack([torch.sin(T) * torch.cos(P), -torch.cos(T), torch.sin(T) * torch.sin(P)], -1).reshape(-1, 3)
    return radius * nrm, _grid(n, 2 * n), nrm


def box(size, n: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vertices, faces, normals) of an axis-aligned box about the origin, each side an n x n grid."""
    half = torch.tensor(size, dtype=torch.float64) / 2
    g = torch.linspace(-1, 1, n + 1, dtype=torch.float64)
    A, B = torch.meshgrid(g, g, indexing="ij")
    A, B = A.reshape(-1), B.reshape(-1)
    verts, faces, normals = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            p = torch.zeros(A.numel(), 3, dtype=torch.float64)
            o1, o2 = [k for k in range(3) if k != axis]
            p[:, axis], p[:, o1], p[:, o2] = sign, A, B
            nrm = torch.zeros_like(p)
            nrm[:, axis] = sign
            faces.append(_grid(n, n) + sum(v.shape[0] for v in verts))
            verts.append(p * half)
            normals.append(nrm)
    return torch.cat(verts), torch.cat(faces), torch.cat(normals)


def plane(size, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vertices, faces, normals) of a horizontal plane (x-z) about the origin, normal pointing up (-y)."""
    gx = torch.linspace(-size[0] / 2, size[0] / 2, n + 1, dtype=torch.float64)
    gz = torch.linspace(-size[1] / 2, size[1] / 2, n + 1, dtype=torch.float64)
    X, Z = torch.meshgrid(gx, gz, indexing="ij")
    v = torch.stack([X, torch.zeros_like(X), Z], -1).reshape(-1, 3)
    nrm = torch.zeros_like(v)
    nrm[:, 1] = -1.0
    return v, _grid(n, n), nrm


def _primitive(obj: dict):
    kind = obj.get("kind")
    if kind == "sphere":
        return sphere(float(obj.get("radius", 0.5)), int(obj.get("resolution", 24)))
    if kind == "box":
        return box(obj.get("size", [1.0, 1.0, 1.0]), int(obj.get("resolution", 4)))
    if kind == "plane":
        return plane(obj.get("size", [6.0, 6.0]), int(obj.get("resolution", 8)))
    raise UserError(f"scene object kind {kind!r}: expected one of {', '.join(KINDS)}")


def _texture(local: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    if kind == "solid":
        return torch.ones(local.shape[0], dtype=local.dtype)
    if kind == "checker":
        k = torch.floor(local * scale).sum(1).remainder(2)
    elif kind == "stripes":
        k = torch.floor(local[:, 0] * scale).remainder(2)
    else:
        raise UserError(f"texture {kind!r}: expected one of {', '.join(TEXTURES)}")
    return 0.55 + 0.45 * k


def render_scene(scene: dict, device=None, progress: bool = False) -> dict:
    """-> rgb uint8 [T, H, W, 3], tracking uint8 [T, H, W, 3], depth float32 [T, H, W] (0 = background),
    labels uint8 [T, H, W] (0 = background, k = object k - 1), sidecar dict, prompt."""
    from tqdm import tqdm

    H, W, T = int(scene.get("height", 480)), int(scene.get("width", 720)), int(scene.get("frames", 49))
    K = intrinsics_from_fov(W, H, float(scene.get("fov", 55.0)))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    objects = scene.get("objects") or []
    if not objects:
        raise UserError("scene has no objects")
    if len(objects) > 254:
        raise UserError("scene has more than 254 objects (labels are uint8)")
    M = camera_motion(scene.get("camera_motion"), T)
    verts, faces, normals, locals_, albedo, owner, textures = [], [], [], [], [], [], []
    per_frame = []
    for k, obj in enumerate(objects):
        v, f, n = _primitive(obj)
        c = torch.tensor(obj.get("center", [0.0, 0.0, 4.0]), dtype=torch.float64)
        O = translation(*c.tolist()) @ camera_motion(obj.get("motion"), T) @ translation(*(-c).tolist())
        per_frame.append(O @ translation(*c.tolist()))  # local -> scene, per frame
        faces.append(f + sum(x.shape[0] for x in verts))
        verts.append(v)
        normals.append(n)
        locals_.append(v)
        albedo.append(torch.tensor(obj.get("color", [0.7, 0.7, 0.7]), dtype=torch.float64).expand(v.shape[0], 3))
        owner.append(torch.full((f.shape[0],), k, dtype=torch.long))
        textures.append((obj.get("texture", "solid"), float(obj.get("texture_scale", 4.0))))
    faces_all, owner = torch.cat(faces).to(dev), torch.cat(owner).to(dev)
    sizes = [v.shape[0] for v in verts]

    def frame_geometry(t):
        pts, nrm = [], []
        for v, n, L in zip(verts, normals, per_frame):
            A = M[t] @ L[t]
            pts.append(transform(A, v))
            nrm.append(n @ A[:3, :3].T)
        return torch.cat(pts).to(dev), torch.cat(nrm).to(dev)

    cam0, _ = frame_geometry(0)
    track_col, norm = vertex_colors(cam0, K.to(dev), H, W, depth="z", blackout=False)
    local_all, albedo_all = torch.cat(locals_).to(dev), torch.cat(albedo).to(dev)
    light = (LIGHT / LIGHT.norm()).to(dev)
    S = 2
    rgb, tracking, depth, labels = [], [], [], []
    for t in tqdm(range(T), desc="scene", disable=not progress, leave=False):
        pts, nrm = frame_geometry(t)
        attrs = torch.cat([local_all, nrm, albedo_all, track_col], dim=1)
        out = rasterize(pts, faces_all, K.to(dev), H, W, attrs, supersample=S)
        a, face = out["attrs"].reshape(-1, attrs.shape[1]), out["face"].reshape(-1)
        hit = face >= 0
        shade = torch.full((a.shape[0], 3), BACKGROUND, dtype=a.dtype, device=dev)
        tex = torch.ones(a.shape[0], dtype=a.dtype, device=dev)
        obj_of = torch.where(hit, owner[face.clamp(min=0)], torch.full_like(face, -1))
        for k, (kind, scale) in enumerate(textures):
            sel = obj_of == k
            tex[sel] = _texture(a[sel, :3], kind, scale)
        n_hat = a[:, 3:6] / a[:, 3:6].norm(dim=1, keepdim=True).clamp(min=1e-12)
        lam = (n_hat @ light).clamp(min=0.0)
        lit = a[:, 6:9] * tex[:, None] * (AMBIENT + (1 - AMBIENT) * lam[:, None])
        shade[hit] = lit[hit]
        rgb.append(box_filter(shade.view(H * S, W * S, 3), S).clamp(0, 1))
        tracking.append(C.to_levels(box_filter(out["attrs"][..., 9:12], S)).cpu())
        one = rasterize(pts, faces_all, K.to(dev), H, W, None, supersample=1)
        hit1 = one["face"] >= 0
        depth.append(torch.where(hit1, one["depth"], torch.zeros_like(one["depth"])).float().cpu())
        lab = torch.where(hit1, owner[one["face"].clamp(min=0)] + 1, torch.zeros_like(one["face"]))
        labels.append(lab.to(torch.uint8).cpu())
    rgb_u8 = torch.round(torch.stack(rgb) * 255).to(torch.uint8).cpu()
    meta = C.sidecar(norm, K, M, {"kind": "procedural", "scene": scene}, sum(sizes), T, "mesh", 8.0, supersample=S)
    return {"rgb": rgb_u8.numpy(), "tracking": torch.stack(tracking).numpy(), "depth": torch.stack(depth).numpy(),
            "labels": torch.stack(labels).numpy(), "sidecar": meta, "prompt": scene_prompt(scene)}


# ------------------------------------------------------------------------------------------------ random scenes
PALETTE = {"red": (0.85, 0.2, 0.15), "green": (0.2, 0.7, 0.25), "blue": (0.2, 0.35, 0.85), "yellow": (0.9, 0.8, 0.2),
           "white": (0.9, 0.9, 0.9), "orange": (0.95, 0.5, 0.1)}
OBJECT_MOTIONS = ["trans 0.8 0 0", "trans -0.8 0 0", "trans 0 0 1.5", "rot y 120", "trans 0 -0.6 0 0 24"]
CAMERA_MOTIONS = ["", "trans 0.3 0 0", "trans 0 0 -0.8", "rot y 8", "spiral 2", "trans -0.2 0 0; rot y -6"]


def random_scene(seed: int, height: int = 480, width: int = 720, frames: int = 49, n_objects: int = 2) -> dict:
    """A floor and a few spheres / boxes with random colours, textures and motions; deterministic by seed."""
    rng = random.Random(seed)
    floor = {"kind": "plane", "center": [0.0, 1.0, 6.5], "size": [12.0, 10.0], "color": [0.6, 0.6, 0.6],
             "texture": "checker", "texture_scale": 1.0, "resolution": 24, "name": "floor"}
    objects = [floor]
    for i in range(n_objects):
        name = rng.choice(sorted(PALETTE))
        kind = rng.choice(["sphere", "box"])
        r = rng.uniform(0.35, 0.6)
        centre = [rng.uniform(-1.2, 1.2), 1.0 - r, rng.uniform(3.5, 5.5)]
        obj = {"kind": kind, "center": centre, "color": list(PALETTE[name]), "name": name,
               "texture": rng.choice(TEXTURES), "motion": rng.choice(OBJECT_MOTIONS)}
        obj.update({"radius": r} if kind == "sphere" else {"size": [2 * r, 2 * r, 2 * r]})
        objects.append(obj)
    return {"height": height, "width": width, "frames": frames, "fov": 55.0, "seed": seed,
            "camera_motion": rng.choice(CAMERA_MOTIONS), "objects": objects}


def scene_prompt(scene: dict) -> str:
    names = [f"a {o.get('name', '')} {o['kind']}".replace("  ", " ") for o in scene.get("objects", [])
             if o.get("kind") != "plane"]
    floor = any(o.get("kind") == "plane" for o in scene.get("objects", []))
    return (" and ".join(names) or "an empty scene") + (" on a checkered floor" if floor else "")


def as_numpy_scene(result: dict) -> dict[str, np.ndarray]:
    """The arrays of `render_scene` for one lossless .npz."""
    return {k: result[k] for k in ("rgb", "tracking", "depth", "labels")}
