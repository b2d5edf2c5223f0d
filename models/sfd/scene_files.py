"""Writing and reading a rendered test scene (either renderer) as a folder the preprocessing CLI takes as input.

    <scene>/raw/000_rgb.png             sRGB 8-bit photo (x^(1/2.2) of the linear render, clipped)
    <scene>/raw/000_instance_seg.png    uint8 labels, background 0, instance k = floor(k * 255 / N)
    <scene>/gt/camera.json              OpenGL camera-to-world, focal (px at this resolution), width, height
    <scene>/gt/object_poses.json        list of {"label": k, "object_to_world": 4x4} (rigid, no scale)
    <scene>/gt/object.obj, atlas.png    the shared mesh (object frame) and its sRGB texture atlas
    <scene>/gt/normal.png               OpenGL camera-space normals, (n + 1) / 2, background white
    <scene>/gt/albedo.png               linear diffuse albedo, 16-bit
    <scene>/gt/rgb_linear.npy           the linear (HDR) render, float16
    <scene>/gt/depth.npy                Euclidean distance camera -> surface along each pixel ray, 0 on background
    <scene>/gt/light.json, envmap.npy   the SG light and its lat-long map (z up, SfD layout)
    <scene>/scene.json                  renderer, seed, spp, N, timing
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from data.io import write_npy, write_png, write_text
from models.sfd import scene_layout as L
from models.sfd.segmentation import encode_labels


def linear_to_srgb8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


def write_scene(folder: Path, layout: L.SceneLayout, out: dict, info: dict, minimal: bool = False) -> Path:
    """Write the scene into a temporary sibling folder and rename it to `folder` at the end. `minimal` keeps only the
    photo, labels, camera, poses, mesh and light (for small test fixtures)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        ids = out["ids"]
        write_png(tmp / "raw/000_rgb.png", linear_to_srgb8(out["rgb"]))
        write_png(tmp / "raw/000_instance_seg.png", encode_labels(ids, layout.n))
        c2w = layout.c2w_gl
        write_text(tmp / "gt/camera.json", json.dumps({
            "c2w_opengl": c2w.tolist(), "focal": layout.focal, "width": layout.width, "height": layout.height,
            "principal_point": [layout.width / 2, layout.height / 2]}, indent=1))
        write_text(tmp / "gt/object_poses.json", json.dumps({"instances": [
            {"label": k + 1, "object_to_world": p.tolist()} for k, p in enumerate(layout.object_to_world)]}, indent=1))
        L.write_obj(tmp / "gt/object.obj", write_text)
        write_text(tmp / "gt/light.json", json.dumps(layout.light, indent=1))
        if not minimal:
            write_png(tmp / "gt/atlas.png", out["atlas"])
            n_cam = out["normal_world"] @ c2w[:3, :3]  # world -> OpenGL camera: R^T n, written row-wise as n @ R
            write_png(tmp / "gt/normal.png", np.where((ids > 0)[..., None], (n_cam + 1) / 2, 1.0))
            write_png(tmp / "gt/albedo.png", np.clip(out["albedo"], 0, 1), bits=16)
            write_npy(tmp / "gt/rgb_linear.npy", out["rgb"].astype(np.float16))  # HDR, for material checks
            write_npy(tmp / "gt/depth.npy", np.where(ids > 0, out["depth"], 0).astype(np.float32))
            envmap = L.eval_light(layout.light, L.latlong_directions(64, 128)).astype(np.float32)
            write_npy(tmp / "gt/envmap.npy", envmap)
        write_text(tmp / "scene.json", json.dumps({**info, **layout.to_json(), "roughness": 0.5, "f0": 0.02}, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_gt(scene: Path) -> dict:
    """GT camera and poses of a scene folder (or None when it has no gt/)."""
    scene = Path(scene)
    cam_p, pose_p = scene / "gt/camera.json", scene / "gt/object_poses.json"
    if not (cam_p.is_file() and pose_p.is_file()):
        return None
    cam = json.loads(cam_p.read_text())
    poses = json.loads(pose_p.read_text())["instances"]
    return {"scene": scene, "c2w": np.array(cam["c2w_opengl"]), "focal": float(cam["focal"]), "width": int(cam["width"]),
            "height": int(cam["height"]), "labels": [int(p["label"]) for p in poses],
            "object_to_world": np.array([p["object_to_world"] for p in poses])}
