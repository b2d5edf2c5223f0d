#!/usr/bin/env python
"""Generate test_data/sfs/: ambiguous SfS stimuli with ground truth (in the spirit of Fig. 5 of Multistable SfS; used
by check B4) and small object scenes.

Relief stimuli (no background, albedo 1, rendered with data.lambertian):
  circles  160 px  3 domes + 1 dimple (lower right) on a 2x2 grid, light (-0.2, 0.5, 1) normalized (the Fig. 5 analog)
  rings    128 px  central dome with concentric ridges and grooves, light (0.2, -0.4, 1)
  snake    128 px  an S-shaped tube across the frame, light (-0.5, 0.5, 1)
  star     128 px  a 4-pointed star plateau with soft edges, light (-0.5, 0.5, 1)
Each has its depth-reversed twin (normals (-nx, -ny, nz) under light (-lx, -ly, lz)), which renders the identical image.
Object scenes: object0-3, 64 px, procedural (data.sfs_shapes.object_scene) with a foreground mask and a random light.

Everything is float32 .npy plus one index file `stimuli.json`; the folder stays under 3 MB. Deterministic.
Usage: python scripts/make_sfs_test_data.py --out FOLDER        (a new or empty folder)
       python scripts/make_sfs_test_data.py --overwrite          (regenerate the shipped test_data/sfs)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import atomic_write, check_output_path  # noqa: E402
from data.lambertian import flip_normals, render_lambertian, sample_lights  # noqa: E402
from data.sfs_shapes import cap, normals_from_height, object_scene, pixel_grid, plateau, ring, tube  # noqa: E402
from models.core.cli import Parser, UserError, cli_main  # noqa: E402

OBJECT_SEEDS = (999_000_000, 999_000_001, 999_000_002, 999_000_003)  # outside every train/held-out seed range


def circles(res: int = 160):
    """2x2 discs (radius 103/540 of the frame, as in the original 540-px circles.npy): 3 domes + 1 dimple.

    Rim slant 56 deg reproduces the original's minimum intensity (0.103) under its light.
    """
    x, y = pixel_grid(res)
    r, c = 103 / 540 * 2, 0.46
    z = torch.zeros(res, res)
    for cx, cy, sign in [(-c, c, 1), (c, c, 1), (-c, -c, 1), (c, -c, -1)]:
        z = z + sign * cap(x, y, cx, cy, r, 56.0)
    return z, (-0.2, 0.5, 1.0)


def rings(res: int = 128):
    x, y = pixel_grid(res)
    z = 0.6 * cap(x, y, 0, 0, 0.14, 50.0)
    for k, r0 in enumerate((0.32, 0.5, 0.68, 0.86)):
        z = z + (1 if k % 2 == 0 else -1) * 0.05 * ring(x, y, 0, 0, r0, 0.065, "ellipse")
    return z, (0.2, -0.4, 1.0)


def snake(res: int = 128):
    x, y = pixel_grid(res)
    ctrl = np.array([(1.3, 0.7), (0.3, 0.72), (-0.45, 0.4), (0.0, 0.0), (0.45, -0.4), (-0.3, -0.72), (-1.3, -0.7)])
    return 0.1 * tube(x, y, ctrl, 0.075, "gauss"), (-0.5, 0.5, 1.0)


def star(res: int = 128):
    x, y = pixel_grid(res)
    return 0.1 * plateau(x, y, 0, 0, 0.55, 0.16, points=4, depth=0.45, angle=math.pi / 4, sharp=4.0), (-0.5, 0.5, 1.0)


def _save(out: Path, name: str, arr: np.ndarray) -> str:
    with atomic_write(out / name) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    return name


def make(out: Path) -> dict:
    index: dict = {"frame": "x right, y up (decreasing row), z toward the viewer; normals (3,H,W), images (H,W)",
                   "image_model": "albedo * max(0, n . l), no ambient, no noise", "stimuli": {}}
    for name, fn in [("circles", circles), ("rings", rings), ("snake", snake), ("star", star)]:
        z, light = fn()
        res = z.shape[-1]
        n = normals_from_height(z, spacing=2.0 / res)
        lt = torch.tensor(light) / torch.tensor(light).norm()
        img = render_lambertian(n[None], lt[None], 1.0)[0, 0]
        twin = render_lambertian(flip_normals(n)[None], flip_normals(lt)[None], 1.0)[0, 0]
        assert torch.equal(img, twin), "depth-reversed twin must render the identical image"
        index["stimuli"][name] = {
            "kind": "relief", "size": res, "albedo": 1.0,
            "image": _save(out, f"{name}_image.npy", img.numpy().astype(np.float32)),
            "normals": _save(out, f"{name}_normals.npy", n.numpy().astype(np.float32)),
            "normals_flip": _save(out, f"{name}_normals_flip.npy", flip_normals(n).numpy().astype(np.float32)),
            "light": [float(v) for v in lt], "light_flip": [float(v) for v in flip_normals(lt)],
        }
    g = torch.Generator().manual_seed(20240523)
    for k, seed in enumerate(OBJECT_SEEDS):
        n = object_scene(64, seed)
        mask = (n != 0).any(0)
        lt = sample_lights(1, g)[0]
        img = render_lambertian(n[None], lt[None], 0.9)[0, 0]
        name = f"object{k}"
        index["stimuli"][name] = {
            "kind": "object", "size": 64, "albedo": 0.9, "seed": seed,
            "image": _save(out, f"{name}_image.npy", img.numpy().astype(np.float32)),
            "normals": _save(out, f"{name}_normals.npy", n.numpy().astype(np.float32)),
            "mask": _save(out, f"{name}_mask.npy", mask.numpy().astype(np.uint8)),
            "light": [float(v) for v in lt],
        }
    with atomic_write(out / "stimuli.json") as tmp:
        Path(tmp).write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv=None) -> int:
    ap = Parser(prog="make_sfs_test_data.py", description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "test_data" / "sfs"),
                    help="output folder (default: the shipped test_data/sfs)")
    ap.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --out")
    args = ap.parse_args(argv)
    out = check_output_path(args.out, "--out")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"--out {out}: folder is not empty (pick another, or pass --overwrite to regenerate it)")
    index = make(out)
    total = sum(f.stat().st_size for f in Path(args.out).iterdir())
    print(f"wrote {len(index['stimuli'])} stimuli to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    cli_main(main)
