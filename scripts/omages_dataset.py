#!/usr/bin/env python
"""Generate the procedural omage dataset: random multi-part shapes with PBR materials, encoded to 64x64 omages.

    python scripts/omages_dataset.py --out data_cache/omages/smoke --train-per-class 4 --test-per-class 1
    python scripts/omages_dataset.py --out data_cache/omages/gpu20 --train-per-class 1000 --test-per-class 125 --workers 16

Every shape is deterministic in (--seed, split, family, index), so reruns give identical files. The run is
resumable: shapes already written (`shapes/<id>.json`) are skipped, and rerunning the same command after an
interruption finishes the set. Writes shapes/<id>.npz (uint16 `arr_0`, 64x64x12; `--keep-source` adds the bake at
--res), <split>_omages64.npy (N,64,64,12 uint16) with <split>_omages64.json (one record per row: id, class, class_id,
success, n_charts, seed, margin), and COMPLETE.json last.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import Parser, UserError, cli_main, finite_float, int_at_least, mark_complete  # noqa: E402
from models.core.io import write_text  # noqa: E402



def shape_jobs(args) -> list[tuple]:
    from models.core.seeding import derive_seed

    jobs = []
    for split, n in (("train", args.train_per_class), ("test", args.test_per_class)):
        for fam in args.families:
            for i in range(n):
                seed = derive_seed(args.seed, split, fam, i) % (1 << 31)
                jobs.append((split, fam, i, seed))
    return jobs


def make_one(job_and_cfg) -> dict:
    """Generate, encode and write one shape; returns its record (also written as shapes/<id>.json)."""
    (split, fam, i, seed), cfg = job_and_cfg
    import numpy as np

    from models.omages import format as fmt
    from models.omages.encode import EncodeError, encode_with_retries
    from models.omages.procedural import FAMILIES, make_shape

    out = Path(cfg["out"]) / "shapes"
    sid = f"{split}_{fam}_{i:05d}"
    meta_path = out / f"{sid}.json"
    if meta_path.is_file():
        return json.loads(meta_path.read_text())
    rec = {"id": sid, "split": split, "class": fam, "class_id": FAMILIES.index(fam), "seed": int(seed),
           "success": False, "n_charts": 0, "margin": 0.0, "error": ""}
    shape = make_shape(fam, seed)
    try:
        res, how = encode_with_retries(shape.mesh_input(), res=cfg["res"], margin=cfg["margin"])
    except EncodeError as err:
        rec["error"] = str(err)
    else:
        rec.update(success=True, n_charts=res.n_charts, margin=round(res.margin, 5), error="",
                   max_cost=how["max_cost"], charts_dropped=how["charts_dropped"], faces=int(len(shape.faces)),
                   occupied=float(fmt.occupancy(res.omage).mean()))
        fmt.save_omage(out / f"{sid}.npz", res.omage)
        if cfg["keep_source"]:
            fmt.save_omage(out / f"{sid}_src{cfg['res']}.npz", res.source)
    if not rec["success"]:
        fmt.save_omage(out / f"{sid}.npz", np.zeros((64, 64, fmt.N_CHANNELS), np.float32))
    write_text(meta_path, json.dumps(rec) + "\n")  # written last: its presence means the shape is done
    return rec


def pack(out: Path, split: str, records: list[dict]) -> Path:
    import numpy as np

    from models.omages import format as fmt

    arrs = [fmt.quantize(fmt.load_omage(out / "shapes" / f"{r['id']}.npz")) for r in records]
    path, _ = fmt.save_packed(out / f"{split}_omages64.npy", np.stack(arrs), records)
    return path


def main(argv=None) -> int:
    from models.omages.procedural import FAMILIES

    p = Parser(description=__doc__)
    p.add_argument("--out", default="data_cache/omages/proc", help="output folder (default %(default)s)")
    p.add_argument("--train-per-class", type=int_at_least(0), default=4)
    p.add_argument("--test-per-class", type=int_at_least(0), default=1)
    p.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: all 8)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--res", type=int, choices=(64, 128, 256, 512, 1024), default=256, help="bake resolution")
    p.add_argument("--margin", type=finite_float(0.0, 0.2), default=0.02, help="packing margin, fraction of the side")
    p.add_argument("--workers", type=int_at_least(1), default=min(2, os.cpu_count() or 1))
    p.add_argument("--keep-source", action="store_true", help="also store each bake at --res")
    args = p.parse_args(argv)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in args.families if f not in FAMILIES]
    if bad or not args.families:
        raise UserError(f"--families: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(FAMILIES)}")
    if args.train_per_class + args.test_per_class == 0:
        raise UserError("--train-per-class and --test-per-class are both 0: nothing to generate")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    cfg = {"out": str(out), "res": args.res, "margin": args.margin, "keep_source": args.keep_source}
    identity = {"seed": args.seed, "res": args.res, "margin": args.margin, "families": args.families,
                "train_per_class": args.train_per_class, "test_per_class": args.test_per_class}
    args_path = out / "dataset_args.json"
    if args_path.is_file():
        old = json.loads(args_path.read_text())
        if {k: old.get(k) for k in ("seed", "res", "margin")} != {k: identity[k] for k in ("seed", "res", "margin")}:
            raise UserError(f"--out {out}: holds a dataset made with other settings ({old}); pick another folder")
    write_text(args_path, json.dumps(identity, indent=1) + "\n")

    from tqdm import tqdm

    jobs = shape_jobs(args)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    records = {}
    items = [(j, cfg) for j in jobs]
    if args.workers == 1:
        it = map(make_one, items)
    else:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(args.workers)
        it = pool.imap_unordered(make_one, items, chunksize=1)
    for rec in tqdm(it, total=len(items), desc="shapes", unit="shape"):
        records[rec["id"]] = rec
    if args.workers > 1:
        pool.close()
        pool.join()
    summary = {}
    for split in ("train", "test"):
        recs = [records[f"{s}_{f}_{i:05d}"] for (s, f, i, _) in jobs if s == split]
        if recs:
            pack(out, split, recs)
            summary[split] = {"shapes": len(recs), "success": sum(r["success"] for r in recs)}
    mark_complete(out, **summary)
    tqdm.write(f"wrote {out}: " + ", ".join(f"{k} {v['success']}/{v['shapes']} ok" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    cli_main(main)
