#!/usr/bin/env python
"""Omages material stage (B7), several G2M models side by side: each samples the materials of the same held-out
shapes from their ground-truth geometry; albedo L1 against the per-class-mean-colour baseline, metallic accuracy and
roughness MAE on occupied pixels, plus sampling time.

    python benchmarks/omages_materials.py --data-root data_cache/omages/proc1400 \
        --g2m runs/omages_g2m_cpu_p4/model.safetensors runs/omages_g2m_unet_cpu/model.safetensors

Writes benchmarks/results/omages_materials.md.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.core.cli import Parser, cli_main, existing_file, int_at_least  # noqa: E402
from models.core.io import write_text  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--g2m", nargs="+", required=True, help="G2M exports to compare")
    p.add_argument("--data-root", required=True)
    p.add_argument("--n", type=int_at_least(1), default=32, help="test shapes (spread over the classes)")
    p.add_argument("--steps", type=int_at_least(1), default=50, help="DDIM steps")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "omages_materials.md"))
    args = p.parse_args(argv)
    paths = [existing_file(g, "--g2m") for g in args.g2m]

    import torch

    from models.core.checkpoint import load_system
    from models.omages import evaluation as ev
    from models.omages import format as fmt

    torch.set_num_threads(1)
    root = Path(args.data_root)
    train, train_recs = fmt.load_packed(existing_file(root / "train_omages64.npy", "--data-root"))
    test, test_recs = fmt.load_packed(existing_file(root / "test_omages64.npy", "--data-root"))
    rows = []
    for path in paths:
        g2m = load_system(path, expect="omages_g2m")
        params = sum(v.numel() for v in g2m.exported_module().parameters())
        t0 = time.perf_counter()
        m = ev.material_check(g2m, test, test_recs, train, train_recs, args.n, args.steps)
        sec = (time.perf_counter() - t0) / m["n"]
        rows.append(f"| `{path}` | {g2m.cfg.arch} | {params / 1e6:.2f} M | {g2m.step} | {m['albedo_l1']:.4f} | "
                    f"{m['albedo_l1_baseline']:.4f} | {m['albedo_l1_class_draw']:.4f} | {100 * m['albedo_gain']:.1f} % | "
                    f"{100 * m['metallic_accuracy']:.1f} % | {m['roughness_mae']:.4f} | {sec:.2f} s |")
        print(rows[-1], flush=True)
    text = f"""# Omages material stage (B7), models side by side

Command: `python benchmarks/omages_materials.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}`

{m['n']} test shapes spread over the classes, ground-truth geometry in, {args.steps} DDIM steps, CFG 1, 1 CPU thread.
Goals: albedo L1 at least 20 % below the per-class-mean baseline, metallic accuracy >= 85 %, roughness MAE <= 0.15.
"class draw": the L1 of drawing each pixel's albedo from its class's train pixels, what a sampler with the right
colour distribution but no knowledge of the shape scores (the procedural materials are random per part).

| model | net | params | step | albedo L1 | class-mean L1 | class draw L1 | gain vs mean | metallic acc. | roughness MAE | s / shape |
|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    cli_main(main)
