"""Structure from motion over the duplicates: each instance is one "image" of a single shared pinhole camera (SfD
Sec. 3.2: instance i seen by the real camera = virtual camera i looking at one canonical object, so all virtual
cameras share the real intrinsics and keypoints stay in full-image coordinates).

pycolmap is imported lazily. Image coordinates follow COLMAP: the top-left corner of the image is (0, 0), so the centre
of pixel (column u, row v) is (u + 0.5, v + 0.5), and the principal point of a centred camera is exactly (W/2, H/2).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.core.cli import UserError
from models.core.optional import require

INSUFFICIENT = "insufficient matches/registration"


def load_pycolmap():
    """pycolmap, or a UserError with the install hint (the CLI turns it into one line)."""
    try:
        return require("pycolmap", feature="Structure-from-Duplicates SfM", extra="sfd")
    except ImportError as err:
        raise UserError(str(err)) from None


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True):
    """Silence COLMAP's glog lines (written by C++ straight to fd 2), keeping Python's own stderr intact."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class SfmOptions:
    focal: float                      # initial focal guess in pixels (of the keypoint coordinates)
    fix_focal: bool = False           # keep the focal at `focal` (no refinement in BA / absolute pose)
    init_min_inliers: int = 30        # COLMAP's default of 100 is for photo collections, too strict for SIFT on crops
    abs_pose_min_inliers: int = 15
    min_model_size: int = 2
    two_view_min_inliers: int = 15
    two_view_max_error: float = 4.0   # RANSAC threshold in pixels
    threads: int = 1
    seed: int = 0
    quiet: bool = True


@dataclass
class SfmResult:
    registered: list[int]                    # instance indices (0-based positions in the keypoint list)
    cam_from_world: dict[int, np.ndarray]    # 4x4 world-to-camera, OpenCV axes, COLMAP world
    focal: float
    points: np.ndarray                       # M x 3 COLMAP world
    observations: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # i -> (point rows, xy)
    mean_reprojection_error: float = float("nan")
    verified_pairs: int = 0


def _name(i: int) -> str:
    return f"{i:03d}_rgb.png"


def write_database(pycolmap, db_path: Path, keypoints: list[np.ndarray], matches: dict, width: int, height: int,
                   focal: float) -> dict[int, int]:
    """COLMAP database: one SIMPLE_PINHOLE camera (f, W/2, H/2) shared by all instance images. Returns index -> id."""
    db = pycolmap.Database.open(str(db_path))
    try:
        cam = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", float(focal), int(width), int(height))
        cam.params = [float(focal), width / 2.0, height / 2.0]
        cam.has_prior_focal_length = True  # start from our guess, not COLMAP's 1.2 * max(W, H)
        cid = db.write_camera(cam)
        ids = {}
        for i, kp in enumerate(keypoints):
            ids[i] = db.write_image(pycolmap.Image(name=_name(i), camera_id=cid))
            db.write_keypoints(ids[i], np.ascontiguousarray(kp, np.float32).reshape(-1, 2))
        for (i, j), m in matches.items():
            db.write_matches(ids[i], ids[j], np.ascontiguousarray(m, np.uint32).reshape(-1, 2))
    finally:
        db.close()
    return ids


