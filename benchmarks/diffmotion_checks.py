#!/usr/bin/env python
"""Learning, diversity and timing checks of a trained DiffMotion checkpoint -> markdown + JSON report.

    python benchmarks/diffmotion_checks.py --ckpt runs/diffmotion-cpu64/model.safetensors \
        --held-out data/diffmotion64/held_out --train data/diffmotion64/train \
        --out benchmarks/results/diffmotion_checks.md
    ... --max-clips 8 --seeds 0-7 --steps 50 --device cuda --threads 2 --batch 17

What is measured, and against which baselines, is described in models/diffmotion/checks.py (the library this command
runs). Writes <out> and <out>.json atomically; an existing report is replaced only with --overwrite.
"""
from __future__ import annotations

import dataclasses
import datetime
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.io import check_output_path  # noqa: E402
from data.motion import MotionDataset  # noqa: E402
from models import load_system  # noqa: E402
from models.core.checkpoint import read_metadata  # noqa: E402
from models.core.cli import (Parser, UserError, cli_main, existing_file, int_at_least, resolve_device,  # noqa: E402
                             seed_list, set_threads)
from models.diffmotion import checks as C  # noqa: E402


def parse_args(argv):
    p = Parser(description=__doc__)
    p.add_argument("--ckpt", required=True, help="exported diffmotion .safetensors")
    p.add_argument("--held-out", help="held-out dataset root (default: the checkpoint config's data.held_out_root)")
    p.add_argument("--train", help="training dataset root for the baselines (default: the config's data.root)")
    p.add_argument("--out", default="benchmarks/results/diffmotion_checks.md", help="markdown report; .json next to it")
    p.add_argument("--max-clips", type=int_at_least(0), default=0, help="N evenly spaced held-out clips (0 = all)")
    p.add_argument("--seeds", type=seed_list, default="0-7", help="seeds of the diversity check (8 assumed by its "
                   "thresholds); the learning check always uses seed 0")
    p.add_argument("--steps", type=int_at_least(1), default=None, help="DDIM steps (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--batch", type=int_at_least(0), default=0, help="max samples per sampler call (0 = all 2K+1 of a "
                   "clip at once)")
    p.add_argument("--timing-seeds", type=int_at_least(0), default=10, help="seeds in the timing batch (0 = skip)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report at --out")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    out = check_output_path(args.out, "--out", folder=False)
    if out.suffix.lower() != ".md":
        raise UserError(f"--out {out}: expected a markdown file name (.md); the JSON goes next to it")
    if not args.overwrite and (out.exists() or out.with_suffix(".json").exists()):
        raise UserError(f"--out {out}: a report exists already (pick another name, or --overwrite)")
    ckpt = existing_file(args.ckpt, "checkpoint")
    system = load_system(ckpt, device=device, expect="diffmotion")
    cfg = system.cfg
    steps = args.steps or cfg.diffusion.sampling_steps
    data_cfg = dataclasses.replace(cfg.data, augment_held_out=False)  # the learning check: no augmentation
    held_root, train_root = args.held_out or data_cfg.held_out_root, args.train or data_cfg.root
    try:
        held = MotionDataset(data_cfg, split="held_out", root=held_root)
        train = MotionDataset(data_cfg, split="train", root=train_root)
    except (FileNotFoundError, KeyError) as err:
        raise UserError(str(err)) from None
    try:
        result = C.evaluate(system, held, train, args.seeds, steps, args.batch, args.max_clips, args.timing_seeds,
                            progress=not args.no_progress)
    except ValueError as err:  # no moving clip in the held-out set
        raise UserError(f"{held_root}: {err}") from None
    if not args.held_out or not args.train:
        result["notes"].append("data roots taken from the checkpoint config where not given on the command line")
    base = result["baselines"]
    info = {"command": "python " + shlex.join(["benchmarks/diffmotion_checks.py"] + argv),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "hardware": C.hardware(device), "ckpt": str(ckpt),
            "checkpoint": C.checkpoint_summary(system, read_metadata(ckpt)), "held_out": str(held_root),
            "train": str(train_root), "clips": len(result["per_clip"]), "clips_total": len(held),
            "train_frames": int(base["frames"]), "train_fg_share": float(base["fg_share"]), "steps": steps,
            "seeds": args.seeds, "net_calls": result["net_calls"], "net_samples": result["net_samples"],
            "eval_seconds": result["eval_seconds"]}
    md, js = C.write_report(args.out, info, result, cfg)
    for r in result["rows"]:
        res = "n/a" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        print(f"[{r['section']}] {r['check']}: {C.fmt(r['value'], r['unit'])} ({r['rule']}) {res}")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    cli_main(main)
