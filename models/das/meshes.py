"""Mesh tracking videos without Blender: vertex colours baked from frame 0, rasterised in every frame.

As in the original's Blender script, each vertex is coloured once by its first-frame screen position (u0 / W,
v0 / H) and the robust inverse *distance* to the camera over all vertices (2 / 98 percentiles, clipped); vertices
behind the camera or outside the first frame's view are black. Colours are interpolated over faces (perspective
correct) and resolved with 2 x 2 supersampling.

Mesh files use y-up world axes (OBJ / PLY / GLB); `frame_mesh` places an OpenCV camera (y down, z forward) on the
world +z side looking at the bounding-box centre from a distance at which the bounding sphere fills the view.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from models.core.cli import UserError
from models.das import colors as C
from models.das.camera import project, rotation, transform, translation
from models.das.raster import box_filter, rasterize
from models.das.templates import camera_motion


def load_mesh(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertices [V, 3] float64, faces [F, 3] long) of a mesh file (a scene is flattened with its transforms)."""
    from models.core.optional import require

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh not found: {path}")
    trimesh = require("trimesh", feature="mesh tracking videos", extra="das")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
        V = np.asarray(mesh.vertices, dtype=np.float64)
        Fc = np.asarray(mesh.faces, dtype=np.int64)
    except Exception as err:
        raise UserError(f"mesh {path}: cannot load ({str(err).strip().splitlines()[0][:160] if str(err) else type(err).__name__})") from None
    if V.ndim != 2 or V.shape[1] != 3 or len(V) < 3 or Fc.ndim != 2 or Fc.shape[1] != 3 or len(Fc) < 1:
        raise UserError(f"mesh {path}: no triangles found")
    if not np.isfinite(V).all():
        raise UserError(f"mesh {path}: vertices hold NaN or Inf")
    return torch.from_numpy(V), torch.from_numpy(Fc)


def frame_mesh(verts: torch.Tensor, K: torch.Tensor, height: int, width: int, margin: float = 1.1) -> torch.Tensor:
    """4x4 world -> first-frame camera matrix that looks at the mesh from world +z (y up -> image up)."""
    lo, hi = verts.amin(0), verts.amax(0)
    centre = (lo + hi) / 2
    radius = float((verts - centre).norm(dim=1).max()) or 1.0
    half_fov = min(math.atan(width / 2 / float(K[0, 0])), math.atan(height / 2 / float(K[1, 1])))
    dist = margin * radius / math.sin(half_fov)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))  # y up, z back -> y down, z forward
    return translation(0.0, 0.0, dist) @ flip @ translation(*(-centre).tolist())


def spin(verts: torch.Tensor, frames: int, degrees: float) -> torch.Tensor:
    """[T, 4, 4] rigid transforms turning the mesh about its vertical (y) axis through the bounding-box centre."""
    c = (verts.amin(0) + verts.amax(0)) / 2
    s = torch.arange(frames, dtype=torch.float64) / max(frames - 1, 1)
    return torch.stack([translation(*c.tolist()) @ rotation("y", degrees * float(si)) @ translation(*(-c).tolist())
                        for si in s])


def animate(verts: torch.Tensor, frames: int, vertices: torch.Tensor | None = None,
            transforms: torch.Tensor | None = None) -> torch.Tensor:
    """World vertices per frame [T, V, 3]: given per-frame vertices, rigid transforms [T, 4, 4], or static."""
    if vertices is not None:
        if vertices.ndim != 3 or vertices.shape[1:] != verts.shape:
            raise UserError(f"per-frame vertices must be [T, {verts.shape[0]}, 3], got {tuple(vertices.shape)}")
        return vertices.double()
    if transforms is not None:
        if transforms.ndim != 3 or transforms.shape[1:] != (4, 4):
            raise UserError(f"rigid transforms must be [T, 4, 4], got {tuple(transforms.shape)}")
        return transform(transforms.double(), verts.expand(transforms.shape[0], -1, -1))
    return verts.expand(frames, -1, -1)


def vertex_colors(cam0: torch.Tensor, K: torch.Tensor, height: int, width: int, depth: str = "distance",
                  percentiles=(2.0, 98.0), blackout: bool = True) -> tuple[torch.Tensor, C.Normalization]:
    """Per-vertex float colours from first-frame camera vertices [V, 3]. Out-of-view / behind vertices are black
    (Blender's script) with `blackout`, else their (u0, v0) are clipped to the image like any other track."""
    uv0, z0 = project(cam0, K)
    inview = (z0 > 0) & (uv0[:, 0] >= 0) & (uv0[:, 0] <= width) & (uv0[:, 1] >= 0) & (uv0[:, 1] <= height)
    inv = C.inverse_depth(cam0, depth)
    norm = C.fit_normalization(inv[inview] if inview.any() else inv, width, height, percentiles, True,
                               "continuous", depth)
    if not blackout:
        return C.encode(torch.nan_to_num(uv0), inv, norm), norm
    col = C.encode(torch.where(inview[:, None], uv0, torch.zeros_like(uv0)), inv, norm)
    return torch.where(inview[:, None], col, torch.zeros_like(col)), norm


def render_mesh(world: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, height: int, width: int,
                cameras: torch.Tensor, supersample: int = 2, depth: str = "distance", device=None,
                progress: bool = False, source: dict | None = None, fps: float = 8.0):
    """World vertices [T, V, 3] and world -> camera matrices [T, 4, 4] -> (uint8 video [T, H, W, 3], sidecar)."""
    from tqdm import tqdm

    dev = torch.device(device) if device is not None else world.device
    cam = transform(cameras.to(dev), world.to(dev))
    colors, norm = vertex_colors(cam[0], K.to(dev), height, width, depth)
    frames = []
    for t in tqdm(range(cam.shape[0]), desc="raster", disable=not progress, leave=False):
        out = rasterize(cam[t], faces.to(dev), K.to(dev), height, width, colors, supersample)
        frames.append(C.to_levels(box_filter(out["attrs"], supersample)).cpu())
    meta = C.sidecar(norm, K, cameras, source or {"kind": "mesh"}, world.shape[1], cam.shape[0], "mesh", fps,
                     supersample=supersample, faces=int(faces.shape[0]))
    return torch.stack(frames), meta


def mesh_cameras(verts: torch.Tensor, K: torch.Tensor, height: int, width: int, frames: int,
                 motion: str | None = None, spiral: str = "orbit") -> torch.Tensor:
    """Framing camera, then a camera template on top: [T, 4, 4] world -> frame-t camera."""
    return camera_motion(motion, frames, spiral) @ frame_mesh(verts, K, height, width)
