#!/usr/bin/env python
"""Look at an omage: a PNG sheet of its channels and rendered views of the decoded mesh; optionally the GLB and a
point cloud. Accepts an omage (.npz `arr_0` / .npy, uint16 or float in [0, 1], any square size), a packed set
(.npy with its .json, pick rows with --index), or a mesh (.glb/.gltf/.obj/.ply/.off/.stl), which is encoded first.

    python scripts/omages_view.py test_data/omages/fixture64.npy --index 0-7 --out evals/omage_view
    python scripts/omages_view.py chair.glb --out evals/chair --glb --points 4096
    python scripts/omages_view.py --family lamp --seed 3 --out evals/lamp --glb

Writes <name>_sheet.png (and, for meshes, <name>.npz: the encoded 64x64 omage), <name>.glb with --glb,
<name>_points.ply with --points N, and COMPLETE.json last. Nothing is written when an input is rejected.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import (Parser, UserError, cli_main, existing_file, fresh_output_dir, int_at_least,  # noqa: E402
                             mark_complete, seed_list)

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".off", ".stl")


def _inputs(args) -> list[tuple[str, object]]:
    """Everything is read and validated before any output is written: [(name, omage or EncodeResult)]."""
    import numpy as np

    from models.omages import format as fmt
    from models.omages.encode import encode_mesh, load_mesh

    items = []
    if args.family:
        from models.omages.procedural import make_shape

        for s in args.seed:
            res = encode_mesh(make_shape(args.family, s).mesh_input(), res=args.res)
            items.append((f"{args.family}_{s}", res))
        return items
    if not args.input:
        raise UserError("give an input file or --family")
    path = existing_file(args.input)
    suffix = path.suffix.lower()
    if suffix in MESH_SUFFIXES:
        mesh = load_mesh(path)
        res = encode_mesh(mesh, res=args.res, too_many=args.too_many, use_mesh_uvs=args.mesh_uvs)
        return [(path.stem, res)]
    if suffix == ".npy" and path.with_suffix(".json").is_file():
        arr, records = fmt.load_packed(path)
        rows = args.index or [0]
        if max(rows) >= len(arr):
            raise UserError(f"--index {max(rows)}: {path} has only {len(arr)} omages")
        return [(records[i].get("id", f"{path.stem}_{i}"), fmt.validate(np.asarray(arr[i]), f"{path}[{i}]"))
                for i in rows]
    if suffix in (".npz", ".npy"):
        return [(path.stem, fmt.load_omage(path))]
    raise UserError(f"{path}: unsupported input type {suffix!r} (omage .npz/.npy or mesh {', '.join(MESH_SUFFIXES)})")


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("input", nargs="?", help="omage, packed set or mesh file")
    p.add_argument("--out", required=True, help="output folder (must be new or empty)")
    p.add_argument("--index", type=seed_list, default=None, help="rows of a packed set, e.g. 0-7 (default 0)")
    p.add_argument("--family", default=None, help="instead of a file: a procedural family (chair, lamp, ...)")
    p.add_argument("--seed", type=seed_list, default=[0], help="seeds for --family (e.g. 0-3)")
    p.add_argument("--res", type=int, choices=(256, 512, 1024), default=256, help="bake resolution for meshes")
    p.add_argument("--too-many", choices=("error", "largest"), default="error",
                   help="more than 64 charts: refuse (default) or keep the 64 largest")
    p.add_argument("--mesh-uvs", action="store_true", help="keep the mesh's own UV islands as charts (repack only)")
    p.add_argument("--zip", action="store_true", help="zip seams (0.5 x median edge) before export")
    p.add_argument("--glb", action="store_true", help="also write the decoded mesh as GLB with its PBR material")
    p.add_argument("--points", type=int_at_least(1), default=None, help="also write N surface points as PLY")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if args.family:
        from models.omages.procedural import FAMILIES

        if args.family not in FAMILIES:
            raise UserError(f"--family {args.family!r}: choose from {', '.join(FAMILIES)}")
    items = _inputs(args)
    out = fresh_output_dir(args.out, overwrite=args.overwrite)

    from tqdm import tqdm

    from models.core.io import write_png
    from models.omages import format as fmt
    from models.omages.decode import decode
    from models.omages.encode import EncodeResult
    from models.omages.export import write_glb, write_ply
    from models.omages.metrics import sample_surface
    from models.omages.preview import sheet

    for name, item in tqdm(items, desc="omages", unit="omage", disable=len(items) < 2):
        omage = item.omage if isinstance(item, EncodeResult) else item
        if isinstance(item, EncodeResult):
            fmt.save_omage(out / f"{name}.npz", omage)
        mesh = decode(omage, zip_eps=0.5 if args.zip else None)
        write_png(out / f"{name}_sheet.png", sheet(omage, mesh))
        if args.glb:
            write_glb(out / f"{name}.glb", mesh, omage)
        if args.points:
            pts, fi = sample_surface(mesh.vertices, mesh.faces, args.points, seed=0)
            col = mesh.albedo[mesh.faces[fi, 0]] if len(fi) else None
            write_ply(out / f"{name}_points.ply", pts, col)
        tqdm.write(f"{name}: {mesh.n_patches} charts, {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
    mark_complete(out, inputs=[n for n, _ in items])
    return 0


if __name__ == "__main__":
    cli_main(main)
