#!/usr/bin/env python
"""Plot the loss curves of one or more training runs (their log.jsonl) into a PNG.

    python scripts/plot_log.py runs/sfs-cpu runs/sfs-cpu-b --keys loss --out sfs_loss.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise FileNotFoundError(f"no log.jsonl in {run}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or log.jsonl files), plotted end to end")
    p.add_argument("--keys", nargs="+", default=["loss"], help="logged quantities to plot")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    args = p.parse_args(argv)
    try:
        logs, offset = [], 0
        for run in args.runs:  # later runs (e.g. --init-from continuations) continue the step axis
            records = read_log(run)
            logs.append((run, [r["step"] + offset for r in records], records))
            offset += records[-1]["step"] if records else 0
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as err:
        print(f"plot_log: error: {err}", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data.io import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run, steps, records in logs:
        for key in args.keys:
            ys = [r.get(key) for r in records]
            ax.plot(steps, ys, label=f"{run.name}: {key}", lw=1)
    ax.set(xlabel="optimizer step", ylabel="value", yscale="log" if args.logy else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
