#!/usr/bin/env python
"""Omages generation checks at a CPU-feasible size: generate every class at CFG 4 and at CFG 1 (same seeds), then
evaluate validity, distribution, statistics, classifier accuracy and the material stage against held-out shapes.

    python benchmarks/omages_generation.py --data-root data_cache/omages/proc1400 --per-class 4 --steps 25

Writes benchmarks/results/omages_generation.md, the CFG 4 grid beside it (.png), and the run folders under --work.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.core.cli import Parser, cli_main, existing_file, int_at_least  # noqa: E402
from models.core.io import atomic_write, write_text  # noqa: E402


def sh(*args) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=ROOT)


def shown(path) -> str:
    """A path as written in the report: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--n2g", default=str(ROOT / "ckpts" / "omages_n2g.safetensors"))
    p.add_argument("--g2m", default=str(ROOT / "ckpts" / "omages_g2m.safetensors"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--classes", default="chair,table,lamp,vase,shelf,mug,sofa,stool")
    p.add_argument("--per-class", type=int_at_least(1), default=4)
    p.add_argument("--steps", type=int_at_least(1), default=25)
    p.add_argument("--ref", type=int_at_least(2), default=64)
    p.add_argument("--material-n", type=int_at_least(1), default=16)
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (one CPU thread when cpu)")
    p.add_argument("--work", default=str(ROOT / "evals" / "bench_omages_generation"),
                   help="scratch folder; its cfg4/, cfg1/ and eval/ are replaced on every run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "omages_generation.md"))
    args = p.parse_args(argv)
    for path, what in ((args.n2g, "--n2g"), (args.g2m, "--g2m"), (Path(args.data_root) / "train_omages64.npy",
                        "--data-root"), (Path(args.data_root) / "test_omages64.npy", "--data-root")):
        existing_file(path, what)  # before anything is generated
    work = Path(args.work)
    for sub in ("cfg4", "cfg1", "eval"):  # a previous run's samples must not mix with this one's
        shutil.rmtree(work / sub, ignore_errors=True)
    common = ["--n2g", args.n2g, "--g2m", args.g2m, "--classes", args.classes, "--per-class", args.per_class,
              "--steps", args.steps, "--device", args.device] + (["--threads", "1"] if args.device == "cpu" else [])
    runs = {}
    for cfg in ("4", "1"):
        runs[cfg] = work / f"cfg{cfg}"
        sh("scripts/omages_generate.py", *common, "--cfg-scale", cfg, "--out", runs[cfg],
           "--no-sheets")  # per-sample sheets cost ~40 s each on this CPU; the grid is kept
    sh("scripts/omages_eval.py", "--gen", runs["4"], "--gen-cfg1", runs["1"], "--data-root", args.data_root,
       "--g2m", args.g2m, "--ref", args.ref, "--material-n", args.material_n, "--steps", args.steps,
       "--out", work / "eval", "--device", args.device, *(["--threads", "1"] if args.device == "cpu" else []))
    done = json.loads((runs["4"] / "COMPLETE.json").read_text())
    table = (work / "eval" / "report.md").read_text()
    grid = Path(args.out).with_suffix(".png")  # kept beside the report: the samples the numbers are about
    with atomic_write(grid) as tmp:
        shutil.copyfile(runs["4"] / "grid.png", tmp)
    text = f"""# Omages generation checks (B4-B7), CPU

Command: `python benchmarks/omages_generation.py {' '.join(sys.argv[1:] if argv is None else map(str, argv))}`

- N2G `{shown(args.n2g)}`, G2M `{shown(args.g2m)}`; data `{shown(args.data_root)}` (test split as reference)
- {done['n']} samples ({args.per_class} per class x {len(args.classes.split(','))} classes), {args.steps} DDIM steps
  for both stages, N2G CFG 4 (and a CFG 1 copy with the same seeds for the classifier check), G2M CFG 1
- reference: {args.ref} test shapes, floor: {args.ref} train shapes vs the same test shapes, 2,048 surface points;
  material check on {args.material_n} test shapes' GT geometry
- sampling: {done['seconds_per_object']:.2f} s per object (both stages, device {args.device}{', 1 thread' if args.device == 'cpu' else ''})
- these are far smaller than the 1,000-vs-1,000 sets the thresholds were set for: small sets bias MMD and FD upwards

{table}
Grid of the CFG 4 samples (one row per class; decoded GLBs in `{shown(runs['4'])}`):

![CFG 4 samples]({grid.name})
"""
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    cli_main(main)
