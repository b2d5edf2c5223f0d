#!/usr/bin/env python
"""Generate textured 3D objects with Omages (Yan et al. 2024): class -> geometry omage (N2G) -> materials (G2M) -> mesh.

The geometry is cleaned (occupancy binarised at 0, background reset) before G2M sees it, and normals are filled from
the decoded faces, each chart oriented away from the object centre.

Outputs in --out (default evals/<date>_omages): per sample <k>_<class>_s<seed>.{glb,png,npz} (mesh, channel sheet with
renders, the 12-channel omage), geometry.npz (raw N2G samples: pass it back with --geometry to re-sample materials
only), samples.json (label, class, seed, validity), grid.png (one row per class), COMPLETE.json last.

Examples:
  python scripts/omages_generate.py --classes chair,table,vase --per-class 4
  python scripts/omages_generate.py --geometry evals/2026-12-03_omages/geometry.npz --out evals/remat --seeds 100-111
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import (Parser,  # noqa: E402
                             UserError, add_runtime_flags, cli_main, existing_file, finite_float, int_at_least,
                             fresh_output_dir, mark_complete, new_run_dir, resolve_device, seed_list, set_threads)

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--n2g", default=str(ROOT / "ckpts" / "omages_n2g.safetensors"), help="geometry model export")
    p.add_argument("--g2m", default=str(ROOT / "ckpts" / "omages_g2m.safetensors"), help="material model export")
    p.add_argument("--classes", default="chair,table,vase", help="comma-separated class names")
    p.add_argument("--per-class", type=int_at_least(1), default=4, help="samples per class")
    p.add_argument("--steps", type=int_at_least(1), default=100, help="N2G sampling steps (respaced)")
    p.add_argument("--cfg-scale", type=finite_float(0), default=4.0, help="N2G classifier-free guidance scale")
    p.add_argument("--g2m-steps", type=int_at_least(1), default=None, help="G2M sampling steps (default --steps)")
    p.add_argument("--g2m-cfg-scale", type=finite_float(0), default=1.0, help="G2M guidance scale")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="ddim or ancestral (ddpm)")
    p.add_argument("--geometry", default=None, help="geometry.npz of an earlier run: keep its shapes, labels and "
                   "seeds (unless --seeds), re-sample materials only")
    p.add_argument("--no-sheets", action="store_true", help="skip the per-sample PNG sheets (slow on CPU)")
    p.add_argument("--batch", type=int_at_least(1), default=16)
    p.add_argument("--out", default=None, help="output folder (must be new or empty; default evals/<date>_omages)")
    p.add_argument("--seeds", type=seed_list, default=None, help="one per sample, e.g. 0-11 (default 0, 1, 2, ... or "
                   "the seeds stored in --geometry)")
    add_runtime_flags(p, seeds=None)
    return p


def load_geometry(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from models.omages.pipeline import check_geometry

    path = existing_file(path, "--geometry")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:
        raise UserError(f"--geometry {path}: not a readable .npz ({type(err).__name__})") from None
    for key in ("geometry", "labels", "seeds"):
        if key not in arrays:
            raise UserError(f"--geometry {path}: no '{key}' array (expected the geometry.npz of omages_generate.py)")
    geo = check_geometry(arrays["geometry"], f"--geometry {path}")
    return geo, arrays["labels"].astype(int), arrays["seeds"].astype(int)


def class_labels(text: str, names: list[str]) -> list[int]:
    wanted = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in wanted if c not in names]
    if bad or not wanted:
        raise UserError(f"--classes: unknown class {', '.join(bad) or '(none given)'}; valid: {', '.join(names)}")
    return [names.index(c) for c in wanted]


def pick_seeds(given: list[int] | None, n: int, default: np.ndarray) -> np.ndarray:
    if given is None:
        return np.asarray(default)
    if len(given) < n:
        raise UserError(f"--seeds: {n} samples need {n} seeds, got {len(given)}")
    return np.asarray(given[:n])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    from models.core.checkpoint import load_system

    device = resolve_device(args.device)
    geometry = None
    if args.geometry:   # every input is checked before any output exists
        geometry, labels, seeds = load_geometry(args.geometry)
        seeds = pick_seeds(args.seeds, len(labels), seeds)
    n2g = None if geometry is not None else load_system(existing_file(args.n2g, "--n2g"), device, expect="omages_n2g")
    g2m = load_system(existing_file(args.g2m, "--g2m"), device, expect="omages_g2m")
    names = list(g2m.class_names if n2g is None else n2g.class_names)
    if geometry is None:
        per = [lab for lab in class_labels(args.classes, names) for _ in range(args.per_class)]
        labels, seeds = np.asarray(per), pick_seeds(args.seeds, len(per), np.arange(len(per)))
    elif labels.min() < 0 or labels.max() >= len(names):
        raise UserError(f"--geometry: labels outside the {len(names)} classes of the G2M model")
    out = fresh_output_dir(args.out) if args.out else new_run_dir(ROOT / "evals", "omages")
    samples, validity, seconds = generate(n2g, g2m, labels.tolist(), seeds.tolist(), names, geometry, args)
    from models.core.io import write_png
    from models.omages.pipeline import grid_image, write_samples

    summary = write_samples(out, samples, validity, sheets=not args.no_sheets)
    cols = args.per_class if geometry is None else min(8, len(samples))
    write_png(out / "grid.png", grid_image(samples, cols))
    mark_complete(out, n2g=None if geometry is not None else str(args.n2g), g2m=str(args.g2m),
                  geometry=args.geometry, classes=sorted({s.class_name for s in samples}), n=len(samples),
                  valid=summary["valid"], steps=args.steps, g2m_steps=args.g2m_steps or args.steps,
                  cfg_scale=args.cfg_scale, g2m_cfg_scale=args.g2m_cfg_scale, sampler=args.sampler,
                  seconds_per_object=seconds / max(len(samples), 1), device=str(device))
    print(f"{out}: {summary['valid']}/{summary['n']} valid, {seconds / max(len(samples), 1):.2f} s per object")
    return 0


def generate(n2g, g2m, labels, seeds, names, geometry, args):
    """Run the pipeline with a progress bar; (samples, validity per sample, sampling seconds)."""
    from tqdm import tqdm

    from models.omages.evaluation import validity
    from models.omages.pipeline import run

    n2g_s = {"steps": args.steps, "cfg_scale": args.cfg_scale, "sampler": args.sampler}
    g2m_s = {"steps": args.g2m_steps or args.steps, "cfg_scale": args.g2m_cfg_scale, "sampler": args.sampler}
    t0 = time.perf_counter()
    with tqdm(total=len(labels), desc="omages", unit="obj") as bar:
        samples = run(n2g, g2m, labels, seeds, names, n2g_sampling=n2g_s, g2m_sampling=g2m_s, geometry=geometry,
                      batch=args.batch, progress=bar)
    seconds = time.perf_counter() - t0
    return samples, [validity(s.raw_geometry, s.mesh) for s in samples], seconds


if __name__ == "__main__":
    cli_main(main)
