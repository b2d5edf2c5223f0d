"""The training folder that preprocessing writes and the SfD training stages read (the layout of the original, with
poses stored as lists with explicit instance ids and no pickles):

    raw/000_rgb.png, raw/000_instance_seg.png   the inputs, copied
    raw/temp/cropped/{iii}_rgb.png              masked crops (iii = 0-based input instance id)
    raw/temp/sfm/{database.db, image_pairs.txt, sparse/}   the COLMAP run
    train/000_rgb.png                           photo resized to train_res x train_res (area filter)
    train/000_instance_seg.png                  registered instances only, relabelled 1..R, k/R*255 (nearest)
    train/000_mask.png                          union of the registered instances, {0, 255}
    train/000_normal.png                        synthetic scenes only: GT OpenGL camera-space normals, (n+1)/2
    train/000_rgb_linear.npy, 000_diffuse.png   synthetic scenes only: linear HDR photo, 16-bit linear albedo
    instances.json                              the id map: index (0..R-1) <-> train label <-> input label/value
    non_empty_indexes.txt                       0-based input ids of the registered instances (np.savetxt floats)
    object_pred_pose.json                       {"instances": [{"index", "label", "input_label", "object_to_world"}]}
    object_scale_matrix.json                    {"scale_matrix": S}
    transforms_train.json, transforms_test.json {"focal": "<px at train_res>", "frames": [{"file_path",
                                                 "transform_matrix": OpenGL c2w}], ...}
    points_world.npz                            points_world_all, points_world_<index>, points_canon_<index>
    sfm_report.json, matches.png, cameras_3d.png   diagnostics
    blender_object_gt_pose.json, blender_camera_gt_pose.json, pose_eval.json   synthetic scenes only
    COMPLETE.json                               written last
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data.io import atomic_write, write_npz, write_png, write_text


def _json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n")


def write_poses(folder: Path, *, c2w: np.ndarray, poses: list[np.ndarray], scale: np.ndarray, focal_train: float,
                train_res: int, index_labels: list[tuple[int, int]]) -> None:
    """Pose files. `index_labels[i]` = (train label, input label) of compacted instance i."""
    _json(folder / "object_pred_pose.json", {"convention": "rigid object-to-world, world = instance 0 frame (OpenGL)",
                                             "instances": [
        {"index": i, "label": lab, "input_label": src, "object_to_world": p.tolist()}
        for i, ((lab, src), p) in enumerate(zip(index_labels, poses))]})
    _json(folder / "object_scale_matrix.json", {"scale_matrix": scale.tolist()})
    for split in ("train", "test"):
        _json(folder / f"transforms_{split}.json", {
            "focal": repr(float(focal_train)), "width": train_res, "height": train_res,
            "principal_point": [train_res / 2, train_res / 2], "camera": "OpenGL camera-to-world",
            "frames": [{"file_path": f"{split}/000", "transform_matrix": c2w.tolist()}]})
    with atomic_write(folder / "non_empty_indexes.txt") as tmp:
        np.savetxt(tmp, np.array([src - 1 for _, src in index_labels], np.float64))


def write_points(folder: Path, points_world: list[np.ndarray], points_canon: list[np.ndarray]) -> None:
    arrays = {"points_world_all": np.concatenate(points_world, 0) if points_world else np.zeros((0, 3))}
    for i, (pw, pc) in enumerate(zip(points_world, points_canon)):
        arrays[f"points_world_{i}"] = pw
        arrays[f"points_canon_{i}"] = pc
    write_npz(folder / "points_world.npz", **arrays)


def write_gt(folder: Path, *, c2w_gt: np.ndarray, focal_train: float, train_res: int,
             index_labels: list[tuple[int, int]], gt_poses: dict[int, np.ndarray], metric: dict | None) -> None:
    """Synthetic ground truth, keyed like the predictions (compacted index, train label, input label)."""
    _json(folder / "blender_object_gt_pose.json", {"instances": [
        {"index": i, "label": lab, "input_label": src, "object_to_world": gt_poses[src].tolist()}
        for i, (lab, src) in enumerate(index_labels)]})
    _json(folder / "blender_camera_gt_pose.json", {
        "camera_angle_x": float(2 * np.arctan(train_res / 2 / focal_train)), "focal": repr(float(focal_train)),
        "frames": [{"file_path": "train/000", "transform_matrix": c2w_gt.tolist()}]})
    if metric is not None:
        _json(folder / "pose_eval.json", metric)


def write_train_images(folder: Path, *, rgb_train: np.ndarray, seg_train: np.ndarray, normal_train=None) -> None:
    write_png(folder / "train/000_rgb.png", rgb_train)
    write_png(folder / "train/000_instance_seg.png", seg_train)
    write_png(folder / "train/000_mask.png", np.where(seg_train > 0, 255, 0).astype(np.uint8))
    if normal_train is not None:
        write_png(folder / "train/000_normal.png", normal_train)


def read_poses(folder: Path) -> dict:
    """Load what training needs from a finished folder (used by tests and by part 2)."""
    folder = Path(folder)
    pose = json.loads((folder / "object_pred_pose.json").read_text())["instances"]
    tr = json.loads((folder / "transforms_train.json").read_text())
    pts = np.load(folder / "points_world.npz", allow_pickle=False)
    return {"poses": [np.array(p["object_to_world"]) for p in pose], "labels": [p["label"] for p in pose],
            "input_labels": [p["input_label"] for p in pose], "c2w": np.array(tr["frames"][0]["transform_matrix"]),
            "focal": float(tr["focal"]), "width": int(tr["width"]),
            "scale": np.array(json.loads((folder / "object_scale_matrix.json").read_text())["scale_matrix"]),
            "points": {k: pts[k] for k in pts.files}}
