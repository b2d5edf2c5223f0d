#!/usr/bin/env python
"""Iterations per second of each SfD stage (forward + backward + AdamW step), tiny and full-size networks, on the
analytic pile; with --profile, torch.profiler on each stage's iteration (top operators by self CPU time and the
counted matmul FLOPs, which project the GPU time).

    python benchmarks/sfd_stages.py --iters 3 --out benchmarks/results/sfd_stages.json
    python benchmarks/sfd_stages.py --profile --iters 2 --out benchmarks/results/sfd_profile.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from models.core.cli import Parser, cli_main, int_at_least, set_threads  # noqa: E402


def run(cfg_path, stage, batch, iters, sets=(), profile=False):
    from models.core.config import load_config
    from models.core.optim import build_optimizer
    from models.systems.sfd import SfdSystem

    cfg = load_config(cfg_path, [f"stage={stage}", "data.instances=3", "data.analytic_res=48", *sets])
    s = SfdSystem(cfg)
    ds = s.train_dataset()
    s.net.geo.fitted.fill_(1)
    s.net.vis.fitted.fill_(1)
    opt = build_optimizer(s, cfg.optim)
    times = []
    prof = None
    for i in range(iters + 1):
        if profile and i == 1:  # after the warm-up iteration
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True)
            prof.__enter__()
        keys = [((i * batch + j) % len(ds), j) for j in range(batch)]
        b = ds.get_batch(keys)
        b["seed"] = torch.arange(batch)
        t = time.perf_counter()
        loss, _ = s(b)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    sec = sum(times[1:]) / iters  # the first iteration warms up
    row = {"stage": stage, "config": Path(cfg_path).name, "batch": batch, "sec_per_iter": round(sec, 4),
           "iters_per_s": round(1 / sec, 3)}
    if prof is not None:
        prof.__exit__(None, None, None)
        ev = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ev)
        top = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:6]
        row["flops_per_iter"] = sum(e.flops for e in ev) / iters
        row["top_self_cpu"] = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in top]
    return row


def main(argv=None):
    p = Parser(description=__doc__)
    p.add_argument("--iters", type=int_at_least(1), default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--threads", type=int_at_least(1), default=1)
    p.add_argument("--profile", action="store_true", help="profile the cpu preset and the full Geo instead")
    args = p.parse_args(argv)
    set_threads(args.threads)
    root = Path(__file__).resolve().parents[1] / "configs/sfd"
    if args.profile:
        rows = [run(root / "cpu.json", st, 256, args.iters, profile=True) for st in ("geo", "vis", "mat")]
        rows.append(run(root / "geo.json", "geo", 128, args.iters, profile=True))
    else:
        rows = [run(root / "tiny.json", "geo", 128, args.iters), run(root / "tiny.json", "vis", 64, args.iters),
                run(root / "tiny.json", "mat", 64, args.iters),
                run(root / "tiny.json", "geo", 128, args.iters, ["sdf.kind=triplane"]),
                run(root / "geo.json", "geo", 128, args.iters), run(root / "vis.json", "vis", 64, args.iters),
                run(root / "mat.json", "mat", 64, args.iters)]
    for r in rows:
        print(json.dumps(r))
    if args.out:
        from data.io import write_text

        write_text(Path(args.out), json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main)
