#!/usr/bin/env python
"""The loop trains the same run however the global batch is split: 1 process vs gradient accumulation vs 2 gloo
processes (toy system, 40 steps, batch 32, no EMA). Prints the max weight and loss differences to the 1 x 32 run.

    python benchmarks/loop_equivalence.py --out /tmp/loop_eq
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from models.core.cli import Parser, cli_main, fresh_output_dir

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {  # name -> (processes, --batch-per-gpu)
    "1x32": (1, None), "1x16x2acc": (1, 16), "1x8x4acc": (1, 8), "2x16": (2, None), "2x8x2acc": (2, 8)}


def train(out: Path, procs: int, micro: int | None, steps: int) -> None:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(procs),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "29541"] if procs > 1 else [sys.executable]
    cmd = launch + [str(ROOT / "train_diffusion.py"), "--config", "configs/toy/tiny.json", "--no-demo", "--out",
                    str(out), "--save-every", "1000", "--log-every", "1", "--set", f"train.steps={steps}",
                    "optim.ema_decay=0"] + (["--batch-per-gpu", str(micro)] if micro else [])
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)


def main(argv=None):
    from safetensors.torch import load_file

    p = Parser(description=__doc__)
    p.add_argument("--out", required=True, help="empty or new folder for the runs")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args(argv)
    out = fresh_output_dir(args.out)
    for name, (procs, micro) in SPLITS.items():
        train(out / name, procs, micro, args.steps)
    ref = load_file(str(out / "1x32" / "model.safetensors"))
    ref_loss = [json.loads(x)["loss"] for x in (out / "1x32" / "log.jsonl").read_text().splitlines()]
    print("| split | max abs weight diff | max abs loss diff |\n|---|---|---|")
    for name in list(SPLITS)[1:]:
        w = load_file(str(out / name / "model.safetensors"))
        loss = [json.loads(x)["loss"] for x in (out / name / "log.jsonl").read_text().splitlines()]
        dw = max((w[k] - ref[k]).abs().max().item() for k in ref)
        dl = max(abs(a - b) for a, b in zip(loss, ref_loss))
        print(f"| {name} | {dw:.2e} | {dl:.2e} |")
    return 0


if __name__ == "__main__":
    cli_main(main)
