#!/usr/bin/env python
"""Omages geometry models side by side: the held-out x0 error at fixed noise levels. Each N2G model denoises the
same noised test shapes (same noise for every model) in one step; the error is the MSE of the clipped x0 estimate
over the 4 geometry channels. The high-noise levels (t >= 700) are the ones that decide the atlas layout.

    python benchmarks/omages_denoise.py --data-root data_cache/omages/proc1400 \
        --n2g ckpts/omages_n2g.safetensors runs/omages_n2g_unet16/model.safetensors

Writes benchmarks/results/omages_denoise.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.core.cli import Parser, cli_main, existing_file, int_at_least  # noqa: E402
from models.core.io import write_text  # noqa: E402

LEVELS = (5, 50, 200, 400, 700, 850, 950)


def x0_errors(system, x0, labels, levels, seed=0) -> list[float]:
    """MSE of the clipped one-step x0 estimate at each level t, noise drawn from `seed` (the same for every model)."""
    import torch

    from models.diffusion.parameterization import predict_x0_eps
    from models.diffusion.schedules import betas_to_alpha_bar

    abar = betas_to_alpha_bar(system.betas)
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in levels:
        eps = torch.randn(x0.shape, generator=g)
        alpha, sigma = abar[t].sqrt().float(), (1 - abar[t]).sqrt().float()
        x_t = alpha * x0 + sigma * eps
        with torch.no_grad():
            pred = system.net(x_t, torch.full((len(x0),), t), labels).float()[:, :x0.shape[1]]
        x0_hat, _ = predict_x0_eps(x_t, pred, alpha, sigma, system.cfg.diffusion.prediction)
        out.append(float((x0_hat.clamp(-1, 1) - x0).square().mean()))
    return out


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--n2g", nargs="+", required=True, help="N2G exports to compare")
    p.add_argument("--data-root", required=True)
    p.add_argument("--n", type=int_at_least(1), default=50, help="test shapes (every k-th of the test set)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "omages_denoise.md"))
    args = p.parse_args(argv)
    paths = [existing_file(g, "--n2g") for g in args.n2g]

    import torch

    from models.core.checkpoint import load_system

    torch.set_num_threads(1)
    rows = []
    for path in paths:
        s = load_system(path, expect="omages_n2g")
        ds = s.train_dataset("test", root=args.data_root)
        pick = range(0, len(ds), max(1, len(ds) // args.n))[:args.n]
        items = [ds[i] for i in pick]
        x0 = torch.stack([it["omage"][s.target] for it in items])
        labels = torch.stack([it["label"] for it in items]).long()
        errs = x0_errors(s, x0, labels, LEVELS)
        params = sum(v.numel() for v in s.exported_module().parameters())
        rows.append(f"| `{path}` | {s.cfg.arch} | {s.cfg.diffusion.prediction} | {params / 1e6:.2f} M | {s.step} | "
                    + " | ".join(f"{e:.4f}" for e in errs) + " |")
        print(rows[-1], flush=True)
    head = " | ".join(f"t = {t}" for t in LEVELS)
    text = f"""# Omages geometry models: held-out x0 error by noise level

Command: `python benchmarks/omages_denoise.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}`

{len(x0)} test shapes, the same noise for every model, one denoising step, MSE of the clipped x0 estimate over the
geometry channels (model space [-1, 1]). Class label given (no guidance).

| model | net | prediction | params | step | {head} |
|---|---|---|---|---|{'---|' * len(LEVELS)}
""" + "\n".join(rows) + "\n"
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    cli_main(main)
