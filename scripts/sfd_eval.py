#!/usr/bin/env python
"""Score an `sfd` checkpoint against synthetic ground truth (Structure from Duplicates, evaluation):

    python scripts/sfd_eval.py --ckpt runs/sfd_mat/model.safetensors --export exports/pile5 --out evals/pile5.json
    python scripts/sfd_eval.py --ckpt runs/sfd_tiny/model.safetensors          # the tiny preset's analytic scene

Without --data-root the scene is the checkpoint config's analytic scene. Metrics: mask IoU, re-render PSNR/SSIM
(object and union masks), true normal angle (decoded unit normals) and the original's encoded-space angle, albedo
PSNR raw and scale-aligned, roughness error, env-map error after aligning frames, and with --export the exported
pile's Chamfer-L1 / F-score / normal consistency against the GT pile (fractions of the GT bounding-box diagonal).
LPIPS is not computed (no weights are shipped).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.core.cli import Parser, UserError, cli_main, existing_file, int_at_least, set_threads  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--ckpt", required=True, help="model.safetensors of an sfd run")
    p.add_argument("--data-root", help="the training folder the run used (default: the config's analytic scene)")
    p.add_argument("--export", help="folder written by scripts/sfd_export.py (adds the 3D metrics)")
    p.add_argument("--gt-scene", help="the scene folder the data came from (scripts/sfd_make_scene.py): GT mesh, light "
                   "and roughness for the object-frame 3D metrics and the env-map error")
    p.add_argument("--samples", type=int_at_least(100), default=200000, help="surface samples per mesh")
    p.add_argument("--out", help="write the metrics as JSON here (default: print only)")
    p.add_argument("--threads", type=int_at_least(1), default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    ckpt = existing_file(args.ckpt, "--ckpt")
    pile = None
    if args.export:
        pile = existing_file(Path(args.export) / "pile.obj", "--export mesh")
    from data.io import write_text
    from models.core.checkpoint import load_system
    from models.sfd.evaluate import evaluate

    system = load_system(ckpt, expect="sfd")
    scene = system.scene(args.data_root)
    if scene.gt is None:
        raise UserError(f"{args.data_root}: no synthetic ground truth (train/000_diffuse.png) to compare with")
    if args.gt_scene:
        add_scene_gt(scene, Path(args.gt_scene))
    obj = str(Path(args.export) / "object.obj") if args.export else None
    result = evaluate(system, scene, str(pile) if pile else None, samples=args.samples, object_mesh=obj)
    text = json.dumps(result, indent=1)
    if args.out:
        write_text(Path(args.out), text + "\n")
    print(text)
    return 0


def add_scene_gt(scene, folder: Path) -> None:
    """GT mesh (object frame), SG light and roughness of a rendered scene folder."""
    import numpy as np
    import trimesh

    mesh = trimesh.load(existing_file(folder / "gt/object.obj", "--gt-scene mesh"), force="mesh", process=False)
    scene.gt["mesh"] = (np.asarray(mesh.vertices), np.asarray(mesh.faces))
    scene.gt["light"] = json.loads(existing_file(folder / "gt/light.json", "--gt-scene light").read_text())
    info = folder / "scene.json"
    if info.is_file():
        scene.gt["roughness"] = float(json.loads(info.read_text()).get("roughness", 0.5))


if __name__ == "__main__":
    cli_main(main)
