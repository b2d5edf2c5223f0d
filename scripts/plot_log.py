#!/usr/bin/env python
"""Plot the loss curves of one or more training runs (their log.jsonl) into a PNG.

    python scripts/plot_log.py runs/sfs-cpu runs/sfs-cpu-b --keys loss --out sfs_loss.png

Later runs continue the step axis of earlier ones (e.g. --init-from continuations). An existing --out is refused
unless --overwrite; a missing or damaged log, or a key no run logged, is one line and exit status 2.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from models.core.cli import Parser, UserError, cli_main  # noqa: E402


def read_log(run: Path) -> list[dict]:
    """The records of <run>/log.jsonl (or of the .jsonl file given), each with an integer "step"."""
    path = run / "log.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise UserError(f"no log.jsonl in {run}")
    records = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read ({err})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{i}: not JSON ({err.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            raise UserError(f"{path}:{i}: a log record needs an integer 'step'")
        records.append(rec)
    if not records:
        raise UserError(f"{path}: no log records")
    return records


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def main(argv=None) -> int:
    p = Parser(prog="plot_log.py", description=__doc__)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (or log.jsonl files), plotted end to end")
    p.add_argument("--keys", nargs="+", default=["loss"], help="logged quantities to plot")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    args = p.parse_args(argv)

    from data.io import atomic_write, check_output_path

    check_output_path(args.out, "--out", folder=False)
    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out}: expected a .png file name")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"--out {args.out}: exists already (pick another name, or --overwrite)")
    logs, offset = [], 0
    for run in args.runs:  # later runs (e.g. --init-from continuations) continue the step axis
        records = read_log(run)
        logs.append((run, [r["step"] + offset for r in records], records))
        offset += records[-1]["step"]
    for key in args.keys:
        if not any(key in r for _, _, records in logs for r in records):
            raise UserError(f"--keys {key}: not logged in any of the runs")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        for run, steps, records in logs:
            for key in args.keys:
                ax.plot(steps, [_number(r.get(key)) for r in records], label=f"{run.name}: {key}", lw=1)
        ax.set(xlabel="optimizer step", ylabel="value", yscale="log" if args.logy else "linear")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with atomic_write(args.out) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
