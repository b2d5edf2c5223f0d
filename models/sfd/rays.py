"""Pixels of the single SfD photo as training items: a scene (camera, poses, images, optional GT) read from a part-1
training folder, or rendered in memory by the analytic renderer (tiny preset, tests).

Item (index, seed) = one pixel: its world ray (through the pixel centre), linear colour, instance label (0 = none),
and, when present, the normal prior in OpenGL camera space (unit vectors).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.core.cli import UserError


@dataclass
class DataConfig:
    instances: int = 5               # N registered instances (the network holds one pose per instance)
    analytic_res: int = 64           # root = None: render the analytic pile at this size...
    analytic_n: int = 3
    analytic_seed: int = 0
    analytic_supersample: int = 1
    normal_prior: bool = False       # use train/000_normal_pretrain.png (or the GT normals as an oracle prior)
    gt_poses: bool = False           # folder: train on blender_object_gt_pose.json instead of the SfM poses


@dataclass
class Scene:
    c2w: np.ndarray         # 4x4 OpenGL camera-to-world
    focal: float
    width: int
    height: int
    poses: np.ndarray       # N 4 4 rigid object-to-world
    scale: np.ndarray       # 4x4 canonical normalisation S
    rgb: np.ndarray         # H W 3 linear
    labels: np.ndarray      # H W int, 0 = background, k = instance k-1
    normal: np.ndarray | None = None   # H W 3 OpenGL camera-space unit normals (prior / GT)
    gt: dict | None = None             # albedo, normal, roughness, light, poses_gt, mesh (synthetic only)


def analytic_scene(cfg: DataConfig) -> Scene:
    """Render the analytic pile with its exact poses (the oracle-pose path of the tests); cached per process."""
    return _analytic_scene(cfg.analytic_n, cfg.analytic_res, cfg.analytic_seed, cfg.analytic_supersample)


@functools.lru_cache(maxsize=4)
def _analytic_scene(n: int, res: int, seed: int, supersample: int) -> Scene:
    from models.sfd import scene_analytic, scene_layout as L

    cfg = DataConfig(analytic_n=n, analytic_res=res, analytic_seed=seed, analytic_supersample=supersample)

    layout = L.make_layout(cfg.analytic_n, cfg.analytic_res, cfg.analytic_seed)
    layout.light = L.default_light(cfg.analytic_seed)
    out = scene_analytic.render(layout, atlas_size=128, supersample=cfg.analytic_supersample)
    r = L.bounding_radius()
    scale = np.diag([r, r, r, 1.0])
    ids = out["ids"]
    n_cam = out["normal_world"] @ layout.c2w_gl[:3, :3]
    v, _, f = L.mesh_arrays()
    gt = {"albedo": out["albedo"], "normal": n_cam, "roughness": scene_analytic.ROUGHNESS, "light": layout.light,
          "poses": layout.object_to_world, "mesh": (v, f), "depth": out["depth"]}
    gt["c2w"] = layout.c2w_gl
    return Scene(c2w=layout.c2w_gl, focal=layout.focal, width=layout.width, height=layout.height,
                 poses=layout.object_to_world, scale=scale, rgb=out["rgb"], labels=ids, normal=n_cam, gt=gt)


def _need(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise UserError(f"{folder}: not a finished SfD training folder: {name} is missing (run scripts/sfd_preprocess.py)")
    return path


def folder_scene(folder: Path, cfg: DataConfig) -> Scene:
    """A part-1 training folder (see models/sfd/training_folder.py), checked for missing or inconsistent poses."""
    from data.io import read_image
    from models.sfd.segmentation import decode_labels, read_label_image
    from models.sfd.training_folder import read_poses

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--data-root {folder}: no such folder")
    for name in ("COMPLETE.json", "object_pred_pose.json", "transforms_train.json", "object_scale_matrix.json",
                 "points_world.npz", "train/000_instance_seg.png"):
        _need(folder, name)
    try:
        info = read_poses(folder)
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        raise UserError(f"{folder}: unreadable pose files: {err}") from None
    poses = np.array(info["poses"], np.float64)
    if cfg.gt_poses:
        gt_file = _need(folder, "blender_object_gt_pose.json")
        poses = np.array([p["object_to_world"] for p in json.loads(gt_file.read_text())["instances"]])
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not np.isfinite(poses).all():
        raise UserError(f"{folder}/object_pred_pose.json: expected N 4x4 finite object-to-world matrices")
    rot = poses[:, :3, :3]
    if np.abs(rot.transpose(0, 2, 1) @ rot - np.eye(3)).max() > 1e-4 or (np.linalg.det(rot) < 0).any():
        raise UserError(f"{folder}/object_pred_pose.json: a pose is not a rigid rotation")
    seg = decode_labels(read_label_image(folder / "train/000_instance_seg.png"), what="train/000_instance_seg.png")
    if seg.n != len(poses):
        raise UserError(f"{folder}: {len(poses)} poses in object_pred_pose.json but {seg.n} instances in "
                        f"train/000_instance_seg.png")
    h, w = seg.labels.shape
    if int(info["width"]) != w:
        raise UserError(f"{folder}/transforms_train.json: width {info['width']} but the segmentation is {w} px")
    lin = folder / "train/000_rgb_linear.npy"
    rgb = np.load(lin, allow_pickle=False).astype(np.float32) if lin.is_file() else \
        read_image(_need(folder, "train/000_rgb.png"))[..., :3] ** 2.2
    normal = gt = None
    for name in ("train/000_normal_pretrain.png", "train/000_normal.png"):
        if cfg.normal_prior and (folder / name).is_file():
            normal = _decode_normals(read_image(folder / name)[..., :3])
            break
    if (folder / "train/000_diffuse.png").is_file():
        gt = {"albedo": read_image(folder / "train/000_diffuse.png")[..., :3]}
        if (folder / "train/000_normal.png").is_file():
            gt["normal"] = _decode_normals(read_image(folder / "train/000_normal.png")[..., :3])
        if (folder / "blender_object_gt_pose.json").is_file() and (folder / "blender_camera_gt_pose.json").is_file():
            gt["poses"] = np.array([p["object_to_world"] for p in
                                    json.loads((folder / "blender_object_gt_pose.json").read_text())["instances"]])
            cam = json.loads((folder / "blender_camera_gt_pose.json").read_text())
            gt["c2w"] = np.array(cam["frames"][0]["transform_matrix"])
    return Scene(c2w=np.array(info["c2w"]), focal=float(info["focal"]), width=w, height=h, poses=poses,
                 scale=np.array(info["scale"]), rgb=rgb, labels=seg.labels.astype(np.int64), normal=normal, gt=gt)


def _decode_normals(img: np.ndarray) -> np.ndarray:
    """(n + 1) / 2 encoded image -> unit vectors (decoded, not renormalised in the encoded space)."""
    n = img * 2 - 1
    return n / np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-6)


class PixelRays(torch.utils.data.Dataset):
    """All pixels (or only the labelled ones, for the Vis and Mat stages) of the scene's photo."""

    def __init__(self, scene: Scene, foreground_only: bool = False):
        from models.sfd.scene_model import camera_rays

        self.scene = scene
        h, w = scene.height, scene.width
        pix = torch.arange(h * w)
        u, v = (pix % w).double() + 0.5, (pix // w).double() + 0.5
        origin, dirs = camera_rays(torch.as_tensor(scene.c2w), scene.focal, w, h, u, v)
        labels = torch.as_tensor(scene.labels.reshape(-1))
        keep = (labels > 0).nonzero().squeeze(1) if foreground_only else pix
        self.keep = keep
        self.data = {"origin": origin.float()[keep], "dirs": dirs.float()[keep], "label": labels[keep],
                     "rgb": torch.as_tensor(scene.rgb.reshape(-1, 3), dtype=torch.float32)[keep],
                     "pixel": keep}
        if scene.normal is not None:
            self.data["normal_prior"] = torch.as_tensor(scene.normal.reshape(-1, 3), dtype=torch.float32)[keep]

    def __len__(self):
        return len(self.keep)

    def __getitem__(self, key):
        return {k: v[key[0]] for k, v in self.data.items()}

    def get_batch(self, keys):
        idx = torch.tensor([k for k, _ in keys])
        return {k: v[idx] for k, v in self.data.items()}
