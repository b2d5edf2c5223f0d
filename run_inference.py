#!/usr/bin/env python
"""DiffMotion inference: shape (normals) and materials of 3-frame clips, one sample per seed.

    python run_inference.py                                  # the clips listed in test_data/diffmotion/clips.json
    python run_inference.py my_clip_folder/ --seeds 0-3      # a folder with 3 image files (sorted by name)
    python run_inference.py --clip a.png b.png c.png         # explicit frames (repeatable)
    python run_inference.py photo.png                        # one image = static scene (repeated 3 times)

Input handling (documented so results do not depend on the file format): any size, 8- or 16-bit (scaled by the
bit depth), greyscale replicated to RGB, alpha composited over black (the training background), then centre-padded
with black to a square and resized to the model resolution (area averaging when shrinking, bilinear when
enlarging). The 3 frames of a clip must share one size.

Output: evals/<YYYY-MM-DD>_<name>/ with, per clip and seed, `<clip>_seed<s>.png` (768x768 at 256: rows normals,
albedo, materials (R=metallic, G=specular, B=roughness); columns frames 1-3), `<clip>_seed<s>.npy` (float16
[3, 9, H, W] in model space [-1, 1]), `<clip>_input.png`, and `index.json`. Errors print one line and exit 2.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
DEFAULT_CKPT = ROOT / "ckpts" / "diffmotion.safetensors"
DEFAULT_INPUTS = ROOT / "test_data" / "diffmotion"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class InputError(ValueError):
    """A bad input clip or flag (reported as one line, exit code 2)."""


# ---------------------------------------------------------------------------------------------------------- inputs
def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def to_rgb(img: np.ndarray, path) -> np.ndarray:
    """[0, 1] image HxW / HxWx{1,2,3,4} -> HxWx3; alpha composited over black, greyscale replicated."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{path}: unsupported image shape {img.shape}")
    if img.shape[2] in (2, 4):  # colour premultiplied by alpha = compositing over black
        img = img[..., :-1] * img[..., -1:]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 -> size x size x 3: centre-pad with black to a square, then area (shrink) / bilinear (enlarge) resize."""
    import torch
    import torch.nn.functional as F

    h, w, _ = img.shape
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = img
    if side == size:
        return canvas
    x = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    mode = {"mode": "area"} if side > size else {"mode": "bilinear", "align_corners": False}
    return F.interpolate(x, size=(size, size), **mode)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def load_clip(paths: list[Path], size: int) -> np.ndarray:
    """3 image files (or 1, repeated: a static scene) -> float32 [3, 3, size, size] in [-1, 1]."""
    from data.io import read_image

    if len(paths) == 1:
        paths = paths * 3
    if len(paths) != 3:
        raise InputError(f"a clip needs exactly 3 frames (or 1 image for a static scene), got {len(paths)}: "
                         f"{', '.join(str(p) for p in paths)}")
    frames, shape = [], None
    for p in paths:
        if not p.is_file():
            raise InputError(f"missing input file: {p}")
        try:
            img = to_rgb(read_image(p), p)
        except (ValueError, OSError) as err:
            raise InputError(f"{p}: cannot read image ({str(err).splitlines()[0]})") from None
        if shape is not None and img.shape[:2] != shape:
            raise InputError(f"frames of one clip differ in size: {shape[1]}x{shape[0]} vs "
                             f"{img.shape[1]}x{img.shape[0]} ({p})")
        shape = img.shape[:2]
        frames.append(square_resize(img, size).transpose(2, 0, 1) * 2.0 - 1.0)
    return np.stack(frames).astype(np.float32)


def clips_from_index(folder: Path) -> list[tuple[str, list[Path]]]:
    """Clips listed in <folder>/clips.json: test_data style {"name", "frames": [1 or 3 files]} or the training
    pointer style {"folder", "sequence", "frame_group", "paths": [3 x {"rgb": ...}]}; paths relative to folder."""
    entries = json.loads((folder / "clips.json").read_text())
    if not isinstance(entries, list):
        raise InputError(f"{folder / 'clips.json'}: expected a list of clips")
    out = []
    for i, e in enumerate(entries):
        if isinstance(e, dict) and "frames" in e and all(isinstance(f, str) for f in e["frames"]):
            out.append((str(e.get("name", f"clip{i}")), [folder / f for f in e["frames"]]))
        elif isinstance(e, dict) and "paths" in e:
            name = f"{e.get('folder', 'clip')}_{e.get('sequence', i)}_{e.get('frame_group', 0)}"
            out.append((name, [folder / p["rgb"] for p in e["paths"]]))
        else:
            raise InputError(f"{folder / 'clips.json'}: entry {i} has neither 'frames' nor 'paths'")
    return out


def collect_clips(inputs: list[str], clip_lists: list[list[str]]) -> list[tuple[str, list[Path]]]:
    """(name, frame paths) per clip from positional folders/images and --clip lists; defaults to test_data.

    A folder with a clips.json contributes every clip it lists; any other folder must hold exactly 3 images.
    """
    specs: list[tuple[str, list[Path]]] = []
    for raw in inputs or ([str(DEFAULT_INPUTS)] if not clip_lists else []):
        p = Path(raw)
        if p.is_dir() and (p / "clips.json").is_file():
            specs += clips_from_index(p)
        elif p.is_dir():
            imgs = list_images(p)
            if len(imgs) != 3:
                raise InputError(f"{p}: a clip folder needs exactly 3 image files (or a clips.json), found {len(imgs)}")
            specs.append((p.name, imgs))
        elif p.is_file():
            specs.append((f"{p.stem}_static", [p]))
        else:
            raise InputError(f"no such file or folder: {p}")
    for frames in clip_lists or []:
        paths = [Path(f) for f in frames]
        specs.append((paths[0].stem, paths))
    if not specs:
        raise InputError("no clips to process")
    names: dict[str, int] = {}
    out = []
    for name, paths in specs:  # unique, filesystem-safe clip names
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "clip"
        names[name] = names.get(name, 0) + 1
        out.append((name if names[name] == 1 else f"{name}_{names[name]}", paths))
    return out


# ------------------------------------------------------------------------------------------------------------- run
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="clip folders (3 images) or single images (static scene)")
    ap.add_argument("--clip", nargs="+", action="append", metavar="FRAME",
                    help="the 3 frame files of one clip (repeatable)")
    ap.add_argument("--ckpt", default=str(DEFAULT_CKPT), help="diffmotion .safetensors export")
    ap.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,5-7")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the checkpoint's config, 50)")
    ap.add_argument("--sampling-shift", type=float, default=None, help="shift of the sampling table (faithful: 1)")
    ap.add_argument("--batch", type=int, default=4, help="samples per network call")
    ap.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="network autocast dtype")
    ap.add_argument("--resolution", type=int, default=None, help="model input size (default: the training size)")
    ap.add_argument("--out-dir", default=str(ROOT / "evals"), help="parent folder of the run folder")
    ap.add_argument("--name", default=None, help="run name (default: checkpoint file stem)")
    return ap.parse_args(argv)


def load_model(ckpt: Path, device):
    from models.core.checkpoint import CheckpointError, load_system, read_metadata

    if not ckpt.is_file():
        raise InputError(f"checkpoint not found: {ckpt} (download it or convert an original one with "
                         f"scripts/convert_legacy_ckpt.py; train one with train_diffusion.py)")
    system = read_metadata(ckpt).get("system")
    if system == "sfs":
        raise CheckpointError(f"{ckpt} is a shape-from-shading (sfs) checkpoint; use multiscale.py for it")
    return load_system(ckpt, device=device, expect="diffmotion")


def run(args) -> Path:
    import torch
    from tqdm.auto import tqdm

    from data.io import write_npy, write_png, write_text
    from models.core.seeding import parse_seeds
    from models.diffmotion.grid import input_strip, prediction_grid

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        raise InputError(str(err)) from None
    if args.batch < 1 or (args.steps is not None and args.steps < 1):
        raise InputError("--batch and --steps must be >= 1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {args.device}: CUDA is not available here")
    clips = collect_clips(args.inputs, args.clip)
    ckpt = Path(args.ckpt)
    system = load_model(ckpt, device)
    size = args.resolution or system.cfg.data.resolution
    if size % system.net.min_multiple():
        raise InputError(f"--resolution {size} must be a multiple of {system.net.min_multiple()}")
    frames = {name: torch.from_numpy(load_clip(paths, size)) for name, paths in clips}
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    steps = args.steps or system.cfg.diffusion.sampling_steps

    run_dir = Path(args.out_dir) / f"{datetime.date.today().isoformat()}_{args.name or ckpt.stem}"
    jobs = [(name, s) for name, _ in clips for s in seeds]
    index = {"checkpoint": str(ckpt), "system": "diffmotion", "step": system.step, "steps": steps,
             "sampling_shift": args.sampling_shift if args.sampling_shift is not None
             else system.cfg.diffusion.sampling_shift, "resolution": size, "precision": args.precision,
             "seeds": seeds, "layout": "rows: normal, albedo, material (R=metallic, G=specular, B=roughness); "
                                       "columns: frames; npy: float16 [3, 9, H, W] in [-1, 1]",
             "clips": {name: {"inputs": [str(p) for p in paths], "input_png": f"{name}_input.png", "samples": {}}
                       for name, paths in clips}}
    for name, _ in clips:
        write_png(run_dir / f"{name}_input.png", input_strip(frames[name]))
    for i in tqdm(range(0, len(jobs), args.batch), desc="sampling", unit="batch"):
        chunk = jobs[i:i + args.batch]
        cond = torch.stack([frames[name] for name, _ in chunk])
        out = system.sample(cond, [s for _, s in chunk], steps=steps, sampling_shift=args.sampling_shift,
                            autocast_dtype=dtype).float().cpu()
        for (name, seed), pred in zip(chunk, out):
            stem = f"{name}_seed{seed}"
            write_png(run_dir / f"{stem}.png", prediction_grid(pred))
            write_npy(run_dir / f"{stem}.npy", pred.numpy().astype(np.float16))
            index["clips"][name]["samples"][str(seed)] = {"grid": f"{stem}.png", "raw": f"{stem}.npy"}
        write_text(run_dir / "index.json", json.dumps(index, indent=2))  # kept current, so partial runs are usable
    return run_dir


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_dir = run(args)
    except (ValueError, FileNotFoundError) as err:  # InputError, CheckpointError, ConfigError, shape errors
        print(f"run_inference: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"wrote {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