def run_sfm(workdir: Path, keypoints: list[np.ndarray], matches: dict, width: int, height: int,
            opt: SfmOptions, progress=None) -> SfmResult:
    """Database -> geometric verification -> incremental mapping; keeps the model with the most registered images.

    Raises UserError(INSUFFICIENT ...) when no model with at least two images comes out."""
    pycolmap = load_pycolmap()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "database.db"
    if db_path.exists():
        db_path.unlink()
    step = progress or (lambda name: None)
    if not opt.quiet:
        pycolmap.logging.logtostderr = True
    write_database(pycolmap, db_path, keypoints, matches, width, height, opt.focal)
    step("database")
    pairs = workdir / "image_pairs.txt"
    pairs.write_text("".join(f"{_name(i)} {_name(j)}\n" for (i, j) in matches))
    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.min_num_inliers = opt.two_view_min_inliers
    tvg.ransac.max_error = opt.two_view_max_error
    tvg.ransac.random_seed = opt.seed
    tvg.ransac.num_threads = opt.threads
    with quiet_native_stderr(opt.quiet):
        pycolmap.verify_matches(str(db_path), str(pairs), options=tvg)
    db = pycolmap.Database.open(str(db_path))
    verified = db.num_verified_image_pairs()
    db.close()
    step("verification")
    if verified == 0:
        raise UserError(f"{INSUFFICIENT}: no instance pair survived geometric verification "
                        f"(>= {opt.two_view_min_inliers} inliers); the instances need more texture or pixels")
    ipo = pycolmap.IncrementalPipelineOptions()
    ipo.min_model_size = opt.min_model_size
    ipo.num_threads = opt.threads
    ipo.random_seed = opt.seed
    ipo.extract_colors = False
    ipo.multiple_models = True
    ipo.mapper.init_min_num_inliers = opt.init_min_inliers
    ipo.mapper.abs_pose_min_num_inliers = opt.abs_pose_min_inliers
    ipo.ba_refine_principal_point = False
    ipo.ba_refine_extra_params = False
    if opt.fix_focal:
        ipo.ba_refine_focal_length = False
        ipo.mapper.abs_pose_refine_focal_length = False
    out_dir = workdir / "sparse"
    out_dir.mkdir(exist_ok=True)
    empty_images = workdir / "images"
    empty_images.mkdir(exist_ok=True)
    with quiet_native_stderr(opt.quiet):
        recs = pycolmap.incremental_mapping(str(db_path), str(empty_images), str(out_dir), options=ipo)
    step("mapping")
    if not recs:
        raise UserError(f"{INSUFFICIENT}: incremental mapping found no initial pair ({verified} verified pairs)")
    rec = max(recs.values(), key=lambda r: r.num_reg_images())
    return _read_reconstruction(rec, len(keypoints), verified)


def _read_reconstruction(rec, n: int, verified: int) -> SfmResult:
    name_to_index = {_name(i): i for i in range(n)}
    cam_from_world, id_to_index = {}, {}
    for image_id, image in rec.images.items():
        if not image.has_pose:
            continue
        i = name_to_index[image.name]
        pose = image.cam_from_world()
        m = np.eye(4)
        m[:3, :3] = pose.rotation.matrix()
        m[:3, 3] = pose.translation
        cam_from_world[i] = m
        id_to_index[image_id] = i
    focal = float(next(iter(rec.cameras.values())).params[0])
    pids = sorted(rec.points3D)
    row = {pid: r for r, pid in enumerate(pids)}
    points = np.array([rec.points3D[p].xyz for p in pids], np.float64).reshape(-1, 3)
    obs: dict[int, tuple[list, list]] = {i: ([], []) for i in cam_from_world}
    for pid in pids:
        for el in rec.points3D[pid].track.elements:
            i = id_to_index.get(el.image_id)
            if i is None:
                continue
            obs[i][0].append(row[pid])
            obs[i][1].append(rec.images[el.image_id].points2D[el.point2D_idx].xy)
    observations = {i: (np.array(r, np.int64), np.array(xy, np.float64).reshape(-1, 2)) for i, (r, xy) in obs.items()}
    return SfmResult(registered=sorted(cam_from_world), cam_from_world=cam_from_world, focal=focal, points=points,
                     observations=observations, mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
                     verified_pairs=verified)


def reprojection_errors(res: SfmResult, width: int, height: int) -> dict[int, float]:
    """Mean pixel reprojection error per registered instance (our own projection, to double-check COLMAP's)."""
    out = {}
    for i, (rows, xy) in res.observations.items():
        if len(rows) == 0:
            out[i] = float("nan")
            continue
        m = res.cam_from_world[i]
        pc = res.points[rows] @ m[:3, :3].T + m[:3, 3]
        uv = res.focal * pc[:, :2] / pc[:, 2:3] + np.array([width / 2, height / 2])
        out[i] = float(np.linalg.norm(uv - xy, axis=1).mean())
    return out
