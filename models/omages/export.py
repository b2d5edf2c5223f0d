"""Decoded omages to files: GLB with a glTF PBR material (the omage's own material channels are the textures, the
pixel grid is the UV map), and point clouds as PLY. An empty decode writes a valid, empty GLB."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from models.core.io import atomic_write
from models.omages import format as fmt
from models.omages.decode import DecodedMesh
from models.omages.textures import linear_to_srgb


def _empty_glb() -> bytes:
    doc = json.dumps({"asset": {"version": "2.0", "generator": "gp3d omages"}, "scene": 0,
                      "scenes": [{"nodes": []}]}).encode()
    doc += b" " * (-len(doc) % 4)
    return struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(doc)) + struct.pack("<I4s", len(doc), b"JSON") + doc


def material_textures(omage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-bit base-colour texture (sRGB-encoded from the linear albedo) and glTF metallicRoughness texture
    (G = roughness, B = metallic) from a file-space omage, rows top to bottom as in the image."""
    om = fmt.clean(omage)
    base = np.round(linear_to_srgb(om[..., fmt.ALB]) * 255).astype(np.uint8)
    mr = np.zeros(om.shape[:2] + (3,), dtype=np.uint8)
    mr[..., 1] = np.round(om[..., fmt.RGH] * 255)
    mr[..., 2] = np.round(om[..., fmt.MET] * 255)
    return base, mr


def to_trimesh(mesh: DecodedMesh, omage: np.ndarray | None = None):
    """trimesh.Trimesh with a PBR material (textures from `omage` when given, else mean per-vertex values)."""
    from PIL import Image

    from models.core.optional import require

    trimesh = require("trimesh", feature="GLB export", extra="omages")
    uv_tm = np.stack([mesh.uv[:, 0], 1.0 - mesh.uv[:, 1]], axis=1)   # trimesh keeps v up; glTF export flips it
    if omage is not None and np.asarray(omage).shape[-1] >= 12:
        base, mr = material_textures(omage)
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(base), metallicRoughnessTexture=Image.fromarray(mr),
            metallicFactor=1.0, roughnessFactor=1.0, doubleSided=True)
    else:
        alb = linear_to_srgb(mesh.albedo.mean(axis=0)) if len(mesh.albedo) else np.full(3, 0.8)
        material = trimesh.visual.material.PBRMaterial(
            baseColorFactor=np.r_[alb, 1.0], metallicFactor=float(mesh.metallic.mean()) if len(mesh.metallic) else 0.0,
            roughnessFactor=float(mesh.roughness.mean()) if len(mesh.roughness) else 0.5, doubleSided=True)
    visual = trimesh.visual.TextureVisuals(uv=uv_tm, material=material)
    return trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, visual=visual, process=False)


def write_glb(path: str | Path, mesh: DecodedMesh, omage: np.ndarray | None = None) -> Path:
    """GLB with a PBR material; open seams are expected (doubleSided keeps open charts visible from both sides)."""
    data = _empty_glb() if mesh.empty else to_trimesh(mesh, omage).export(file_type="glb")
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY point cloud (float32 xyz, optional uint8 rgb)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(pts)}",
              "property float x", "property float y", "property float z"]
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        dtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header.append("end_header")
    rec = np.zeros(len(pts), dtype=dtype)
    rec["x"], rec["y"], rec["z"] = pts.T
    if colors is not None:
        c = np.round(np.clip(np.asarray(colors, dtype=np.float64).reshape(-1, 3), 0, 1) * 255).astype(np.uint8)
        rec["red"], rec["green"], rec["blue"] = c.T
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(("\n".join(header) + "\n").encode() + rec.tobytes())
    return Path(path)
