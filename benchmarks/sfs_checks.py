#!/usr/bin/env python
"""Model checks B1-B8 for a trained SfS checkpoint -> report.md + report.json.

    python benchmarks/sfs_checks.py --ckpt ckpts/sfs.safetensors                 # GPU: vcycle160, 16 seeds
    python benchmarks/sfs_checks.py --ckpt ckpts/sfs.safetensors --fast          # CPU: fast preset, fewer seeds/maps

The checks and their thresholds are described in models/sfs/checks.py (the library this command runs). Stimuli come
from --stimuli (default test_data/sfs), held-out maps are generated in memory. In --fast mode the thresholds are
reported but the run is too small to be conclusive; the report says so.
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from models import load_system  # noqa: E402
from models.core.cli import (Parser, UserError, cli_main, existing_file, fresh_output_dir, int_at_least,  # noqa: E402
                             new_run_dir, resolve_device, set_threads)
from data.io import check_output_path  # noqa: E402
from models.core.io import write_text  # noqa: E402
from models.sfs.checks import run_checks  # noqa: E402
from models.sfs.vcycle import load_schedule  # noqa: E402
from models.systems.sfs import load_stimuli  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--ckpt", default=str(ROOT / "ckpts" / "sfs.safetensors"), help="exported sfs .safetensors")
    p.add_argument("--stimuli", default=str(ROOT / "test_data" / "sfs"), help="folder with a stimuli.json")
    p.add_argument("--out", help="report folder (default evals/<date>_sfs_checks[-k], never reused)")
    p.add_argument("--fast", action="store_true", help="CPU-sized run: fast preset, 8 seeds, few held-out maps")
    p.add_argument("--schedule", help="schedule preset or JSON (default vcycle160, or fast with --fast)")
    p.add_argument("--seeds", type=int_at_least(1), help="seeds per ambiguous stimulus (default 16, 8 with --fast)")
    p.add_argument("--heldout", type=int_at_least(4), help="held-out maps for B1/B2/B3 (default 32, 4 with --fast)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 autocast (CUDA only)")
    p.add_argument("--threads", type=int_at_least(1), help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    stimuli_json = existing_file(Path(args.stimuli) / "stimuli.json", "stimuli list")
    try:
        sched = load_schedule(args.schedule or ("fast" if args.fast else "vcycle160"))
    except (ValueError, OSError) as err:
        raise UserError(f"--schedule {args.schedule}: {str(err).strip().splitlines()[0][:300]}") from None
    try:
        stimuli = load_stimuli(stimuli_json.parent)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # a damaged stimuli.json
        raise UserError(f"{stimuli_json}: not a usable stimuli list ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''})") from None
    check_output_path(args.out or ROOT / "evals", "--out")
    if args.out and Path(args.out).is_dir() and any(Path(args.out).iterdir()):
        raise UserError(f"--out {args.out}: folder is not empty (pick another)")
    system = load_system(existing_file(args.ckpt, "checkpoint"), device=device, expect="sfs")
    out = fresh_output_dir(args.out) if args.out else new_run_dir(ROOT / "evals", "sfs_checks")
    rep = run_checks(system, stimuli, sched, args.seeds or (8 if args.fast else 16),
                     args.heldout or (4 if args.fast else 32), device, args.precision, args.fast)
    header = (f"# SfS checks B1-B8\n\ncheckpoint `{args.ckpt}` (step {getattr(system, 'step', '?')}), "
              f"{datetime.datetime.now():%Y-%m-%d %H:%M}")
    write_text(out / "report.md", rep.markdown(header))
    write_text(out / "report.json", json.dumps({"rows": rep.rows, "notes": rep.notes}, indent=2))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    cli_main(main)
