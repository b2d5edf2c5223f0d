#!/usr/bin/env python
"""Export a fitted Structure-from-Duplicates scene (an `sfd` checkpoint, best the Mat stage's) as meshes anyone can open:

    python scripts/sfd_export.py --ckpt runs/sfd_mat/model.safetensors --out exports/pile5 --mesh-res 256

Writes object.glb / object.obj+mtl (the shared object, canonical frame), pile.glb / pile.obj+mtl (every copy placed
in the world), albedo.png (sRGB), roughness.png and metallic.png (linear), transforms.json (object-to-world per
instance, scale matrix, camera), envmap.npy/.png (the fitted SG light, lat-long), a turntable.png preview and
export.json; COMPLETE.json last. The folder is built next to --out and renamed at the end.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.core.cli import Parser, cli_main, existing_file, fresh_output_dir, int_at_least, mark_complete, set_threads  # noqa: E402,E501


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--ckpt", required=True, help="model.safetensors of an sfd run")
    p.add_argument("--out", required=True, help="export folder to create")
    p.add_argument("--mesh-res", type=int_at_least(8), default=256, help="marching grid per axis (default 256)")
    p.add_argument("--texture-res", type=int_at_least(16), default=1024, help="texture size (default 1024)")
    p.add_argument("--no-preview", action="store_true", help="skip the turntable PNG")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--threads", type=int_at_least(1), default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    ckpt = existing_file(args.ckpt, "--ckpt")
    out = fresh_output_dir(args.out, overwrite=args.overwrite)

    from models.core.checkpoint import load_system
    from models.sfd.export import export_scene, turntable

    system = load_system(ckpt, expect="sfd")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary = export_scene(system, tmp, mesh_res=args.mesh_res, texture_res=args.texture_res, progress=True)
        if not args.no_preview:
            turntable(tmp / "object.glb", tmp / "turntable.png")
        mark_complete(tmp, ckpt=str(ckpt), **summary)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"exported {summary['faces']} faces, {summary['instances']} instances -> {out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
