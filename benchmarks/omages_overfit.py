#!/usr/bin/env python
"""Omages overfit check: train N2G on 8 shapes (one per class), then measure the training objective's eps MSE on those
8 shapes (EMA export) and how close one sample per class decodes to its nearest training shape (CD-L1 / bbox diagonal).

    python scripts/omages_dataset.py --out data_cache/omages/overfit8 --train-per-class 1 --test-per-class 1
    python benchmarks/omages_overfit.py --data-root data_cache/omages/overfit8 --train-steps 2000

Writes benchmarks/results/omages_overfit.md (the run folder is --work; rerunning resumes the training).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.core.cli import Parser, cli_main, existing_file, int_at_least  # noqa: E402
from models.core.io import write_text  # noqa: E402

MSE_GOAL, CD_GOAL = 0.02, 1e-2


def objective_mse(system, dataset, draws: int) -> float:
    """Mean of the training MSE (of the eps or v output) over `draws` (t, eps, label-dropout) draws per shape, fixed seeds."""
    import torch

    items = [dataset[i] for i in range(len(dataset))]
    batch = {"omage": torch.stack([it["omage"] for it in items]), "label": torch.stack([it["label"] for it in items])}
    with torch.no_grad():
        vals = [float(system({**batch, "seed": torch.arange(len(items)) + 1000 * d})[1]["mse"]) for d in range(draws)]
    return sum(vals) / len(vals)


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--data-root", required=True, help="an 8-shape omages_dataset.py folder")
    p.add_argument("--config", default="configs/omages/n2g_cpu.json")
    p.add_argument("--train-steps", type=int_at_least(1), default=2000)
    p.add_argument("--steps", type=int_at_least(1), default=100, help="sampling steps")
    p.add_argument("--draws", type=int_at_least(1), default=64)
    p.add_argument("--work", default=str(ROOT / "runs" / "omages_overfit8"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "omages_overfit.md"))
    args = p.parse_args(argv)
    existing_file(Path(args.data_root) / "train_omages64.npy", "--data-root")  # before anything is trained

    import numpy as np
    import torch

    from models.core.checkpoint import load_system
    from models.omages import format as fmt
    from models.omages.decode import decode
    from models.omages.metrics import surface_errors
    from models.omages.pipeline import assemble, clean_geometry, sample_geometry

    torch.set_num_threads(1)
    train = [sys.executable, "train_diffusion.py", "--config", args.config, "--data-root", args.data_root,
             "--out", args.work, "--cpu", "--no-demo", "--save-every", "500", "--log-every", "100",
             "--set", f"train.steps={args.train_steps}", "train.batch_size=8", "optim.warmup_steps=50"]
    print("+", " ".join(train), flush=True)
    subprocess.run(train, check=True, cwd=ROOT)

    n2g = load_system(Path(args.work) / "model.safetensors", expect="omages_n2g")
    dataset = n2g.train_dataset("train", root=args.data_root)
    mse = objective_mse(n2g, dataset, args.draws)

    labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    gt = [decode(fmt.clean(np.asarray(dataset.array[r], np.float32) / fmt.UINT16_MAX)) for r in dataset.rows]
    raw = sample_geometry(n2g, labels, seeds=list(range(len(labels))), steps=args.steps, sampler="ddpm")
    rows, nearest_ok = [], 0
    for k, g in enumerate(clean_geometry(raw)):
        _, mesh = assemble(g, np.zeros((5,) + g.shape[1:], np.float32))
        cds = [surface_errors(mesh.vertices, mesh.faces, m.vertices, m.faces, n=4000)["cd_rel"] for m in gt]
        j = int(np.argmin(cds))
        nearest_ok += cds[j] < CD_GOAL
        rows.append(f"| {n2g.class_names[labels[k]]} | {len(mesh.faces)} | {dataset.records[dataset.rows[j]]['class']} "
                    f"| {cds[j]:.2e} | {cds[k]:.2e} |")
    ok = mse < MSE_GOAL and nearest_ok == len(labels)
    text = f"""# Omages B3: overfit N2G on 8 shapes

Command: `python benchmarks/omages_overfit.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}`
(config `{args.config}` with train.steps={args.train_steps}, batch 8 = the whole set, CPU, 1 thread)

- {n2g.cfg.diffusion.prediction} MSE of the training objective on the 8 shapes (EMA export, {args.draws} draws each): **{mse:.4f}**
  (goal < {MSE_GOAL}): {'pass' if mse < MSE_GOAL else 'FAIL'}
- one sample per class ({args.steps} DDPM steps, CFG {n2g.cfg.diffusion.cfg_scale:g}): {nearest_ok}/{len(labels)} decode
  within CD-L1/diag < {CD_GOAL:g} of their nearest training shape: {'pass' if nearest_ok == len(labels) else 'FAIL'}
- B3 overall: **{'pass' if ok else 'FAIL'}**

| class asked | faces | nearest training shape | CD-L1/diag to it | CD-L1/diag to its own class's shape |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    cli_main(main)
