#!/usr/bin/env python
"""Multistable shape from shading: guided multiscale patch sampling of normal maps (Han, Zickler, Nishino, NeurIPS 2024), many seeds at once.

    python multiscale.py                                   # ckpts/sfs.safetensors on test_data/sfs, fast CPU preset
    python multiscale.py --inputs img.png more/ --seeds 0-15 --schedule vcycle160 --device cuda --precision bf16
    python multiscale.py --inputs photo.png --mask photo_mask.png --analyze

Inputs (--inputs, files or folders): .npy arrays or images (.png/.jpg/.tif). A folder with a stimuli.json (like
test_data/sfs) contributes the images it lists, with their masks and ground truth; any other folder contributes every
image file except *_mask / *_normals* files. Values: float arrays must lie in [0, 1]; integer arrays and images are
scaled by their bit depth; NaN or infinite values are refused. Colour (HxWx3) is converted to grey by Rec. 709
luminance 0.2126 R + 0.7152 G + 0.0722 B of the stored values (no linearization); an alpha channel is composited over
black (data.io.load_image, the loader run_inference.py uses too). Non-square inputs are centre-padded with black to a
square (--fit pad, default; the padding is treated as background) or stretched (--fit resize); then the schedule
resizes the square to each stage's resolution. What was done is printed and recorded in the run JSON.

Outputs in --out (default: a new folder evals/<YYYY-mm-dd>_<name>[-k]/ per run; an explicit --out must be empty or
absent unless --overwrite), one folder per input:
  <name>_seed<s>_normals.npy   fused final normals, float32 (h, w, 3), channels last, frame x right / y up / z out;
                               background 0; pixels marked invalid by the schedule (n_z < -0.1 at the last stage) are
                               (-1, -1, -1). For padded inputs the map is cropped back to the input's aspect ratio.
  <name>_seed<s>_normals.png   the same as (1 + n)/2, 8-bit (background black)
  <name>_vcycle.png            one figure: the input, each stage's result and the fused result (up to 4 seeds)
  <name>_raw.npz               the square input, mask, seeds, every stage's raw x0 maps (float16 [S,3,r,r]) and the
                               full fused maps (float32 [S,R,R,3]) and validity
  <name>_run.json              run configuration: input handling, schedule, seeds, checkpoint, device, timings, calls
and run_config.json for the whole run, then COMPLETE.json, written last (post_process.py refuses a run folder
without it: an interrupted run). Bad inputs, flags or checkpoints print one line and exit with status 2, before
anything is written.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from models.core.cli import (Parser, UserError, add_runtime_flags, check_finite, cli_main, fresh_output_dir,
                             int_at_least, mark_complete, new_run_dir, resolve_device)

ROOT = Path(__file__).resolve().parent
DEFAULT_CKPT = ROOT / "ckpts" / "sfs.safetensors"
DEFAULT_INPUTS = ROOT / "test_data" / "sfs"
IMAGE_EXTS = (".npy", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MIN_SIZE = 16
TRAIN_HINT = ("train one with `python train_diffusion.py --config configs/sfs/cpu.json --out runs/sfs-cpu` "
              "(or configs/sfs/faithful.json on a GPU), then copy runs/<name>/model.safetensors to ckpts/sfs.safetensors "
              "or pass --ckpt PATH")


# ------------------------------------------------------------------------------------------------------------- inputs
def _stimuli_entries(folder: Path) -> list[dict]:
    index = folder / "stimuli.json"
    try:
        meta = json.loads(index.read_text())["stimuli"]
        if not isinstance(meta, dict) or not all(isinstance(e, dict) and isinstance(e.get("image"), str)
                                                 for e in meta.values()):
            raise TypeError("each stimulus needs an 'image' file name")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{index}: not a stimuli index ({type(err).__name__}: {str(err).splitlines()[0][:150]})") \
            from None
    out = []
    for name, e in meta.items():
        item = {"path": folder / e["image"], "name": name}
        for key in ("mask", "normals", "normals_flip"):
            if key in e:
                item[key] = folder / e[key]
        if "light" in e:
            item["light"] = e["light"]
        out.append(item)
    return out


def collect_inputs(paths: list[str]) -> list[dict]:
    """Expand files/folders into input records {path, name, [mask, normals, normals_flip, light]}."""
    items = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if (p / "stimuli.json").is_file():
                items += _stimuli_entries(p)
                continue
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")
                           and not any(tag in f.stem for tag in ("_mask", "_normals")))
            if not files:
                raise UserError(f"{p}: no image files ({', '.join(IMAGE_EXTS)}) in this folder")
            items += [{"path": f, "name": f.stem} for f in files]
        elif p.is_file():
            known = {}
            if (p.parent / "stimuli.json").is_file():
                known = {str(e["path"].resolve()): e for e in _stimuli_entries(p.parent)}
            items.append(known.get(str(p.resolve()), {"path": p, "name": p.stem}))
        else:
            raise UserError(f"input not found: {p}")
    for it in items:  # output folder names: filesystem-safe (a stimuli.json key never escapes --out)
        it["name"] = "".join(c if c.isalnum() or c in "-_." else "_" for c in it["name"]).strip(".") or "input"
    names = [it["name"] for it in items]
    for i, it in enumerate(items):  # make output folder names unique
        if names.count(it["name"]) > 1:
            it["name"] = f"{it['name']}_{i}"
    return items


def load_gray(path: Path) -> tuple[np.ndarray, str]:
    """Any supported file -> float32 [H, W] in [0, 1], plus a note on the conversion done (data.io.load_image)."""
    from data.io import load_image

    arr, info = load_image(path, mode="gray", fit=None, min_size=MIN_SIZE)
    return arr, info["conversion"]


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """{0,1} float32 mask [H, W] (> 0.5 = foreground) that must match the image size."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        from data.io import load_image

        arr, _ = load_image(path, mode="gray", fit=None)
    else:
        try:
            raw = np.load(path, allow_pickle=False)
        except Exception as err:
            raise UserError(f"{path}: cannot read mask ({str(err).splitlines()[0][:200]})") from None
        if not (raw.dtype == bool or np.issubdtype(raw.dtype, np.number)) or np.iscomplexobj(raw):
            raise UserError(f"{path}: unsupported mask dtype {raw.dtype}")
        arr = raw.astype(np.float32).squeeze()
        check_finite(arr, f"mask {path}")
    if arr.shape != tuple(shape):
        raise UserError(f"{path}: mask is {arr.shape[0]}x{arr.shape[1]} but the image is {shape[0]}x{shape[1]}"
                        if arr.ndim == 2 else f"{path}: mask must be 2-D, got shape {arr.shape}")
    mask = (arr > 0.5).astype(np.float32)
    if mask.sum() == 0:
        raise UserError(f"{path}: mask has no foreground pixels")
    return mask


