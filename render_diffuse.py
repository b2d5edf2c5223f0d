#!/usr/bin/env python
"""Render Lambertian shading images from normal maps: I = albedo * max(0, n . l), background 0.

Inputs (files or folders): .npy normal maps (3,H,W) or (H,W,3) with values in [-1, 1]; PNG normal maps (16-bit
recommended) decoded as v / max * 2 - 1 with channels in RGB = (x right, y up, z toward the viewer) order; .exr
normal maps stored as raw [-1, 1] floats (read with Mitsuba). Foreground = pixels whose normal has
unit length within --fg-tol (and, if given, the --mask / PNG alpha); everything else renders as 0.

Outputs per input, in --out: <name>.png (16-bit greyscale) and/or <name>.npy (float32 HxW), and <name>.json with
the light, albedo and options used. Every input is read and checked before anything is written; outputs that already
exist in --out are refused unless --overwrite. Bad inputs or flags print one line and exit 2. Lights are uniform on the cap l_z >= --min-lz unless --light is given;
with --seed the i-th input uses a light/albedo/noise drawn from seed (seed, i), independent of the other inputs.

Examples:
  python render_diffuse.py normals/ --out renders/ --random-light --seed 0
  python render_diffuse.py sphere.npy --out renders/ --light -0.2 0.5 1 --albedo 0.8 --format npy
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from models.core.cli import Parser, UserError, add_runtime_flags, cli_main, finite_float, int_at_least, set_threads

NORMAL_EXTS = (".npy", ".png", ".exr")


def _read_any(path: Path) -> np.ndarray:
    """data.io.read_image (16-bit colour PNGs keep their depth), with errors as one UserError line."""
    from data.io import read_image

    try:
        return read_image(path)
    except (ValueError, OSError) as err:
        raise UserError(f"{path}: cannot read ({str(err).strip().splitlines()[0][:200]})") from None


def load_normal_map(path: Path, fg_tol: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Read a normal map -> (normals float32 (3,H,W) with background 0, foreground mask bool (H,W))."""
    arr = _read_any(path)
    ext = path.suffix.lower()
    alpha = None
    if arr.ndim != 3:
        raise UserError(f"{path}: expected 3 channels, got an array of shape {arr.shape}")
    if ext == ".npy":
        if arr.shape[0] == 3:
            n = arr
        elif arr.shape[-1] == 3:
            n = arr.transpose(2, 0, 1)
        else:
            raise UserError(f"{path}: expected shape (3,H,W) or (H,W,3), got {arr.shape}")
    else:
        if arr.shape[-1] not in (3, 4):
            raise UserError(f"{path}: expected an RGB normal map, got {arr.shape[-1]} channels")
        if arr.shape[-1] == 4:
            alpha = arr[..., 3] > 0.5
        n = arr[..., :3].transpose(2, 0, 1)
        if ext == ".png":
            n = n * 2.0 - 1.0  # [0, 1] -> [-1, 1]
    n = np.ascontiguousarray(n, dtype=np.float32)
    if not np.isfinite(n).all():
        raise UserError(f"{path}: normal map contains NaN or infinite values")
    if np.abs(n).max() > 1.0 + 1e-3:
        raise UserError(f"{path}: values outside [-1, 1] (max |v| = {np.abs(n).max():.3g}); not a normal map")
    norm = np.linalg.norm(n, axis=0)
    mask = np.abs(norm - 1.0) < fg_tol
    if alpha is not None:
        mask &= alpha
    n = np.where(mask[None], n / np.maximum(norm, 1e-12)[None], 0.0).astype(np.float32)
    return n, mask


