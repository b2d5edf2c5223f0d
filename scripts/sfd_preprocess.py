#!/usr/bin/env python
"""Structure from Duplicates preprocessing: one photo of N identical objects + its instance segmentation -> crops,
SIFT matches, poses by SfM (pycolmap), and the training folder. No weights, no scripts to edit.

    python scripts/sfd_preprocess.py --scene scenes/pile8 --out data/pile8                # raw/000_rgb.png + seg
    python scripts/sfd_preprocess.py --image photo.png --seg seg.png --instances 6 --out data/mug --fix-focal

The segmentation is one uint8 channel with background 0 and instance k = floor(k*255/N) (or integer labels 0..N;
16-bit PNG / .npy may hold any integer ids). N is read from the file and checked against --instances when given.
Instances that SfM cannot register become background (with a warning naming them). Hard checks stop the run with one
line instead of writing wrong poses: too few keypoints/matches, too few registered instances, focal outside the band,
large reprojection error. The folder is written under a temporary name and renamed at the end.
When the scene folder has gt/ (scenes made by scripts/sfd_make_scene.py), the pose metric is computed and written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import (Parser, UserError, cli_main, existing_file, finite_float,  # noqa: E402
                             int_at_least)


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    src = p.add_argument_group("input (either --scene or --image + --seg)")
    src.add_argument("--scene", help="folder with raw/000_rgb.png and raw/000_instance_seg.png (and optional gt/)")
    src.add_argument("--image", help="the photo (square PNG/JPEG)")
    src.add_argument("--seg", help="instance segmentation (PNG or integer .npy), same size as the photo")
    p.add_argument("--out", required=True, help="training folder to create")
    p.add_argument("--instances", type=int_at_least(1), default=None, help="expected N (checked against the file)")
    p.add_argument("--train-res", type=int_at_least(16), default=800, help="training image size (default 800)")
    p.add_argument("--crop-size", type=int_at_least(16), default=None,
                   help="crop side in photo pixels (default: largest instance / 0.75, rounded up to 64)")
    p.add_argument("--focal", type=finite_float(0, lo_open=True), default=None,
                   help="initial focal in train-res pixels (default 1111/800 * train-res, the synthetic renders')")
    p.add_argument("--fix-focal", action="store_true", help="keep the focal at --focal (no refinement)")
    p.add_argument("--erode", type=int_at_least(0), default=3, help="mask erosion before SIFT, px (default 3)")
    p.add_argument("--max-features", type=int_at_least(16), default=4000)
    p.add_argument("--ratio", type=finite_float(0, 1, lo_open=True), default=0.85, help="Lowe ratio (default 0.85)")
    p.add_argument("--min-keypoints", type=int_at_least(1), default=100)
    p.add_argument("--min-matches", type=int_at_least(8), default=15, help="per pair, also the RANSAC inlier minimum")
    p.add_argument("--min-registered", type=int_at_least(2), default=None, help="default max(2, ceil(N/2))")
    p.add_argument("--max-focal-ratio", type=finite_float(1.0), default=1.5,
                   help="recovered/initial focal must lie in [1/r, r] (default 1.5)")
    p.add_argument("--max-reproj-error", type=finite_float(0, lo_open=True), default=2.0, help="px (default 2)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="COLMAP threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--colmap-log", action="store_true", help="show COLMAP's own log lines (hidden by default)")
    args = p.parse_args(argv)

    if args.scene:
        if args.image or args.seg:
            raise UserError("--scene cannot be combined with --image/--seg")
        scene = Path(args.scene)
        if not scene.is_dir():
            raise UserError(f"--scene {scene}: not a folder")
        image = existing_file(scene / "raw/000_rgb.png", "image")
        seg = existing_file(scene / "raw/000_instance_seg.png", "segmentation")
        gt_scene = scene if (scene / "gt/camera.json").is_file() else None
    else:
        if not (args.image and args.seg):
            raise UserError("give --scene DIR, or both --image and --seg")
        image, seg, gt_scene = existing_file(args.image, "image"), existing_file(args.seg, "segmentation"), None

    from models.sfd.pipeline import Options, preprocess

    opt = Options(instances=args.instances, train_res=args.train_res, crop_size=args.crop_size, focal=args.focal,
                  fix_focal=args.fix_focal, erode=args.erode, max_features=args.max_features, ratio=args.ratio,
                  min_keypoints=args.min_keypoints, min_matches=args.min_matches, min_registered=args.min_registered,
                  max_focal_ratio=args.max_focal_ratio, max_reproj_error=args.max_reproj_error, threads=args.threads,
                  seed=args.seed, progress=not args.no_progress, colmap_log=args.colmap_log)
    rep = preprocess(image, seg, Path(args.out), opt, gt_scene=gt_scene, overwrite=args.overwrite)
    print(f"wrote {args.out}: {len(rep['registered_input_labels'])}/{rep['instances']} instances registered, "
          f"{rep['points']} points, focal {rep['focal']:.1f} px at {args.train_res} (initial {rep['focal_initial']:.1f}), "
          f"mean reprojection {rep['mean_reprojection_error_px']:.2f} px")
    print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in rep["timings_s"].items()))
    if rep["pose_eval"]:
        e = rep["pose_eval"]
        print(f"pose vs GT: relative rotation median {e['rel_rot_median_deg']:.3f} deg, max {e['rel_rot_max_deg']:.3f} "
              f"deg; dr mean {e['dr_mean_deg']:.3f} deg; dt mean {e['dt_mean']:.4f}, max {e['dt_max']:.4f}; "
              f"focal {100 * e['focal_rel_error']:+.2f} %")
    return 0


if __name__ == "__main__":
    cli_main(main)
