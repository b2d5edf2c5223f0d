"""Structure-from-Duplicates preprocessing, one call: photo + instance segmentation -> training folder.

Stages (each with its own progress bar): inputs -> crops -> SIFT -> matching -> SfM -> checks + poses -> folder.
Failure modes that the original let pass with exit code 0 (too few keypoints or matches, too few registered instances,
a focal length that ran away, a large reprojection error) raise `UserError` here, and nothing is left behind: the folder
is built under a temporary name and renamed only after its completion marker is written.
"""
from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.core.cli import UserError, mark_complete
from models.sfd import crops as crops_mod
from models.sfd import features, plots, sfm
from models.sfd import poses as P
from models.sfd import training_folder as TF
from models.sfd.scene_files import read_gt
from models.sfd.scene_layout import FOCAL_PER_WIDTH
from models.sfd.segmentation import encode_labels, load_instances, resize_labels


@dataclass
class Options:
    instances: int | None = None       # expected N (checked against the file)
    train_res: int = 800
    crop_size: int | None = None       # default: largest instance / 0.75, rounded up to 64
    focal: float | None = None         # initial focal at train_res px (default 1111/800 * train_res)
    fix_focal: bool = False
    erode: int = 3
    max_features: int = 4000
    ratio: float = 0.85
    min_keypoints: int = 100
    min_matches: int = 15
    min_registered: int | None = None  # default max(2, ceil(N / 2))
    max_focal_ratio: float = 1.5
    max_reproj_error: float = 2.0      # px at the photo's resolution
    threads: int = 1
    seed: int = 0
    progress: bool = True
    colmap_log: bool = False           # let COLMAP's own log lines through to stderr