def fit_square(img: np.ndarray, mask: np.ndarray | None, mode: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Make the image square (data.io.fit_square): centre-pad (padding = background) or stretch; the mask follows.

    Returns (img, mask, record)."""
    from data.io import fit_square as fit

    img_sq, rec = fit(img, mode)
    h, w = img.shape
    if rec["fit"] == "none":
        return img_sq, mask, rec
    if mode == "resize":
        rec["note"] = f"stretched {h}x{w} -> {rec['square_size']}x{rec['square_size']} (anisotropic: normals of the " \
                      "stretched image)"
        return img_sq, None if mask is None else (fit(mask, "resize")[0] > 0.5).astype(np.float32), rec
    rec["note"] += "; padding masked out"
    return img_sq, fit(np.ones_like(img) if mask is None else mask, "pad")[0], rec


# ------------------------------------------------------------------------------------------------------------ outputs
def normals_png(n: np.ndarray, fg: np.ndarray | None) -> np.ndarray:
    """(h, w, 3) normals -> (1 + n)/2 in [0, 1], background black."""
    rgb = np.clip((1 + n) / 2, 0, 1)
    return rgb if fg is None else rgb * fg[..., None]


def write_figure(path: Path, image: np.ndarray, result, max_rows: int = 4) -> None:
    """Input | every stage's raw x0 (renormalized for display) | fused, for up to `max_rows` seeds; figure closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data.io import atomic_write

    rows = min(max_rows, len(result.seeds))
    cols = len(result.stages) + 2
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
    try:
        for r in range(rows):
            axes[r, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[r, 0].set_title(f"input / seed {result.seeds[r]}", fontsize=6)
            for c, st in enumerate(result.stages):
                n = st["normals"][r].float()
                n = n / n.norm(dim=0, keepdim=True).clamp_min(1e-6)
                axes[r, c + 1].imshow(((1 + n.permute(1, 2, 0)) / 2).clamp(0, 1).numpy())
                axes[r, c + 1].set_title(f"{c}: {st['label']}", fontsize=6)
            fused = result.normals[r].permute(1, 2, 0).numpy()
            axes[r, -1].imshow(normals_png(fused, np.abs(fused).sum(-1) > 0))
            axes[r, -1].set_title("fused result", fontsize=6)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def crop_box(rec: dict, size: int) -> tuple[int, int, int, int]:
    """Content rows/cols (r0, r1, c0, c1) of the fused size x size map for a padded input."""
    if rec["fit"] != "pad":
        return 0, size, 0, size
    s = size / rec["square_size"]
    (top, left), (h, w) = rec["offset"], rec["original_size"]
    return round(top * s), round((top + h) * s), round(left * s), round((left + w) * s)


def save_outputs(folder: Path, item: dict, img_sq, mask_sq, rec: dict, result, run_info: dict) -> dict:
    from data.io import write_npy, write_npz, write_png, write_text

    name = item["name"]
    size = result.normals.shape[-1]
    r0, r1, c0, c1 = crop_box(rec, size)
    fused = result.normals.permute(0, 2, 3, 1).numpy().astype(np.float32)
    fg = (np.abs(fused).sum(-1) > 0)
    files = []
    for k, seed in enumerate(result.seeds):
        n = fused[k, r0:r1, c0:c1]
        files.append(write_npy(folder / f"{name}_seed{seed:03d}_normals.npy", n).name)
        files.append(write_png(folder / f"{name}_seed{seed:03d}_normals.png", normals_png(n, fg[k, r0:r1, c0:c1])).name)
    write_figure(folder / f"{name}_vcycle.png", img_sq, result)
    stages = {f"stage{k:02d}": st["normals"].numpy().astype(np.float16) for k, st in enumerate(result.stages)}
    write_npz(folder / f"{name}_raw.npz", image=img_sq, mask=np.ones_like(img_sq) if mask_sq is None else mask_sq,
              seeds=np.asarray(result.seeds), fused=fused, valid=result.valid.numpy(),
              stage_labels=np.asarray([st["label"] for st in result.stages]),
              stage_res=np.asarray([st["res"] for st in result.stages]), **stages)
    files += [f"{name}_vcycle.png", f"{name}_raw.npz"]
    info = dict(run_info, input=str(item["path"]), name=name, preprocessing=rec, crop_box=[r0, r1, c0, c1],
                output_size=[r1 - r0, c1 - c0], seconds=round(result.seconds, 2), calls=result.calls,
                lcg=[{"stage": k, "counts": st["lcg"]} for k, st in enumerate(result.stages) if st["lcg"]],
                ground_truth={k: str(item[k]) for k in ("normals", "normals_flip", "mask") if k in item},
                light=item.get("light"), files=files + [f"{name}_run.json"])
    write_text(folder / f"{name}_run.json", json.dumps(info, indent=2))
    return info


# ---------------------------------------------------------------------------------------------------------------- CLI
def pick_threads(threads: int | None, device) -> int:
    """Set torch's CPU threads: the given number, or 1 on a busy machine (measured on 2 shared cores: the fast preset
    took 55 s with 1 thread and over 200 s with 2), else torch's default. Returns the count in use."""
    import os

    import torch

    if threads:
        torch.set_num_threads(threads)
    elif str(device) == "cpu" and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
        print(f"note: the machine is busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); "
              "using 1 torch thread (override with --threads)")
    return torch.get_num_threads()


def build_parser() -> Parser:
    p = Parser(prog="multiscale.py", description=__doc__)
    p.add_argument("--ckpt", default=str(DEFAULT_CKPT), help="exported sfs checkpoint (.safetensors)")
    p.add_argument("--inputs", nargs="+", default=[str(DEFAULT_INPUTS)], help="image files and/or folders")
    p.add_argument("--mask", help="foreground mask (.npy/.png, > 0.5 = foreground) for every input; same size")
    add_runtime_flags(p, seeds="0-15", precision=False, threads=False)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 autocast (CUDA only)")
    p.add_argument("--threads", type=int_at_least(1), help="CPU threads for torch (default: 1 when the machine is "
                   "already busy, i.e. load average >= cores, where extra threads only wait on each other; else "
                   "torch's choice)")
    p.add_argument("--schedule", default="fast", help="preset in models/sfs/schedules (fast, vcycle160, ...) or a JSON file")
    p.add_argument("--out", help="output folder, empty or new (default: a new evals/<date>_<name>[-k])")
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out (its results are replaced)")
    p.add_argument("--name", help="run name for the default output folder (default sfs_<schedule>)")
    p.add_argument("--fit", default="pad", choices=["pad", "resize"], help="how non-square inputs are made square")
    p.add_argument("--analyze", action="store_true", help="run post_process.py's analysis on the outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _check_out(args) -> None:
    """--out must be a new or empty folder (or --overwrite); checked before any work, so nothing is half-written."""
    from data.io import check_output_path

    if args.out:
        out = check_output_path(args.out, "--out")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise UserError(f"--out {out}: folder is not empty (pick another, or pass --overwrite)")
    else:
        check_output_path(ROOT / "evals", "evals folder")


def run(args) -> Path:
    import torch
    from tqdm.auto import tqdm

    from data.io import write_text
    from models import load_system
    from models.core.cli import COMPLETE
    from models.core.config import to_dict
    from models.sfs.vcycle import load_schedule

    device = resolve_device(args.device)
    seeds = args.seeds
    try:
        schedule = load_schedule(args.schedule)
    except (ValueError, OSError) as err:  # ConfigError is a UserError and passes through
        raise UserError(f"--schedule {args.schedule}: {str(err).strip().splitlines()[0][:300]}") from None
    _check_out(args)
    items = collect_inputs(args.inputs)
    user_mask = Path(args.mask) if args.mask else None
    if user_mask is not None and not user_mask.is_file():
        raise UserError(f"mask not found: {user_mask}")
    loaded = []  # validate every input before the (slow) sampling starts
    for it in items:
        img, note = load_gray(it["path"])
        mpath = user_mask or it.get("mask")
        mask = None if mpath is None else load_mask(Path(mpath), img.shape)
        loaded.append((it, img, note, mask))
    ckpt = Path(args.ckpt)
    if not ckpt.is_file():
        raise UserError(f"no checkpoint at {ckpt}: {TRAIN_HINT}")
    pick_threads(args.threads, device)
    system = load_system(ckpt, device=device, expect="sfs")  # CheckpointError: one line
    precision = args.precision
    if precision == "bf16" and device.type != "cuda":
        print("note: bf16 autocast is CUDA-only; running fp32 on the CPU")
        precision = "fp32"
    if args.out:
        out = fresh_output_dir(args.out, "--out", overwrite=args.overwrite)
        (out / COMPLETE).unlink(missing_ok=True)  # a replaced run is incomplete until it finishes again
    else:
        out = new_run_dir(ROOT / "evals", args.name or "sfs_" + schedule.name)
    run_info = {"checkpoint": str(ckpt), "checkpoint_step": getattr(system, "step", None), "seeds": seeds,
                "schedule": to_dict(schedule), "device": str(device), "precision": precision,
                "torch_threads": torch.get_num_threads(), "command": " ".join(sys.argv)}
    write_text(out / "run_config.json", json.dumps(dict(run_info, inputs=[str(it["path"]) for it in items]), indent=2))
    summary = []
    for it, img, note, mask in tqdm(loaded, desc="inputs", disable=args.quiet):
        img_sq, mask_sq, rec = fit_square(img, mask, args.fit)
        rec["conversion"] = note
        rec["mask"] = str(user_mask or it.get("mask")) if mask is not None else None
        msg = f"{it['name']}: {rec['original_size'][0]}x{rec['original_size'][1]} ({note})"
        msg += f"; {rec['note']}" if "note" in rec else ""
        tqdm.write(msg + f"; stages {[s.res for s in schedule.stages]} px, {len(seeds)} seeds")
        t0 = time.perf_counter()
        result = system.sample(img_sq, seeds, schedule, mask_sq, device, precision, progress=not args.quiet)
        info = save_outputs(out / it["name"], it, img_sq, mask_sq, rec, result, run_info)
        tqdm.write(f"  done in {time.perf_counter() - t0:.1f} s -> {out / it['name']}")
        summary.append({"name": it["name"], "seconds": info["seconds"], "output_size": info["output_size"]})
    write_text(out / "run_config.json",
               json.dumps(dict(run_info, inputs=[str(it["path"]) for it in items], results=summary), indent=2))
    mark_complete(out, system="sfs", inputs=len(items), seeds=len(seeds))
    if args.analyze:
        import post_process

        post_process.analyze_run(out, verbose=True)
    print(f"finished: {out}")
    return out


def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    cli_main(main)
