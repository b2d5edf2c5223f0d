#!/usr/bin/env python
"""Render a DiffMotion training set (the layout of data/README.md) with Mitsuba 3 or the NumPy fallback.

  python scripts/render_motion.py --out data/diffmotion/train --num-objects 150 --sequences-per-object 4
  python scripts/render_motion.py --out data/diffmotion/held_out --num-objects 30 --sequences-per-object 2 --held-out
  python scripts/render_motion.py --out /tmp/quick --backend numpy --resolution 64     # no mitsuba needed

Re-running the same command resumes: complete sequences are skipped, half-written ones are rendered again, and the
pointer JSON is rebuilt from the complete sequences at the end. A command whose resolution, backend, seed, split or
spp differs from the sequences already in --out is refused (one dataset never mixes them), as is --test-clips into a
non-empty folder. Every flag is checked before anything is rendered; bad ones print one line and exit 2.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import motion_render as mr  # noqa: E402
from data.io import check_output_path, write_text  # noqa: E402
from models.core.cli import Parser, UserError, cli_main, finite_float, int_at_least  # noqa: E402

TEST_CLIP_FAMILIES = ("blob", "torus", "revolution", "displaced_sphere")  # last one becomes the static single image


def auto_variant() -> str:
    """cuda_ad_rgb when torch sees a GPU, else scalar_rgb (llvm_ad_rgb crashes on our CPU VMs, so it is never chosen)."""
    try:
        import torch

        return "cuda_ad_rgb" if torch.cuda.is_available() else "scalar_rgb"
    except ImportError:
        return "scalar_rgb"


def export_test_clips(out: Path, args, variant: str) -> None:
    """Small inference clips: 3 moving (frames 0-2) + 1 static single image, GT maps under gt/, index in clips.json."""
    work = Path(tempfile.mkdtemp(prefix="motion_clips_"))
    try:
        renderer = mr.MitsubaRenderer(variant) if args.backend == "mitsuba" else None
        fams = TEST_CLIP_FAMILIES if args.backend == "mitsuba" else ("blob", "torus", "rounded_box", "ellipsoid")
        index = []
        for k, fam in enumerate(fams):
            spec = mr.sample_scene(args.seed, k, 0, held_out=True, backend=args.backend, families=(fam,))
            mr.render_sequence(work, spec, args.resolution, args.spp, renderer)
            static = k == len(fams) - 1
            name = f"static_{fam}" if static else fam
            item = {"name": name, "static": static, "frames": [], "gt": [],
                    "scene": {"family": fam, "seed": args.seed, "object": k, "held_out": True, "backend": args.backend,
                              "resolution": args.resolution, "dtheta_deg": round(spec["motion"]["dtheta_deg"], 3)}}
            for j in range(1 if static else 3):
                src = work / spec["folder"]
                stem = name if static else f"{name}_{j}"
                (out / "gt").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / mr.frame_file(0, j, "rgb"), out / f".{stem}.png.tmp")
                os.replace(out / f".{stem}.png.tmp", out / f"{stem}.png")
                gt = {}
                for m in mr.MODALITIES[1:]:
                    dst = out / "gt" / f"{stem}_{m}.png"
                    shutil.copyfile(src / mr.frame_file(0, j, m), dst.with_suffix(".tmp"))
                    os.replace(dst.with_suffix(".tmp"), dst)
                    gt[m] = f"gt/{dst.name}"
                item["frames"].append(f"{stem}.png")
                item["gt"].append(gt)
            index.append(item)
        write_text(out / "clips.json", json.dumps(index, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {len(index)} clips to {out} ({size / 1e6:.2f} MB)")


VARIANTS = ("auto", "scalar_rgb", "cuda_ad_rgb")  # llvm_ad_rgb crashes on our CPU VMs
MAX_RESOLUTION = 4096


def build_parser() -> Parser:
    ap = Parser(prog="render_motion.py", description=__doc__)
    ap.add_argument("--out", required=True, help="dataset root (created if needed)")
    ap.add_argument("--num-objects", type=int_at_least(1), default=4, help="object folders obj_00000, ... (one shape each)")
    ap.add_argument("--sequences-per-object", type=int_at_least(1), default=4,
                    help="5-frame sequences per object (2 clips each)")
    ap.add_argument("--resolution", type=int_at_least(16), default=128,
                    help=f"square image size in pixels (16-{MAX_RESOLUTION})")
    ap.add_argument("--spp", type=int_at_least(1), default=64, help="samples per pixel of the path-traced RGB (mitsuba)")
    ap.add_argument("--workers", type=int_at_least(1), default=None,
                    help="parallel processes (default: os.cpu_count(); 4 max on cuda)")
    ap.add_argument("--variant", default="auto", choices=VARIANTS,
                    help="mitsuba variant: auto (cuda_ad_rgb if CUDA else scalar_rgb), scalar_rgb, cuda_ad_rgb")
    ap.add_argument("--backend", choices=("mitsuba", "numpy"), default="mitsuba", help="numpy = analytic shapes, no mitsuba")
    ap.add_argument("--seed", type=int_at_least(0), default=0, help="every scene is a function of (seed, object, sequence)")
    ap.add_argument("--meshes", type=Path, default=None, help="folder of extra .obj/.ply meshes (mitsuba backend)")
    ap.add_argument("--mesh-fraction", type=finite_float(0, 1), default=0.5, help="share of objects using a --meshes file")
    ap.add_argument("--families", default=None, help="comma list restricting the procedural shape families")
    ap.add_argument("--held-out", action="store_true", help="disjoint seed stream: unseen shapes, textures and env maps")
    ap.add_argument("--pointer", default="clips.json", help="pointer JSON name inside --out")
    ap.add_argument("--reindex", action="store_true", help="only rebuild the pointer JSON from the complete sequences")
    ap.add_argument("--test-clips", action="store_true", help="write small inference clips (test_data layout) instead")
    ap.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")
    return ap


def check_args(args) -> tuple[str, tuple[str, ...], tuple[str, ...] | None]:
    """Every flag checked before rendering: returns (variant, meshes, families)."""
    from data import motion_shapes as shp

    if args.resolution > MAX_RESOLUTION:
        raise UserError(f"--resolution {args.resolution}: at most {MAX_RESOLUTION}")
    pointer = Path(args.pointer)
    if pointer.name != args.pointer or pointer.suffix != ".json" or args.pointer.startswith("."):
        raise UserError(f"--pointer {args.pointer!r}: expected a plain file name ending in .json")
    out = check_output_path(args.out, "--out")
    if (out / args.pointer).is_dir():
        raise UserError(f"--pointer {args.pointer}: {out / args.pointer} is a folder")
    variant = auto_variant() if args.variant == "auto" else args.variant
    if args.backend == "mitsuba" and variant == "cuda_ad_rgb":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--variant cuda_ad_rgb: CUDA is not available on this machine; use scalar_rgb")
    meshes: tuple[str, ...] = ()
    if args.meshes:
        if not args.meshes.is_dir():
            raise UserError(f"--meshes {args.meshes}: not a folder")
        meshes = tuple(sorted(str(p) for p in args.meshes.iterdir() if p.suffix.lower() in (".obj", ".ply")))
        if not meshes:
            raise UserError(f"--meshes {args.meshes}: no .obj/.ply files")
    families = None
    if args.families is not None:
        families = tuple(f.strip() for f in args.families.split(",") if f.strip())
        known = shp.MESH_FAMILIES if args.backend == "mitsuba" else shp.SDF_FAMILIES
        unknown = sorted(set(families) - set(known))
        if not families or unknown:
            raise UserError(f"--families {args.families!r}: the {args.backend} backend knows {', '.join(known)}")
    if args.backend == "mitsuba" and not args.reindex:
        from models.core.optional import is_available

        if not is_available("mitsuba"):
            raise UserError("--backend mitsuba needs the optional package 'mitsuba' (pip install -e '.[mitsuba]'); "
                            "or use --backend numpy")
    return variant, meshes, families


def check_existing(out: Path, args) -> None:
    """Refuse a command that would mix settings with the sequences already in `out` (read from their meta files)."""
    if not out.is_dir():
        return
    want = {"resolution": args.resolution, "backend": args.backend, "seed": args.seed, "held_out": bool(args.held_out)}
    if args.backend == "mitsuba":
        want["spp"] = args.spp
    for meta in sorted(out.glob("obj_*/*_motion_meta.json")):
        try:
            have = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{meta}: unreadable sequence record ({err}); delete that sequence or pick another --out") \
                from None
        for key, value in want.items():
            if key in have and have[key] != value:
                raise UserError(f"--out {out}: holds sequences rendered with {key}={have[key]!r} ({meta.parent.name}); "
                                f"this command asks for {key}={value!r} - use another --out to keep datasets apart")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.reindex:
        check_output_path(out, "--out")
        if not out.is_dir():
            raise UserError(f"--out {out}: no such dataset folder to reindex")
        entries = mr.build_pointer(out, args.pointer)
        _, partial = mr.scan_sequences(out)
        print(f"{out / args.pointer}: {len(entries)} clips; {len(partial)} partial sequence(s) not listed: {partial[:10]}")
        return 0
    variant, meshes, families = check_args(args)
    if args.test_clips:
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"--out {out}: folder is not empty; --test-clips writes into a new or empty folder")
        export_test_clips(out, args, variant)
        return 0
    check_existing(out, args)
    workers = args.workers or (min(4, os.cpu_count() or 1) if variant.startswith("cuda") else os.cpu_count() or 1)
    if meshes and args.backend == "numpy":
        print("note: the numpy backend renders analytic shapes only; --meshes is ignored", file=sys.stderr)
    stats = mr.generate(out, args.num_objects, args.sequences_per_object, resolution=args.resolution, spp=args.spp,
                        workers=workers, backend=args.backend, variant=variant, seed=args.seed, held_out=args.held_out,
                        families=families, user_meshes=meshes, mesh_fraction=args.mesh_fraction, pointer=args.pointer,
                        progress=not args.no_progress)
    print(f"{out}: rendered {stats['rendered']}, skipped {stats['skipped']} complete; {stats['clips']} clips in "
          f"{out / args.pointer}" + (f"; still partial: {stats['partial']}" if stats["partial"] else ""))
    return 0


if __name__ == "__main__":
    cli_main(main)