def _inputs(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in NORMAL_EXTS and f.is_file())
            if not found:
                raise UserError(f"{p}: no {'/'.join(NORMAL_EXTS)} normal maps in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    stems = [f.stem for f in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise UserError(f"several inputs would write the same output name: {', '.join(dup)}")
    return files


def _load_mask(path: str, shape) -> np.ndarray:
    if not Path(path).is_file():
        raise UserError(f"{path}: no such mask file")
    m = _read_any(Path(path))
    if m.ndim == 3:
        m = m[..., 0] if m.shape[-1] in (1, 3, 4) else m[0]
    if m.shape != tuple(shape):
        raise UserError(f"{path}: mask is {m.shape[0]}x{m.shape[1]} but the normal map is {shape[0]}x{shape[1]}")
    if not np.isfinite(m).all():
        raise UserError(f"{path}: mask contains NaN or infinite values")
    return m > 0.5


def build_parser() -> Parser:
    ap = Parser(prog="render_diffuse.py", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("inputs", nargs="+", help="normal-map files (.npy/.png/.exr) or folders of them")
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--overwrite", action="store_true", help="replace outputs that already exist in --out")
    lg = ap.add_mutually_exclusive_group()
    lg.add_argument("--light", nargs=3, type=finite_float(), metavar=("LX", "LY", "LZ"),
                    help="fixed light direction (normalized; x right, y up, z toward the viewer)")
    lg.add_argument("--random-light", action="store_true",
                    help="uniform random light on the cap l_z >= --min-lz (the default)")
    ap.add_argument("--seed", type=int_at_least(0), default=0, help="seed for random lights/albedo/noise (default 0)")
    ag = ap.add_mutually_exclusive_group()
    ag.add_argument("--albedo", type=finite_float(0, 1, lo_open=True), help="fixed albedo in (0, 1]")
    ag.add_argument("--albedo-range", nargs=2, type=finite_float(0, 1, lo_open=True), metavar=("LO", "HI"),
                    default=(0.5, 1.0), help="random albedo ~ U(LO, HI) per image (default 0.5 1.0)")
    ap.add_argument("--min-lz", type=finite_float(-1, 1), default=math.cos(math.pi / 2.5),
                    help="minimum l_z of random lights, in [-1, 1) (default cos 72 deg = 0.309)")
    ap.add_argument("--ambient", type=finite_float(0), default=0.0, help="ambient term added on the foreground (>= 0)")
    ap.add_argument("--noise", type=finite_float(0), default=0.0, help="Gaussian noise std on the foreground (>= 0)")
    ap.add_argument("--mask", help="optional foreground mask (png/npy, > 0.5 = foreground), same size as the maps")
    ap.add_argument("--downsample", type=int_at_least(1), default=1,
                    help="nearest-neighbour stride applied to the normal maps first (reference: 2 for 512^2 maps)")
    ap.add_argument("--fg-tol", type=finite_float(0, lo_open=True), default=1e-2,
                    help="foreground = | |n| - 1 | < this (default 1e-2; the reference used 1e-3 on 16-bit PNGs)")
    ap.add_argument("--format", nargs="+", choices=("png", "npy"), default=["png", "npy"],
                    help="image formats to write (default: png npy)")
    add_runtime_flags(ap, seeds=None, device=False, precision=False)
    return ap


def _check_args(a) -> None:
    if a.light is not None and math.hypot(*a.light) == 0:
        raise UserError("--light must be a non-zero vector")
    lo, hi = (a.albedo, a.albedo) if a.albedo is not None else a.albedo_range
    if not (0 < lo <= hi <= 1):
        raise UserError(f"--albedo-range {lo} {hi}: need 0 < LO <= HI <= 1")
    if not -1 <= a.min_lz < 1:
        raise UserError(f"--min-lz {a.min_lz}: must lie in [-1, 1)")


def _outputs(out_dir: Path, stem: str, formats) -> list[Path]:
    return [out_dir / f"{stem}.{ext}" for ext in (*[f for f in ("png", "npy") if f in formats], "json")]


def render_files(a) -> list[Path]:
    """Render every input as described by the parsed arguments; returns the written paths."""
    import torch

    from data.io import check_output_path, write_npy, write_png, write_text
    from data.lambertian import render_lambertian, sample_albedo, sample_lights
    from models.core.seeding import derive_seed

    _check_args(a)
    set_threads(a.threads)
    out_dir = check_output_path(a.out, "--out")
    loaded = []  # read and check every input before anything is written
    for path in _inputs(a.inputs):
        n, mask = load_normal_map(path, a.fg_tol)
        if a.downsample > 1:
            n, mask = n[:, ::a.downsample, ::a.downsample], mask[::a.downsample, ::a.downsample]
        if a.mask:
            mask &= _load_mask(a.mask, mask.shape)
            n = n * mask[None]
        clash = [p for p in _outputs(out_dir, path.stem, a.format) if p.exists()]
        if clash and not a.overwrite:
            raise UserError(f"--out {out_dir}: {clash[0].name} exists already (pick another folder, or --overwrite)")
        loaded.append((path, n, mask))
    written: list[Path] = []
    for i, (path, n, mask) in enumerate(loaded):
        g = torch.Generator().manual_seed(derive_seed("render_diffuse", a.seed, i))
        light = torch.tensor(a.light, dtype=torch.float32) if a.light is not None else sample_lights(1, g, a.min_lz)[0]
        light = light / light.norm()
        albedo = a.albedo if a.albedo is not None else float(sample_albedo(1, g, *a.albedo_range)[0])
        img = render_lambertian(torch.from_numpy(np.ascontiguousarray(n))[None], light[None], albedo, a.ambient,
                                a.noise, g)[0, 0].numpy()
        stem = out_dir / path.stem
        if "png" in a.format:
            written.append(write_png(stem.with_suffix(".png"), img, bits=16))
        if "npy" in a.format:
            written.append(write_npy(stem.with_suffix(".npy"), img.astype(np.float32)))
        meta = {"source": str(path), "light": [round(float(v), 8) for v in light], "albedo": albedo,
                "ambient": a.ambient, "noise": a.noise, "seed": a.seed, "index": i, "min_lz": a.min_lz,
                "size": list(img.shape), "foreground_fraction": float(mask.mean()),
                "frame": "x right, y up, z toward the viewer"}
        written.append(write_text(stem.with_suffix(".json"), json.dumps(meta, indent=2) + "\n"))
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written = render_files(args)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
