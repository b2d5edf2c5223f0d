"""Mitsuba 3 renderer of the pile-of-duplicates scene (`scalar_rgb`, CPU): a path-traced photo plus an AOV pass that gives
exact integer instance ids, depth, shading normals and albedo.

Mitsuba facts this relies on (checked by tests/test_sfd_scenes.py and the projection check A3):
* camera-local +X points left, +Y up, +Z forward, so a Mitsuba sensor `to_world` equals `c2w_OpenGL @ diag(-1, 1, -1, 1)`;
* `load_dict(..., optimize=False)` keeps the N identical shapes apart (with the default the copies are merged and
  `shape_index` collapses); with it `shape_index` is 0 on background and 1..N in declaration order;
* the env-map emitter is y-up in its own frame; we rotate it so that its +y becomes world +z.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from models.core.optional import require
from models.sfd import scene_layout as L

# Mitsuba's env-map frame (y up) -> our world (z up): local x -> x, local y -> z, local z -> -y
ENV_TO_WORLD = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)
GL_TO_MITSUBA_CAM = np.diag([-1.0, 1.0, -1.0, 1.0])


def _mi():
    mi = require("mitsuba", feature="the Mitsuba test-scene renderer", extra="render")
    if mi.variant() is None:
        mi.set_variant("scalar_rgb")  # the only variant that works on these CPUs (llvm crashes)
    return mi


def mitsuba_envmap_directions(height: int, width: int) -> np.ndarray:
    """World directions of Mitsuba's lat-long pixels (pixel centres), given ENV_TO_WORLD.

    Mitsuba's envmap: local d -> u = atan2(d.x, -d.z) / 2pi (wrapped to [0,1)), v = acos(d.y) / pi."""
    v = (np.arange(height) + 0.5) / height
    u = (np.arange(width) + 0.5) / width
    vv, uu = np.meshgrid(v, u, indexing="ij")
    theta, phi = vv * math.pi, uu * 2 * math.pi
    local = np.stack([np.sin(phi) * np.sin(theta), np.cos(theta), -np.cos(phi) * np.sin(theta)], -1)
    return local @ ENV_TO_WORLD[:3, :3].T


def envmap_image(light: dict, height: int = 128) -> np.ndarray:
    """The SG light rasterised in Mitsuba's lat-long layout (linear RGB, float32)."""
    return L.eval_light(light, mitsuba_envmap_directions(height, 2 * height)).astype(np.float32)


def build_scene(layout: L.SceneLayout, atlas_linear: np.ndarray, obj_path: Path, *, spp: int, max_depth: int,
                aov: bool, seed: int):
    mi = _mi()
    fov = math.degrees(2 * math.atan(layout.width / 2 / layout.focal))
    rfilter = {"type": "box"} if aov else {"type": "gaussian"}
    scene = {
        "type": "scene",
        "sensor": {
            "type": "perspective", "fov_axis": "x", "fov": fov,
            "to_world": mi.ScalarTransform4f((layout.c2w_gl @ GL_TO_MITSUBA_CAM).tolist()),
            "film": {"type": "hdrfilm", "width": layout.width, "height": layout.height, "rfilter": rfilter,
                     "pixel_format": "rgb"},
            "sampler": {"type": "independent", "sample_count": 1 if aov else spp, "seed": seed},
        },
        "emitter": {"type": "envmap", "bitmap": mi.Bitmap(envmap_image(layout.light)),
                    "to_world": mi.ScalarTransform4f(ENV_TO_WORLD.tolist())},
        "mat": {"type": "principled", "roughness": 0.5, "metallic": 0.0, "specular": 0.25,  # F0 = 0.08 * 0.25 = 0.02
                "base_color": {"type": "bitmap", "bitmap": mi.Bitmap(atlas_linear), "raw": True,
                               "filter_type": "bilinear"}},
    }
    if aov:
        scene["integrator"] = {"type": "aov", "aovs": "si:shape_index,dd:depth,nn:sh_normal,al:albedo"}
    else:
        scene["integrator"] = {"type": "path", "max_depth": max_depth}
    for k, pose in enumerate(layout.object_to_world):  # declaration order = shape_index 1..N
        scene[f"obj_{k:03d}"] = {"type": "obj", "filename": str(obj_path), "face_normals": True,
                                 "to_world": mi.ScalarTransform4f(pose.tolist()), "bsdf": {"type": "ref", "id": "mat"}}
    return mi.load_dict(scene, optimize=False)


def render(layout: L.SceneLayout, *, spp: int = 32, max_depth: int = 2, atlas_size: int = 2048,
           progress=None) -> dict:
    """Render the photo and the AOVs. Returns linear rgb (HxWx3), ids (HxW int, 0 = background), depth (HxW, Euclidean
    distance along the ray, 0 on background), normal_world (HxWx3), albedo (HxWx3 linear), atlas (sRGB)."""
    mi = _mi()
    atlas = L.make_atlas(atlas_size, layout.seed)
    atlas_linear = (atlas ** 2.2).astype(np.float32)
    out = {"atlas": atlas}
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "object.obj"
        L.write_obj(obj, lambda p, t: Path(p).write_text(t))
        aov_scene = build_scene(layout, atlas_linear, obj, spp=1, max_depth=max_depth, aov=True, seed=layout.seed)
        aov = np.asarray(mi.render(aov_scene), np.float64)
        if progress:
            progress("aov pass done")
        rgb_scene = build_scene(layout, atlas_linear, obj, spp=spp, max_depth=max_depth, aov=False, seed=layout.seed)
        out["rgb"] = np.asarray(mi.render(rgb_scene), np.float32)[..., :3]
    # channel order of the aov integrator: one block per requested aov, in order
    ids = np.rint(aov[..., 0]).astype(np.int64)
    out["ids"] = ids
    out["depth"] = aov[..., 1].astype(np.float32)
    out["normal_world"] = aov[..., 2:5].astype(np.float32)
    out["albedo"] = aov[..., 5:8].astype(np.float32)
    return out
