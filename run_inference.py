#!/usr/bin/env python
"""DiffMotion inference: shape (normals) and materials of 3-frame clips, one sample per seed.

    python run_inference.py                                  # the clips listed in test_data/diffmotion/clips.json
    python run_inference.py my_clip_folder/ --seeds 0-3      # a folder with 3 image files (sorted by name)
    python run_inference.py --clip a.png b.png c.png         # explicit frames (repeatable)
    python run_inference.py photo.png                        # one image = static scene (repeated 3 times)

Input handling (data.io.load_image, so results do not depend on the file format): any size; 8- or 16-bit images
scaled by their bit depth, integer .npy by their dtype's maximum, float data must be finite and lie in [0, 1];
greyscale replicated to RGB, alpha composited over black (the training background), then centre-padded with black
to a square (--fit pad, default; --fit resize stretches instead) and resized to the model resolution (area
averaging when shrinking, bilinear when enlarging). The 3 frames of a clip must share one size. What was done to
each frame is recorded in index.json.

Output: a new folder evals/<YYYY-MM-DD>_<name>[-k]/ per run (never shared with an earlier run) with, per clip and
seed, `<clip>_seed<s>.png` (768x768 at 256: rows normals, albedo, materials (R=metallic, G=specular, B=roughness);
columns frames 1-3), `<clip>_seed<s>.npy` (float16 [3, 9, H, W] in model space [-1, 1]), `<clip>_input.png`,
`index.json`, and COMPLETE.json, written last (a folder without it is an interrupted run). Bad inputs or flags
print one line and exit 2, before anything is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.core.cli import (Parser, UserError, add_runtime_flags, check_finite, cli_main, finite_float,
                             int_at_least, mark_complete, new_run_dir, resolve_device, set_threads)

ROOT = Path(__file__).resolve().parent
DEFAULT_CKPT = ROOT / "ckpts" / "diffmotion.safetensors"
DEFAULT_INPUTS = ROOT / "test_data" / "diffmotion"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


# ---------------------------------------------------------------------------------------------------------- inputs
def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def read_clip(paths: list[Path], fit: str = "pad") -> tuple[list[np.ndarray], list[dict]]:
    """3 image files (or 1, repeated: a static scene) -> 3 square HxWx3 frames in [0, 1] and what was done to each."""
    from data.io import load_image

    if len(paths) == 1:
        paths = paths * 3
    if len(paths) != 3:
        raise UserError(f"a clip needs exactly 3 frames (or 1 image for a static scene), got {len(paths)}: "
                        f"{', '.join(str(p) for p in paths)}")
    frames, infos, shape = [], [], None
    for p in paths:
        if not p.is_file():
            raise UserError(f"missing input file: {p}")
        img, info = load_image(p, mode="rgb", fit=fit)
        if shape is not None and info["original_size"] != shape:
            raise UserError(f"frames of one clip differ in size: {shape[1]}x{shape[0]} vs "
                            f"{info['original_size'][1]}x{info['original_size'][0]} ({p})")
        shape = info["original_size"]
        frames.append(img)
        infos.append(info)
    return frames, infos


def clip_array(frames: list[np.ndarray], size: int) -> np.ndarray:
    """Square HxWx3 frames in [0, 1] -> float32 [3, 3, size, size] in [-1, 1] (area shrink / bilinear enlarge)."""
    from data.io import resize_square

    out = [(f if f.shape[0] == size else resize_square(f, size)).transpose(2, 0, 1) * 2.0 - 1.0 for f in frames]
    return np.stack(out).astype(np.float32)


def load_clip(paths: list[Path], size: int, fit: str = "pad") -> np.ndarray:
    """3 image files (or 1, repeated) -> float32 [3, 3, size, size] in [-1, 1]."""
    return clip_array(read_clip(paths, fit)[0], size)


def clips_from_index(folder: Path) -> list[tuple[str, list[Path]]]:
    """Clips listed in <folder>/clips.json: test_data style {"name", "frames": [1 or 3 files]} or the training
    pointer style {"folder", "sequence", "frame_group", "paths": [3 x {"rgb": ...}]}; paths relative to folder."""
    index = folder / "clips.json"
    try:
        entries = json.loads(index.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{index}: not a readable JSON file ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(entries, list):
        raise UserError(f"{index}: expected a list of clips")
    out = []
    for i, e in enumerate(entries):
        if isinstance(e, dict) and isinstance(e.get("frames"), list) and all(isinstance(f, str) for f in e["frames"]):
            out.append((str(e.get("name", f"clip{i}")), [folder / f for f in e["frames"]]))
        elif (isinstance(e, dict) and isinstance(e.get("paths"), list)
              and all(isinstance(p, dict) and isinstance(p.get("rgb"), str) for p in e["paths"])):
            name = f"{e.get('folder', 'clip')}_{e.get('sequence', i)}_{e.get('frame_group', 0)}"
            out.append((name, [folder / p["rgb"] for p in e["paths"]]))
        else:
            raise UserError(f"{index}: entry {i} has neither 'frames' (file names) nor 'paths' ([{{'rgb': file}}])")
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
                raise UserError(f"{p}: a clip folder needs exactly 3 image files (or a clips.json), found {len(imgs)}")
            specs.append((p.name, imgs))
        elif p.is_file():
            specs.append((f"{p.stem}_static", [p]))
        else:
            raise UserError(f"no such file or folder: {p}")
    for frames in clip_lists or []:
        paths = [Path(f) for f in frames]
        specs.append((paths[0].stem, paths))
    if not specs:
        raise UserError("no clips to process")
    names: dict[str, int] = {}
    out = []
    for name, paths in specs:  # unique, filesystem-safe clip names
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "clip"
        names[name] = names.get(name, 0) + 1
        out.append((name if names[name] == 1 else f"{name}_{names[name]}", paths))
    return out


# ------------------------------------------------------------------------------------------------------------- run
def build_parser() -> Parser:
    ap = Parser(prog="run_inference.py", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("inputs", nargs="*", help="clip folders (3 images) or single images (static scene)")
    ap.add_argument("--clip", nargs="+", action="append", metavar="FRAME",
                    help="the 3 frame files of one clip (repeatable)")
    ap.add_argument("--ckpt", default=str(DEFAULT_CKPT), help="diffmotion .safetensors export")
    add_runtime_flags(ap, seeds="0-9")
    ap.add_argument("--steps", type=int_at_least(1), default=None, help="DDIM steps (default: the checkpoint's, 50)")
    ap.add_argument("--sampling-shift", type=finite_float(lo=0, lo_open=True), default=None,
                    help="shift (> 0) of the sampling table (faithful: 1)")
    ap.add_argument("--batch", type=int_at_least(1), default=4, help="samples per network call")
    ap.add_argument("--resolution", type=int_at_least(1), default=None,
                    help="model input size (default: the training size)")
    ap.add_argument("--fit", choices=("pad", "resize"), default="pad", help="how non-square frames are made square")
    ap.add_argument("--out-dir", default=str(ROOT / "evals"), help="parent folder of the run folder")
    ap.add_argument("--name", default=None, help="run name (default: checkpoint file stem)")
    return ap


def load_model(ckpt: Path, device):
    from models.core.checkpoint import CheckpointError, load_system, read_metadata

    if not ckpt.exists():
        raise UserError(f"checkpoint not found: {ckpt} (download it or convert an original one with "
                        f"scripts/convert_legacy_ckpt.py; train one with train_diffusion.py)")
    if not ckpt.is_file():
        raise UserError(f"--ckpt {ckpt}: is not a file")
    system = read_metadata(ckpt).get("system")
    if system == "sfs":
        raise CheckpointError(f"{ckpt} is a shape-from-shading (sfs) checkpoint; use multiscale.py for it")
    return load_system(ckpt, device=device, expect="diffmotion")


def run(args) -> Path:
    """Validate everything, then sample into a new run folder; returns it."""
    import torch
    from tqdm.auto import tqdm

    from data.io import check_output_path, write_npy, write_png, write_text
    from models.diffmotion.grid import input_strip, prediction_grid

    device = resolve_device(args.device)
    set_threads(args.threads)
    check_output_path(args.out_dir, "--out-dir")
    clips = collect_clips(args.inputs, args.clip)
    read = {name: read_clip(paths, args.fit) for name, paths in clips}  # every frame checked before the model loads
    ckpt = Path(args.ckpt)
    system = load_model(ckpt, device)
    size = args.resolution or system.cfg.data.resolution
    if size % system.net.min_multiple():
        raise UserError(f"--resolution {size} must be a multiple of {system.net.min_multiple()}")
    frames = {name: torch.from_numpy(clip_array(read[name][0], size)) for name, _ in clips}
    for name, arr in frames.items():
        check_finite(arr, f"clip {name}")
    steps = args.steps or system.cfg.diffusion.sampling_steps
    seeds = args.seeds

    run_dir = new_run_dir(args.out_dir, args.name or ckpt.stem)
    jobs = [(name, s) for name, _ in clips for s in seeds]
    index = {"checkpoint": str(ckpt), "system": "diffmotion", "step": system.step, "steps": steps,
             "sampling_shift": args.sampling_shift if args.sampling_shift is not None
             else system.cfg.diffusion.sampling_shift, "resolution": size, "precision": args.precision,
             "device": str(device), "seeds": seeds,
             "layout": "rows: normal, albedo, material (R=metallic, G=specular, B=roughness); "
                       "columns: frames; npy: float16 [3, 9, H, W] in [-1, 1]",
             "clips": {name: {"inputs": [str(p) for p in paths], "input_png": f"{name}_input.png",
                              "input_handling": [dict(i, resized_to=size) for i in read[name][1]], "samples": {}}
                       for name, paths in clips}}
    for name, _ in clips:
        write_png(run_dir / f"{name}_input.png", input_strip(frames[name]))
    bar = tqdm(total=len(jobs), desc="sampling", unit="sample")
    for name, _ in clips:
        for i in range(0, len(seeds), args.batch):
            chunk = seeds[i:i + args.batch]
            out = system.infer({"frames": frames[name]}, chunk, steps=steps, sampling_shift=args.sampling_shift,
                               precision=args.precision, batch=args.batch)
            preds = np.concatenate([out[k] for k in ("normal", "albedo", "material")], axis=2)  # [S, 3, 9, H, W]
            for seed, pred in zip(chunk, preds):
                stem = f"{name}_seed{seed}"
                write_png(run_dir / f"{stem}.png", prediction_grid(torch.from_numpy(pred)))
                write_npy(run_dir / f"{stem}.npy", pred.astype(np.float16))
                index["clips"][name]["samples"][str(seed)] = {"grid": f"{stem}.png", "raw": f"{stem}.npy"}
            bar.update(len(chunk))
            write_text(run_dir / "index.json", json.dumps(index, indent=2))  # kept current: partial runs are usable
    bar.close()
    mark_complete(run_dir, system="diffmotion", clips=len(clips), samples=len(jobs))
    return run_dir


def main(argv=None) -> int:
    run_dir = run(build_parser().parse_args(argv))
    print(f"wrote {run_dir}")
    return 0


if __name__ == "__main__":
    cli_main(main)
