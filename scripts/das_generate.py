#!/usr/bin/env python
"""Generate videos with Diffusion as Shader (Gu et al. 2025): an image + a 3D tracking video -> a video.

Tasks (the paper's Fig. 1), all reading local folders only:
  transfer  motion transfer: --image (or a video: its first frame) + --tracking from `das_tracking.py transfer`
  camera    camera control: --image + --depth + --camera-motion (tracking video built here, as das_tracking.py camera)
  object    object manipulation: --image + --depth + --mask + --object-motion
  mesh      mesh to video: --image (a rendered or repainted first frame) + --tracking from `das_tracking.py mesh`
  toy       the toy model trained here (ckpts/das_toy.safetensors): a held-out clip, its tracking video and the
            reversed one; --learning-check also measures how well it follows tracks (Pearson r, EPE ratio)

--model is a local diffusers folder: model_index.json is not needed, but transformer/ (a DaS tracking transformer,
config with num_tracking_blocks), vae/, text_encoder/, tokenizer/ and scheduler/ are. A plain CogVideoX-5B-I2V
folder has no trained branch: train one (configs/das/faithful.json) or use the released DaS folder.

Outputs in --out-dir (default evals/<date>_das_<task>): result_s<seed>.mp4, tracking_video.mp4, strip_s<seed>.png
(tracking over generated frames), COMPLETE.json last.

Examples:
  python scripts/das_generate.py camera --model weights/DaS --image photo.png --depth depth.npy \\
      --camera-motion "rot y 10" --prompt "a quiet street, the camera turns right"
  python scripts/das_generate.py transfer --model weights/DaS --image frame0.png --tracking out/mt/tracks.mp4 \\
      --prompt "a robot dancing"
  python scripts/das_generate.py toy --learning-check
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.core.cli import (Parser, UserError, add_runtime_flags, cli_main, existing_file, finite_float, int_at_least,
                             mark_complete, new_run_dir, resolve_device, set_threads)

ROOT = Path(__file__).resolve().parents[1]
SIZE = (480, 720)  # the base model's learned positional embedding fixes 49 x 480 x 720
FRAMES = 49


def build_parser() -> Parser:
    p = Parser(description=__doc__)
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, helptext in (("transfer", "motion transfer from a tracking video"),
                           ("camera", "camera control from an image and its depth map"),
                           ("object", "object manipulation from image, depth and mask"),
                           ("mesh", "mesh to video from a rendered tracking video")):
        s = sub.add_parser(name, help=helptext, description=helptext)
        s.add_argument("--model", required=True, help="local DaS pipeline folder (transformer/ vae/ text_encoder/ "
                       "tokenizer/ scheduler/)")
        s.add_argument("--image", required=True, help="conditioning image, or a video (.mp4): its first frame")
        s.add_argument("--prompt", required=True, help="text prompt (describe the camera / object motion too)")
        s.add_argument("--negative-prompt", default=None, help="default: the released negative prompt")
        if name in ("transfer", "mesh"):
            s.add_argument("--tracking", required=True, help="tracking video (.mp4 / .npz / PNG folder), 49 frames")
        else:
            s.add_argument("--depth", required=True, help="depth map (.npy/.npz/16-bit PNG/EXR, metres)")
            s.add_argument("--fov", type=finite_float(1, 179), default=55.0, help="horizontal field of view, degrees")
            s.add_argument("--camera-motion", default=None, help='camera template, e.g. "rot y 10; trans 0.2 0 0"')
        if name == "object":
            s.add_argument("--mask", required=True, help="binary object mask, same size as the depth map")
            s.add_argument("--object-motion", required=True, help="up, down, left, right, front, back, rot")
        s.add_argument("--steps", type=int_at_least(1), default=50, help="denoising steps (honoured)")
        s.add_argument("--guidance", type=finite_float(0), default=6.0, help="text CFG scale")
        s.add_argument("--dynamic-cfg", choices=["off", "compat", "ramp"], default="off",
                       help="off; compat = the released demo's raw-timestep cosine; ramp = 1 -> 1 + g")
        s.add_argument("--tracking-range", choices=["pm1", "01_compat"], default="pm1",
                       help="tracking pixels for the VAE: [-1, 1] as in training, or [0, 1] as the released demo")
        s.add_argument("--tracking-scale", type=finite_float(0), default=1.0, help="strength of the branch")
        s.add_argument("--tracking-guidance", type=finite_float(0), default=0.0,
                       help="extra guidance towards the tracking-conditioned prediction (0 = off, as released)")
        s.add_argument("--out-dir", default="evals", help="parent folder of the run folder")
        add_runtime_flags(s, seeds="42")
    t = sub.add_parser("toy", help="the toy model: follow a tracking video and its reversal",
                       description="Generate a held-out toy clip with its tracking video and the reversed one.")
    t.add_argument("--ckpt", default=str(ROOT / "ckpts" / "das_toy.safetensors"), help="toy export")
    t.add_argument("--clip", type=int_at_least(0), default=0, help="held-out clip index")
    t.add_argument("--steps", type=int_at_least(1), default=25)
    t.add_argument("--learning-check", action="store_true", help="also measure r / EPE ratio on --clips clips")
    t.add_argument("--clips", type=int_at_least(2), default=64)
    t.add_argument("--out-dir", default="evals")
    add_runtime_flags(t, seeds="0")
    return p


# --------------------------------------------------------------------------------------------------- inputs
def check_model_folder(folder: str) -> Path:
    path = Path(folder)
    need = ["transformer", "vae", "text_encoder", "tokenizer", "scheduler"]
    if not path.is_dir():
        raise UserError(f"--model {path}: not a folder (expected a local DaS folder with {', '.join(need)}/; "
                        f"weights are never downloaded)")
    missing = [n for n in need if not (path / n).is_dir()]
    if missing:
        raise UserError(f"--model {path}: missing {', '.join(m + '/' for m in missing)} (expected "
                        f"{', '.join(n + '/' for n in need)})")
    cfg = path / "transformer" / "config.json"
    try:
        config = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"--model {cfg}: unreadable ({err})") from None
    if "num_tracking_blocks" not in config:
        raise UserError(f"--model {path}: transformer/ is a plain CogVideoX transformer (no num_tracking_blocks): it "
                        "has no tracking branch; build one with CogVideoXTransformer3DModelTracking.from_base and "
                        "train it (configs/das/faithful.json)")
    return path


def conditioning_image(path: str) -> np.ndarray:
    from models.das.sources import apply_plan, fit_plan, load_image_rgb
    from models.das.video import read_video

    file = existing_file(path, "--image")
    if file.suffix.lower() in (".mp4", ".avi", ".mov", ".npz"):
        try:
            img = read_video(file)[0].astype(np.float64) / 255.0
        except (ValueError, OSError) as err:
            raise UserError(f"--image {file}: unreadable video ({err})") from None
    else:
        img = load_image_rgb(file)
    return apply_plan(img, fit_plan(img.shape[:2], SIZE), "bilinear").astype(np.float32)


def tracking_from_file(path: str) -> np.ndarray:
    from models.das.video import load_tracking

    file = Path(path)
    if not file.exists():
        raise UserError(f"--tracking {file}: not found")
    try:
        video, _ = load_tracking(file)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"--tracking {file}: unreadable ({err})") from None
    if video.shape[:3] != (FRAMES, *SIZE):
        raise UserError(f"--tracking {file}: is {video.shape[0]}x{video.shape[1]}x{video.shape[2]} (frames x H x W); "
                        f"the model needs {FRAMES}x{SIZE[0]}x{SIZE[1]} (make it with das_tracking.py --size 480x720)")
    return video


def tracking_from_depth(args) -> np.ndarray:
    import torch

    from models.das import sources as S
    from models.das.camera import intrinsics_from_fov
    from models.das.tracks import render_tracks

    depth = S.load_depth(existing_file(args.depth, "--depth"))
    plan = S.fit_plan(depth.shape, SIZE)
    K = S.plan_intrinsics(intrinsics_from_fov(depth.shape[1], depth.shape[0], args.fov), plan)
    d = torch.from_numpy(S.apply_plan(depth, plan, "nearest"))
    if args.task == "object":
        mask = S.load_mask(existing_file(args.mask, "--mask"), depth.shape)
        m = torch.from_numpy(S.apply_plan(mask.astype(np.float64), plan, "nearest") > 0.5)
        tracks = S.object_manipulation(d, K, m, args.object_motion, FRAMES, motion=args.camera_motion)
    else:
        tracks = S.camera_control(d, K, args.camera_motion, FRAMES)
    video, _ = render_tracks(tracks, progress=True)
    return video.numpy().astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------- outputs
def write_outputs(out: Path, videos: dict[str, np.ndarray], tracking: np.ndarray, fps: float = 8.0,
                  zoom: int = 1) -> list[Path]:
    from data.io import write_png
    from models.das.video import preview_strip, write_mp4

    def big(v):
        v8 = (np.clip(v, 0, 1) * 255).round().astype(np.uint8)
        return v8.repeat(zoom, 1).repeat(zoom, 2) if zoom > 1 else v8

    written = [write_mp4(out / "tracking_video.mp4", big(tracking), fps=fps)]
    for name, video in videos.items():
        written.append(write_mp4(out / f"{name}.mp4", big(video), fps=fps))
        strip = np.concatenate([preview_strip(big(tracking)), preview_strip(big(video))], 0)
        written.append(write_png(out / f"strip_{name}.png", strip))
    return written


def run_task(args) -> Path:
    folder = check_model_folder(args.model)  # every input is checked before the heavy imports and any output
    image = conditioning_image(args.image)
    tracking = tracking_from_file(args.tracking) if args.task in ("transfer", "mesh") else tracking_from_depth(args)
    device = resolve_device(args.device)
    import torch

    from models.das.pipeline import NEGATIVE_PROMPT, DaSImageToVideoPipeline, load_components
    from models.nets.das_tracking_transformer import CheckpointFormatError, CogVideoXTransformer3DModelTracking

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        transformer = CogVideoXTransformer3DModelTracking.from_pretrained(folder / "transformer", torch_dtype=dtype)
        pipe = DaSImageToVideoPipeline(transformer=transformer, **load_components(folder, torch_dtype=dtype))
    except (CheckpointFormatError, FileNotFoundError, OSError) as err:
        raise UserError(f"--model {folder}: {err}") from None
    pipe.to(device)
    pipe.vae.enable_slicing()
    pipe.vae.enable_tiling()
    out = new_run_dir(args.out_dir, f"das_{args.task}")
    videos = {}
    for seed in args.seeds:
        frames = pipe(image=torch.from_numpy(image).permute(2, 0, 1)[None], prompt=args.prompt,
                      negative_prompt=args.negative_prompt or NEGATIVE_PROMPT, tracking_video=tracking,
                      height=SIZE[0], width=SIZE[1], num_frames=FRAMES, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, dynamic_cfg=args.dynamic_cfg, tracking_range=args.tracking_range,
                      tracking_scale=args.tracking_scale, tracking_guidance=args.tracking_guidance,
                      generator=[torch.Generator(device).manual_seed(seed)], output_type="np")
        videos[f"result_s{seed}"] = frames[0]
    write_outputs(out, videos, tracking)
    mark_complete(out, task=args.task, prompt=args.prompt, seeds=args.seeds, steps=args.steps)
    return out


def run_toy(args) -> Path:
    from models import CheckpointError, load_system
    from models.das.training import follow_metrics, learning_check, toy_clip

    ckpt = existing_file(args.ckpt, "--ckpt")
    try:
        system = load_system(ckpt, device=resolve_device(args.device), expect="das")
    except CheckpointError as err:
        raise UserError(str(err)) from None
    d = system.cfg.data
    if d.kind != "toy":
        raise UserError(f"--ckpt {ckpt}: not a toy model (data.kind={d.kind!r})")
    out = new_run_dir(args.out_dir, "das_toy")
    clip = toy_clip(10_000_000 + args.clip, d.width, d.frames)
    rev = toy_clip(10_000_000 + args.clip, d.width, d.frames, reverse=True)
    seeds = args.seeds
    fwd = system.infer({"image": clip["video"][0], "tracking": clip["tracking"]}, seeds, steps=args.steps,
                       guidance=1.0)["video"]
    back = system.infer({"image": clip["video"][0], "tracking": rev["tracking"]}, seeds, steps=args.steps,
                        guidance=1.0)["video"]
    off = system.infer({"image": clip["video"][0], "tracking": clip["tracking"]}, seeds, steps=args.steps,
                       guidance=1.0, tracking_scale=0.0)["video"]
    zoom = max(1, 128 // d.width)
    write_outputs(out / "forward", {f"result_s{s}": v for s, v in zip(seeds, fwd)}, clip["tracking"], zoom=zoom)
    write_outputs(out / "reversed", {f"result_s{s}": v for s, v in zip(seeds, back)}, rev["tracking"], zoom=zoom)
    write_outputs(out / "branch_off", {f"result_s{s}": v for s, v in zip(seeds, off)}, clip["tracking"], zoom=zoom)
    info = {"clip": args.clip, "seeds": seeds,
            "forward": follow_metrics(list(fwd), [clip] * len(seeds), [clip["disp"]] * len(seeds)),
            "reversed": follow_metrics(list(back), [clip] * len(seeds), [rev["disp"]] * len(seeds))}
    if args.learning_check:
        info["learning_check"] = learning_check(system, clips=args.clips, steps=args.steps)
    from data.io import write_text

    write_text(out / "metrics.json", json.dumps(info, indent=1) + "\n")
    print(json.dumps(info.get("learning_check", info), indent=1))
    mark_complete(out, task="toy", ckpt=str(ckpt))
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    out = run_toy(args) if args.task == "toy" else run_task(args)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
