#!/usr/bin/env python
"""Evaluate Omages generations against held-out procedural shapes: validity rate, distribution (MMD/COV/1-NNA-CD on
2,048-point clouds with the train-vs-test floor, P-FID-proc with the shipped PointNet and its floor), omage statistics,
class accuracy of the samples by the PointNet at two guidance scales, and the material stage on GT test geometry
against the per-class-mean-colour baseline. Writes report.json and report.md (pass / FAIL per check).

Examples:
  python scripts/omages_eval.py --gen evals/2026-12-03_omages --data-root data_cache/omages/proc1400 \\
      --gen-cfg1 evals/omages_cfg1 --g2m ckpts/omages_g2m.safetensors --out evals/omages_eval
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import (Parser, UserError, cli_main, existing_file, fresh_output_dir, int_at_least,  # noqa: E402
                             mark_complete, require_complete, resolve_device, set_threads)

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--gen", required=True, help="a finished omages_generate.py folder (CFG 4 samples)")
    p.add_argument("--gen-cfg1", default=None, help="the same classes and seeds sampled at CFG 1 (classifier check)")
    p.add_argument("--data-root", required=True, help="omages_dataset.py folder with train_ and test_omages64.npy")
    p.add_argument("--pointnet", default=str(ROOT / "ckpts" / "omages_pointnet.safetensors"))
    p.add_argument("--g2m", default=None, help="material model: also run the material check on GT test geometry")
    p.add_argument("--ref", type=int_at_least(2), default=200, help="test (and train floor) shapes used")
    p.add_argument("--material-n", type=int_at_least(1), default=32, help="test shapes for the material check")
    p.add_argument("--steps", type=int_at_least(1), default=50, help="G2M sampling steps for the material check")
    p.add_argument("--points", type=int_at_least(64), default=2048)
    p.add_argument("--out", required=True, help="report folder (new or empty)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int_at_least(1), default=None)
    return p


def load_generated(folder: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    from models.omages import format as fmt

    folder = require_complete(folder)
    recs = json.loads((folder / "samples.json").read_text())["samples"]
    oms = np.stack([fmt.load_omage(folder / f"{r['name']}.npz") for r in recs])
    return oms, np.array([r["label"] for r in recs]), recs


def class_map(gen_recs: list[dict], data_recs: list[dict]) -> np.ndarray:
    """Generated class names -> dataset class ids (the PointNet's label space)."""
    ids = {r["class"]: int(r["class_id"]) for r in data_recs}
    bad = sorted({r["class"] for r in gen_recs} - set(ids))
    if bad:
        raise UserError(f"generated classes {', '.join(bad)} are not in the dataset ({', '.join(sorted(ids))})")
    return np.array([ids[r["class"]] for r in gen_recs])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    import torch
    from tqdm import tqdm

    from models.omages import evaluation as ev
    from models.omages import format as fmt
    from models.omages.pointnet import load as load_pointnet

    root = Path(args.data_root)
    train, train_recs = fmt.load_packed(root / "train_omages64.npy")
    test, test_recs = fmt.load_packed(root / "test_omages64.npy")
    gen, _, gen_recs = load_generated(args.gen)
    gen_cls = class_map(gen_recs, test_recs)
    cfg1 = load_generated(args.gen_cfg1) if args.gen_cfg1 else None
    net = load_pointnet(existing_file(args.pointnet, "--pointnet"))
    g2m = None
    if args.g2m:
        from models.core.checkpoint import load_system

        g2m = load_system(existing_file(args.g2m, "--g2m"), resolve_device(args.device), expect="omages_g2m")
    out = fresh_output_dir(args.out)

    rng = np.random.default_rng(0)
    ti = np.sort(rng.choice(len(test), min(args.ref, len(test)), replace=False))
    tr = np.sort(rng.choice(len(train), min(args.ref, len(train)), replace=False))
    test_f = np.stack([fmt.validate(test[i]) for i in ti])
    train_f = np.stack([fmt.validate(train[i]) for i in tr])
    report = {"n_gen": len(gen), "n_ref": len(ti), "points": args.points,
              "validity_rate": float(np.mean([r["valid"] for r in gen_recs]))}
    with tqdm(total=5 + (g2m is not None), desc="eval") as bar:
        clouds = {}
        for name, oms in (("gen", gen), ("test", test_f), ("train", train_f), ("noise", ev.noise_omages(len(ti)))):
            clouds[name] = ev.omage_clouds(oms, args.points)
        bar.update()
        report["distribution"] = ev.distribution(clouds["gen"], clouds["test"], clouds["train"], args.device)
        bar.update()
        report["noise_nna"] = ev.distribution(clouds["noise"], clouds["test"], clouds["train"],
                                              args.device)["gen"]["nna_cd"]
        bar.update()
        with torch.no_grad():
            report["pfid"] = ev.pfid(net, clouds["gen"], clouds["test"], clouds["train"])
            acc = {"4": ev.classifier_accuracy(net, clouds["gen"], gen_cls)}
            if cfg1 is not None:
                acc["1"] = ev.classifier_accuracy(net, ev.omage_clouds(cfg1[0], args.points),
                                                  class_map(cfg1[2], test_recs))
                report["accuracy_cfg"] = acc
            else:
                report["accuracy_cfg4_only"] = acc["4"]
        bar.update()
        report["stats"] = {"gen": ev.chart_stats(gen), "data": ev.chart_stats(test_f)}
        bar.update()
        if g2m is not None:
            report["material"] = ev.material_check(g2m, test, test_recs, train, train_recs, args.material_n,
                                                        args.steps)
            bar.update()
    rows = ev.verdicts(report)
    report["verdicts"] = [{"check": a, "measured": b, "threshold": c, "pass": ok} for a, b, c, ok in rows]
    from models.core.io import write_text

    write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    md = ev.markdown(rows)
    write_text(out / "report.md", md)
    mark_complete(out, gen=str(args.gen), data_root=str(root))
    print(md)
    return 0


if __name__ == "__main__":
    cli_main(main)
