#!/usr/bin/env python
"""Render a Structure-from-Duplicates test scene: N identical textured L-shaped objects in one photo, with exact
instance ids and ground truth (poses, camera, mesh, normals, albedo, depth, light). Deterministic by --seed.

    python scripts/sfd_make_scene.py --out scenes/pile8 --renderer mitsuba --n 8 --res 2048 --spp 32
    python scripts/sfd_make_scene.py --out scenes/tiny --renderer analytic --n 4 --res 128

Renderers: `mitsuba` (Mitsuba 3 `scalar_rgb` path tracer + AOV pass; needs pip install -e '.[render]') and `analytic`
(pure PyTorch sphere tracing of the same scene's SDF, shaded with the spherical-Gaussian model of SfD Sec. 3.4). The
folder layout is documented in models/sfd/scene_files.py and docs/sfd.md; feed it to scripts/sfd_preprocess.py.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import Parser, UserError, cli_main, finite_float, int_at_least, set_threads  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--out", required=True, help="scene folder to create")
    p.add_argument("--renderer", choices=("mitsuba", "analytic"), default="analytic")
    p.add_argument("--n", type=int_at_least(1), default=6, help="number of instances (default 6)")
    p.add_argument("--res", type=int_at_least(16), default=256, help="square image size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spp", type=int_at_least(1), default=32, help="Mitsuba samples per pixel (default 32)")
    p.add_argument("--max-depth", type=int_at_least(2), default=2,
                   help="Mitsuba path depth: 2 = direct light only (the SfD model's assumption)")
    p.add_argument("--atlas-size", type=int_at_least(32), default=None,
                   help="texture atlas size (default: the image size, at most 2048); small = blurry texture")
    p.add_argument("--fill", type=finite_float(0.05, 1.0), default=0.95,
                   help="fraction of the image the pile spans (default 0.95); smaller = smaller instances")
    p.add_argument("--ss", type=int_at_least(1), default=2, help="analytic renderer: supersampling per axis (default 2)")
    p.add_argument("--minimal", action="store_true",
                   help="write only photo, labels, camera, poses, mesh and light (small test fixtures)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--threads", type=int_at_least(1), default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"--out {out}: exists (pick another, or pass --overwrite)")
    if args.n > 127:
        raise UserError(f"--n {args.n}: the k/N*255 label encoding supports at most 127 instances")

    from models.sfd import scene_layout as L
    from models.sfd.scene_files import write_scene

    layout = L.make_layout(args.n, args.res, args.seed, fill=args.fill)
    layout.light = L.default_light(args.seed)
    atlas = args.atlas_size or min(args.res, 2048)
    t0 = time.time()
    if args.renderer == "mitsuba":
        from models.sfd import scene_mitsuba

        try:
            result = scene_mitsuba.render(layout, spp=args.spp, max_depth=args.max_depth, atlas_size=atlas,
                                          progress=lambda msg: print(msg, flush=True))
        except ImportError as err:
            raise UserError(str(err)) from None
    else:
        from models.sfd import scene_analytic

        result = scene_analytic.render(layout, atlas_size=atlas, supersample=args.ss, progress=True)
    seconds = time.time() - t0
    info = {"renderer": args.renderer, "spp": args.spp if args.renderer == "mitsuba" else args.ss ** 2,
            "max_depth": args.max_depth, "atlas_size": atlas, "fill": args.fill, "render_seconds": round(seconds, 1)}
    write_scene(out, layout, result, info, minimal=args.minimal)
    counts = [int((result["ids"] == k).sum()) for k in range(1, args.n + 1)]
    print(f"wrote {out} ({args.renderer}, {args.res}x{args.res}, N={args.n}, {seconds:.1f} s); "
          f"instance pixels min {min(counts)} max {max(counts)}")
    return 0


if __name__ == "__main__":
    cli_main(main)