def read_photo(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"image {path}: not a readable image (PNG/JPEG expected)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_inputs(image: Path, seg: Path, opt: Options):
    rgb = read_photo(image)
    h, w = rgb.shape[:2]
    if h != w:
        raise UserError(f"image {image}: is {w}x{h}; Structure-from-Duplicates preprocessing expects a square photo")
    inst = load_instances(seg, expect_n=opt.instances)
    if inst.labels.shape != (h, w):
        sh, sw = inst.labels.shape
        raise UserError(f"segmentation {seg}: is {sw}x{sh} but the image {image} is {w}x{h}; they must match")
    if opt.train_res > w:
        raise UserError(f"--train-res {opt.train_res}: larger than the {w}x{h} image")
    return rgb, inst


def _write_gt_images(scene: Path, folder: Path, size: int):
    """Synthetic GT at train_res: linear HDR photo (area filter), albedo (16-bit linear) and normals (nearest, since
    averaging unit normals across edges is wrong). Returns the normal image for train/000_normal.png, or None."""
    import cv2

    from data.io import write_npy, write_png

    lin = scene / "gt/rgb_linear.npy"
    if lin.is_file():
        img = np.load(lin, allow_pickle=False).astype(np.float32)
        write_npy(folder / "train/000_rgb_linear.npy", cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    alb = scene / "gt/albedo.png"
    if alb.is_file():
        img = cv2.cvtColor(cv2.imread(str(alb), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        write_png(folder / "train/000_diffuse.png", resize_labels(img, size))
    nrm = scene / "gt/normal.png"
    return resize_labels(read_photo(nrm), size) if nrm.is_file() else None


class _Stage:
    """A tqdm bar per stage plus wall-clock bookkeeping."""

    def __init__(self, timings: dict, enabled: bool):
        self.timings, self.enabled, self.k = timings, enabled, 0

    def __call__(self, name: str, total: int):
        self.k += 1
        self.name, self.t0 = name, time.perf_counter()
        self.bar = tqdm(total=total, desc=f"[{self.k}/7] {name}", disable=not self.enabled, leave=True,
                        file=sys.stderr, dynamic_ncols=True)
        return self

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        self.bar.close()
        self.timings[self.name] = round(time.perf_counter() - self.t0, 3)


def _warn(msg: str, warnings: list) -> None:
    warnings.append(msg)
    tqdm.write(f"warning: {msg}", file=sys.stderr)


def preprocess(image: Path, seg: Path, out: Path, opt: Options, *, gt_scene: Path | None = None,
               overwrite: bool = False) -> dict:
    """Run every stage and write the training folder `out`. Returns the report (also in sfd_report.json)."""
    out = Path(out)
    if out.exists() and not (overwrite and out.is_dir()):
        raise UserError(f"--out {out}: exists (pick another folder, or pass --overwrite)")
    timings, warnings = {}, []
    stage = _Stage(timings, opt.progress)
    with stage("inputs", 1) as bar:
        rgb, inst = load_inputs(Path(image), Path(seg), opt)
        gt = read_gt(gt_scene) if gt_scene else None
        sfm.load_pycolmap()  # fail before any real work when SfM cannot run
        bar.update()
    n, (h, w) = inst.n, inst.labels.shape
    min_reg = opt.min_registered or max(2, math.ceil(n / 2))
    focal_train = opt.focal or FOCAL_PER_WIDTH * opt.train_res
    focal_full = focal_train * w / opt.train_res

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        report = _run(rgb, inst, tmp, opt, stage, warnings, min_reg, focal_full, focal_train, gt, image, seg)
        report["timings_s"] = timings
        TF._json(tmp / "sfd_report.json", report)
        mark_complete(tmp, registered=len(report["registered_input_labels"]), instances=n)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{int(time.time())}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _run(rgb, inst, tmp: Path, opt: Options, stage, warnings, min_reg, focal_full, focal_train, gt, image, seg):
    import cv2

    n, (h, w) = inst.n, inst.labels.shape
    insufficient = sfm.INSUFFICIENT
    with stage("crops", n) as bar:
        crops, crop_size = crops_mod.crop_instances(rgb, inst.labels, n, opt.crop_size)
        for c in crops:
            plots.save(tmp / f"raw/temp/cropped/{c.label - 1:03d}_rgb.png", c.image)
            bar.update()
    with stage("features", n) as bar:
        feats = []
        for c in crops:
            feats.append(features.detect(c, erode_px=opt.erode, max_features=opt.max_features))
            bar.update()
    kp_counts = {c.label: len(f.xy) for c, f in zip(crops, feats)}
    usable = [k for k, f in enumerate(feats) if len(f.xy) >= opt.min_keypoints]
    dropped = [crops[k].label for k in range(n) if k not in usable]
    if dropped:
        _warn(f"instances {dropped} have fewer than {opt.min_keypoints} SIFT keypoints "
              f"({[kp_counts[d] for d in dropped]}); they become background", warnings)
    if len(usable) < min_reg:
        raise UserError(f"{insufficient}: only {len(usable)} of {n} instances have >= {opt.min_keypoints} SIFT "
                        f"keypoints (counts {list(kp_counts.values())}; need {min_reg}); the photo is too small or "
                        f"blurry: instances should span several hundred pixels")
    ufeats = [feats[k] for k in usable]
    with stage("matching", len(usable) * (len(usable) - 1) // 2) as bar:
        matches = features.match_all(ufeats, ratio=opt.ratio, min_matches=opt.min_matches,
                                     progress=lambda: bar.update())
    if not matches:
        raise UserError(f"{insufficient}: no instance pair has >= {opt.min_matches} mutual SIFT matches")
    sfm_dir = tmp / "raw/temp/sfm"
    sopt = sfm.SfmOptions(focal=focal_full, fix_focal=opt.fix_focal, threads=opt.threads, seed=opt.seed,
                          two_view_min_inliers=opt.min_matches, quiet=not opt.colmap_log)
    with stage("sfm", 3) as bar:
        res = sfm.run_sfm(sfm_dir, [f.xy for f in ufeats], matches, w, h, sopt, progress=lambda _: bar.update())
    reg_labels = [crops[usable[i]].label for i in res.registered]
    missing = [crops[usable[i]].label for i in range(len(usable)) if i not in res.registered]
    if len(res.registered) < min_reg:
        raise UserError(f"{insufficient}: SfM registered {len(res.registered)} of {n} instances "
                        f"(labels {reg_labels}; need {min_reg}, --min-registered)")
    if missing:
        _warn(f"SfM could not register instances {missing}; they become background", warnings)

    with stage("checks+poses", 4) as bar:
        ratio = res.focal / focal_full
        if not opt.fix_focal and not (1 / opt.max_focal_ratio <= ratio <= opt.max_focal_ratio):
            raise UserError(f"{insufficient}: {len(reg_labels)} of {n} instances registered but the recovered focal "
                            f"{res.focal * opt.train_res / w:.1f} px is {ratio:.2f}x the initial {focal_train:.1f} px "
                            f"(band {opt.max_focal_ratio}x): the focal ran away; pass --fix-focal or a better --focal")
        if not res.mean_reprojection_error <= opt.max_reproj_error:
            raise UserError(f"{insufficient}: mean reprojection error {res.mean_reprojection_error:.2f} px exceeds "
                            f"--max-reproj-error {opt.max_reproj_error}")
        bar.update()
        c2w, poses = P.poses_from_sfm(res.cam_from_world, res.registered)
        pts_canon = [P.canonical_points(res.points[res.observations[i][0]]) for i in res.registered]
        pts_world = [P.transform(p, pc) for p, pc in zip(poses, pts_canon)]
        if len(pts_canon[0]) < 4:
            raise UserError(f"{insufficient}: instance {reg_labels[0]} has {len(pts_canon[0])} 3D points")
        scale = P.scale_matrix(pts_world[0])
        bar.update()
        focal_out = res.focal * opt.train_res / w
        index_labels = [(i + 1, lab) for i, lab in enumerate(reg_labels)]
        metric = None
        if gt is not None:
            gt_pose = dict(zip(gt["labels"], gt["object_to_world"]))
            metric = P.pose_metric(c2w, poses, gt["c2w"], [gt_pose[lab] for lab in reg_labels])
            gt_focal = gt["focal"] * opt.train_res / gt["width"]
            metric.update(focal_pred=focal_out, focal_gt=gt_focal, focal_rel_error=focal_out / gt_focal - 1,
                          registered=len(reg_labels), instances=n)
        bar.update()
        reproj = sfm.reprojection_errors(res, w, h)
        bar.update()

    with stage("write", 6) as bar:
        kept = inst.keep(reg_labels)
        seg_train = encode_labels(resize_labels(kept.labels, opt.train_res), len(reg_labels))
        rgb_train = cv2.resize(rgb, (opt.train_res, opt.train_res), interpolation=cv2.INTER_AREA)
        normal = None
        if gt is not None:
            normal = _write_gt_images(gt["scene"], tmp, opt.train_res)
        if Path(image).suffix.lower() == ".png":
            shutil.copyfile(image, tmp / "raw/000_rgb.png")
        else:
            plots.save(tmp / "raw/000_rgb.png", rgb)
        shutil.copyfile(seg, tmp / f"raw/000_instance_seg{Path(seg).suffix.lower()}")
        TF.write_train_images(tmp, rgb_train=rgb_train, seg_train=seg_train, normal_train=normal)
        bar.update()
        TF.write_poses(tmp, c2w=c2w, poses=poses, scale=scale, focal_train=focal_out, train_res=opt.train_res,
                       index_labels=index_labels)
        TF.write_points(tmp, pts_world, pts_canon)
        bar.update()
        if gt is not None:
            TF.write_gt(tmp, c2w_gt=gt["c2w"], focal_train=gt["focal"] * opt.train_res / gt["width"],
                        train_res=opt.train_res, index_labels=index_labels, gt_poses=gt_pose, metric=metric)
        bar.update()
        TF._json(tmp / "instances.json", {"encoding": inst.encoding, "instances": [
            {"input_label": k, "input_value": inst.source_values[k - 1], "keypoints": kp_counts[k],
             "registered": k in reg_labels, "index": reg_labels.index(k) if k in reg_labels else None,
             "label": reg_labels.index(k) + 1 if k in reg_labels else None} for k in range(1, n + 1)]})
        bar.update()
        plots.save(tmp / "matches.png", plots.matches_image([crops[k] for k in usable], ufeats, matches))
        bar.update()
        plots.save(tmp / "cameras_3d.png", plots.cameras_image(c2w, poses, scale, np.concatenate(pts_world),
                                                              np.concatenate(pts_canon), reg_labels))
        bar.update()

    return {"options": asdict(opt), "image": str(image), "segmentation": str(seg), "size": [w, h], "instances": n,
            "crop_size": crop_size, "keypoints": kp_counts,
            "matches": {f"{crops[usable[i]].label}-{crops[usable[j]].label}": int(len(m))
                        for (i, j), m in matches.items()},
            "verified_pairs": res.verified_pairs, "registered_input_labels": reg_labels,
            "unregistered_input_labels": sorted(set(range(1, n + 1)) - set(reg_labels)),
            "focal_initial": focal_train, "focal": focal_out, "fixed_focal": opt.fix_focal,
            "mean_reprojection_error_px": res.mean_reprojection_error,
            "reprojection_error_per_instance_px": {str(reg_labels[k]): reproj[i] for k, i in enumerate(res.registered)},
            "points": int(len(res.points)), "warnings": warnings, "pose_eval": metric}
