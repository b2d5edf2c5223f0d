#!/usr/bin/env python
"""Make Diffusion-as-Shader 3D tracking videos (Gu et al. 2025, Fig. 2-3), with no pretrained weights.

A tracking video shows the scene's points in every frame, each coloured once from frame 0: R = x / W,
G = y / H, B = robust inverse depth (2nd / 98th percentile, near = bright), on black. One subcommand per task:

  transfer    motion transfer: 3D tracks from any tracker (.npz tracks [T,N,3], or [T,N,2] + depth [T,H,W])
  camera      camera control: an image + its depth map, camera template (--camera-motion)
  object      object manipulation: image + depth + mask, object template (--object-motion), optional camera
  mesh        mesh animation: OBJ / PLY / GLB, spun, per-frame vertices or rigid transforms, camera template
  procedural  a procedural scene (spheres, boxes, floor): RGB + tracking video + depth + labels

Camera templates: "trans dx dy dz [start end]", "rot x|y|z deg [start end]", "spiral R [start end]", joined by ";"
(per-frame product in the written order). Each matrix maps first-frame camera points to frame t: "trans 0.2 0 0"
moves the points right (the camera left), "trans 0 0 0.5" moves them away (dolly back).

Outputs in --out: <name>.mp4 (libx264 yuv420p, CRF 18) and/or .npz / PNG frames (lossless), <name>.json (K, poses,
colour normalisation, source), <name>_preview.png (first / middle / last frame), COMPLETE.json last. Every input
is read and checked before anything is written.

Examples:
  python scripts/das_tracking.py camera photo.png depth.npy --camera-motion "rot y 10; trans 0.2 0 0" --out out/cam
  python scripts/das_tracking.py object photo.png depth.npy mask.png --object-motion up --out out/obj
  python scripts/das_tracking.py transfer tracks.npz --tracks-format uvz --out out/mt
  python scripts/das_tracking.py mesh bunny.obj --spin 90 --out out/mesh
  python scripts/das_tracking.py procedural --seed 3 --out out/toy --size 240x360 --frames 25
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import (Parser, UserError, add_runtime_flags, cli_main, finite_float, int_at_least,  # noqa: E402
                             mark_complete, resolve_device, set_threads)


def _size(text: str) -> tuple[int, int]:
    import argparse

    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 480x720, got {text!r}") from None
    if h < 2 or w < 2:
        raise argparse.ArgumentTypeError(f"size must be at least 2x2, got {text!r}")
    return h, w


FOOTPRINTS = ("1", "3x3", "5x5", "7x5")  # models/das/splat.py; listed here so --help needs no torch


def _common(p: Parser, frames: bool = True) -> None:
    p.add_argument("--out", required=True, help="output folder (must be empty or new, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--name", default="tracking", help="file stem of the tracking video (default tracking)")
    p.add_argument("--format", nargs="+", choices=("mp4", "npz", "png"), default=["mp4", "npz"],
                   help="video files to write (default: mp4 npz)")
    p.add_argument("--fps", type=finite_float(0, lo_open=True), default=8.0, help="MP4 frame rate (default 8)")
    p.add_argument("--crf", type=int_at_least(0), default=18, help="x264 quality, 0 = lossless luma (default 18)")
    p.add_argument("--size", type=_size, default=(480, 720), help="HEIGHTxWIDTH of the video (default 480x720)")
    if frames:
        p.add_argument("--frames", type=int_at_least(2), default=49, help="video length (default 49)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--fov", type=finite_float(0, 180, lo_open=True), default=55.0,
                     help="horizontal field of view in degrees when no K is given (default 55: f = 691.5 px at 720)")
    cam.add_argument("--K", nargs=4, type=finite_float(), metavar=("FX", "FY", "CX", "CY"),
                     help="pixel intrinsics of the input (depth map / tracks / output size)")
    p.add_argument("--camera-motion", default=None, help='camera template, e.g. "rot y 10 0 24; trans 0.2 0 0"')
    p.add_argument("--spiral", choices=("orbit", "compat"), default="orbit",
                   help="spiral as a true orbit (default) or the original's pose-as-extrinsic (compat)")
    p.add_argument("--color-coords", choices=("continuous", "index"), default="continuous",
                   help="R = u0/W (default) or col/(W-1) as the original single-image path")
    p.add_argument("--percentiles", nargs=2, type=finite_float(0, 100), default=(2.0, 98.0), metavar=("LO", "HI"),
                   help="inverse-depth normalisation percentiles (default 2 98)")
    p.add_argument("--no-clip", action="store_true", help="do not clip B to [0, 1] before the 8-bit conversion")
    add_runtime_flags(p, seeds=None, precision=False)


def _splat_flags(p: Parser) -> None:
    p.add_argument("--footprint", choices=FOOTPRINTS, default="3x3", help="splat size in px (default 3x3)")


def build_parser() -> Parser:
    doc = __doc__.split("\n\n")
    ap = Parser(prog="das_tracking.py", description=doc[0], epilog="\n\n".join(doc[1:]))
    sub = ap.add_subparsers(dest="task", required=True, parser_class=Parser, metavar="TASK")
    t = sub.add_parser("transfer", help="motion transfer from 3D tracks (.npz)", description=doc[0])
    t.add_argument("tracks", help=".npz with tracks [T,N,3] (or [T,N,2] + depth [T,H,W]), optional visibility, K")
    t.add_argument("--tracks-format", choices=("xyz", "uvz"), default="xyz",
                   help="[T,N,3] as camera xyz (default) or pixel u, v and depth z")
    _common(t, frames=False)
    t.add_argument("--frames", type=int_at_least(2), default=None, help="resample to this many frames (default: keep)")
    _splat_flags(t)
    for name, hlp in (("camera", "camera control from an image and its depth map"),
                      ("object", "object manipulation from image, depth map and mask")):
        c = sub.add_parser(name, help=hlp, description=doc[0])
        c.add_argument("image", help="conditioning image (PNG / JPEG / .npy); resized with the depth")
        c.add_argument("depth", help="depth map [H,W] (.npy / .npz / 16-bit PNG / EXR), > 0 everywhere")
        if name == "object":
            c.add_argument("mask", help="object mask, same size as the depth map (> half of max = object)")
            c.add_argument("--object-motion", required=True, choices=("up", "down", "left", "right", "front",
                                                                      "back", "rot"), help="object template")
            c.add_argument("--distance", type=finite_float(), default=None,
                           help="how far by the last frame, in --units (default 50; degrees for rot)")
            c.add_argument("--units", choices=("pixels", "depth", "scene"), default="pixels",
                           help="pixels at the object's depth (default), fraction of its depth, or scene units")
            c.add_argument("--object-mode", choices=("fixed", "compat"), default="fixed",
                           help="fixed: 3D about the centroid; compat: the original's /W, /H translation")
        c.add_argument("--inverse-depth", action="store_true", help="the file holds inverse depth")
        c.add_argument("--depth-scale", type=finite_float(0, lo_open=True), default=1.0,
                       help="multiply stored depth values (e.g. 0.001 for millimetre PNGs)")
        _common(c)
        _splat_flags(c)
    m = sub.add_parser("mesh", help="mesh animation (OBJ / PLY / GLB through trimesh)", description=doc[0])
    m.add_argument("mesh", help="mesh file")
    anim = m.add_mutually_exclusive_group()
    anim.add_argument("--spin", type=finite_float(), default=0.0, help="turn about the vertical axis, degrees")
    anim.add_argument("--vertices", help=".npz 'vertices' [T,V,3]: per-frame vertex positions (world)")
    anim.add_argument("--transforms", help=".npz 'transforms' [T,4,4]: per-frame rigid transforms (world)")
    m.add_argument("--supersample", type=int_at_least(1), default=2, help="antialiasing samples per axis (default 2)")
    _common(m)
    pr = sub.add_parser("procedural", help="procedural scene: RGB, tracking video, depth, labels", description=doc[0])
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--scene", help="scene JSON (see models/das/procedural.py)")
    src.add_argument("--seed", type=int_at_least(0), default=0, help="random scene seed (default 0)")
    pr.add_argument("--objects", type=int_at_least(1), default=2, help="objects in a random scene (default 2)")
    _common(pr)
    return ap


# ---------------------------------------------------------------------------------------------------- helpers
def _intrinsics(args, hw):
    from models.das.camera import check_intrinsics, intrinsics, intrinsics_from_fov

    if args.K is None:
        return intrinsics_from_fov(hw[1], hw[0], args.fov)
    try:
        return check_intrinsics(intrinsics(*args.K))
    except ValueError as err:
        raise UserError(f"--K: {err}") from None


def _check_out(args) -> Path:
    from data.io import check_output_path

    out = check_output_path(args.out, "--out")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"--out {out}: folder is not empty (pick another, or pass --overwrite)")
    if "mp4" in args.format and (args.size[0] % 2 or args.size[1] % 2):
        raise UserError(f"--size {args.size[0]}x{args.size[1]}: MP4 (yuv420p) needs even sizes; use --format npz")
    return out


def _image_depth(args):
    """Image, depth (and mask) read, checked, resized + centre-cropped to --size; K follows the crop."""
    import numpy as np
    import torch

    from models.das import sources as S

    depth = S.load_depth(args.depth, args.inverse_depth, args.depth_scale)
    image = S.load_image_rgb(args.image)
    if image.shape[:2] != depth.shape:
        raise UserError(f"image {args.image} is {image.shape[0]}x{image.shape[1]} but depth {args.depth} is "
                        f"{depth.shape[0]}x{depth.shape[1]}")
    mask = S.load_mask(args.mask, depth.shape) if getattr(args, "mask", None) else None
    plan = S.fit_plan(depth.shape, args.size)
    if args.K is not None:
        K = S.plan_intrinsics(_intrinsics(args, depth.shape), plan)
    else:
        K = _intrinsics(args, args.size)
    depth = torch.from_numpy(S.apply_plan(depth, plan, "nearest"))
    image = S.apply_plan(image, plan, "bilinear")
    if mask is not None:
        mask = torch.from_numpy(S.apply_plan(mask.astype(np.float64), plan, "nearest") > 0.5)
        if not mask.any():
            raise UserError(f"mask {args.mask}: empty after resizing to {args.size[0]}x{args.size[1]}")
    src = {"image": str(args.image), "depth": str(args.depth), "inverse_depth": args.inverse_depth,
           "depth_scale": args.depth_scale, "fit": plan}
    return image, depth, mask, K, src


def _write(args, out: Path, video, meta, extra=()) -> list[Path]:
    from models.das.video import save_tracking

    out.mkdir(parents=True, exist_ok=True)
    written = list(extra) + save_tracking(out / args.name, video, meta, args.format, args.fps, args.crf)
    mark_complete(out, task=args.task, files=sorted(p.name for p in written))
    return written


def _render_kwargs(args, device):
    return dict(footprint=args.footprint, coords=args.color_coords, percentiles=tuple(args.percentiles),
                clip=not args.no_clip, device=device, progress=True, fps=args.fps)


def _check_percentiles(args):
    lo, hi = args.percentiles
    if not lo < hi:
        raise UserError(f"--percentiles {lo} {hi}: need LO < HI")


# ------------------------------------------------------------------------------------------------------ tasks
def run(args) -> list[Path]:
    from models.das import sources as S
    from models.das.tracks import render_tracks

    set_threads(args.threads)
    device = resolve_device(args.device)
    _check_percentiles(args)
    out = _check_out(args)
    if args.task == "transfer":
        tracks = S.load_tracks(args.tracks, args.size[0], args.size[1], _intrinsics(args, args.size),
                               args.tracks_format, args.camera_motion, args.spiral, args.frames)
        video, meta = render_tracks(tracks, **_render_kwargs(args, device))
        return _write(args, out, video.numpy(), meta)
    if args.task in ("camera", "object"):
        from models.core.io import write_png

        image, depth, mask, K, src = _image_depth(args)
        if args.task == "camera":
            tracks = S.camera_control(depth, K, args.camera_motion, args.frames, args.spiral, src)
        else:
            tracks = S.object_manipulation(depth, K, mask, args.object_motion, args.frames, args.distance,
                                           args.units, args.object_mode, args.camera_motion, args.spiral, src)
        video, meta = render_tracks(tracks, **_render_kwargs(args, device))
        out.mkdir(parents=True, exist_ok=True)
        first = write_png(out / "first_frame.png", image)
        return _write(args, out, video.numpy(), meta, [first])
    if args.task == "mesh":
        return _mesh(args, out, device)
    return _procedural(args, out, device)


def _mesh(args, out, device):
    import torch

    from models.das import meshes as ME
    from models.das.sources import read_array

    verts, faces = ME.load_mesh(args.mesh)
    per_frame = transforms = None
    if args.vertices:
        per_frame = torch.from_numpy(read_array(args.vertices, "vertices", keys=("vertices",)))
    if args.transforms:
        transforms = torch.from_numpy(read_array(args.transforms, "transforms", keys=("transforms",)))
    for arr, flag in ((per_frame, "--vertices"), (transforms, "--transforms")):
        if arr is not None and not torch.isfinite(arr).all():
            raise UserError(f"{flag}: holds NaN or Inf")
    if per_frame is None and transforms is None and args.spin:
        transforms = ME.spin(verts, args.frames, args.spin)
    world = ME.animate(verts, args.frames, per_frame, transforms)
    T = world.shape[0]
    K = _intrinsics(args, args.size)
    cams = ME.mesh_cameras(verts, K, args.size[0], args.size[1], T, args.camera_motion, args.spiral)
    video, meta = ME.render_mesh(world, faces, K, args.size[0], args.size[1], cams, args.supersample,
                                 device=device, progress=True, fps=args.fps,
                                 source={"kind": "mesh", "file": str(args.mesh), "spin": args.spin,
                                         "vertices": args.vertices, "transforms": args.transforms,
                                         "camera_motion": args.camera_motion})
    return _write(args, out, video.numpy(), meta)


def _procedural(args, out, device):
    from models.core.io import write_npz, write_text
    from models.das import procedural as P
    from models.das.video import save_tracking

    if args.scene:
        try:
            scene = json.loads(Path(args.scene).read_text())
        except FileNotFoundError:
            raise UserError(f"--scene not found: {args.scene}") from None
        except (OSError, ValueError) as err:
            raise UserError(f"--scene {args.scene}: not readable JSON ({err})") from None
        if not isinstance(scene, dict):
            raise UserError(f"--scene {args.scene}: expected a JSON object")
        scene.setdefault("height", args.size[0])
        scene.setdefault("width", args.size[1])
        scene.setdefault("frames", args.frames)
        scene.setdefault("camera_motion", args.camera_motion)
    else:
        scene = P.random_scene(args.seed, args.size[0], args.size[1], args.frames, args.objects)
        if args.camera_motion is not None:
            scene["camera_motion"] = args.camera_motion
    res = P.render_scene(scene, device=device, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    extra = save_tracking(out / "rgb", res["rgb"], {"kind": "rgb", "prompt": res["prompt"]}, args.format,
                          args.fps, args.crf)
    extra.append(write_npz(out / "depth_labels.npz", depth=res["depth"], labels=res["labels"]))
    extra.append(write_text(out / "prompt.txt", res["prompt"] + "\n"))
    extra.append(write_text(out / "scene.json", json.dumps(scene, indent=1) + "\n"))
    return _write(args, out, res["tracking"], res["sidecar"], extra)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    written = run(args)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
