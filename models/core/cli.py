"""One convention for every entry script: one user-error type, shared runtime flags, run folders that never mix.

    from models.core.cli import Parser, UserError, cli_main, add_runtime_flags

    def main(argv=None):
        p = Parser(description=__doc__)
        add_runtime_flags(p)                 # --device --precision --seeds --threads
        args = p.parse_args(argv)
        device = resolve_device(args.device); set_threads(args.threads)
        ...
    if __name__ == "__main__":
        cli_main(main)

A `UserError` (bad flag, bad file, bad config) prints one line `<prog>: error: ...` and exits 2. Anything else is a bug
and keeps its traceback. Argument-parser errors are one line too (no usage dump).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path
from typing import Callable


class UserError(Exception):
    """A mistake of the caller (flag, input file, config, checkpoint): reported as one line, exit code 2."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or dataset that is not there (still a FileNotFoundError for library callers)."""


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return " ".join(lines)[:500] if lines else "unknown error"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit 2 (argparse prints a usage block first)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {_one_line(message)}\n")
        sys.exit(2)


def cli_main(main: Callable[..., int | None], argv=None) -> None:
    """Run `main(argv)` and exit: UserError -> one line + 2, Ctrl-C -> 130, bugs keep their traceback."""
    prog = Path(sys.argv[0]).name
    try:
        rc = main(argv)
    except UserError as err:
        sys.stderr.write(f"{prog}: error: {_one_line(err)}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        sys.exit(130)
    sys.exit(int(rc or 0))


# ----------------------------------------------------------------------------------------------- argparse types
def int_at_least(lo: int) -> Callable[[str], int]:
    """argparse type: an integer >= lo."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value

    parse.__name__ = f"int>={lo}"
    return parse


def finite_float(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite float, optionally bounded (lo exclusive when lo_open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {value}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {value}")
        return value

    parse.__name__ = "number"
    return parse


def seed_list(text: str) -> list[int]:
    """argparse type: '0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    from models.core.seeding import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


PRECISIONS = ("fp32", "bf16", "fp16")


def add_runtime_flags(p: argparse.ArgumentParser, *, seeds: str | None = "0-9", device: bool = True,
                      precision: bool = True, threads: bool = True) -> None:
    """The flags every inference script shares: --device, --precision, --seeds, --threads."""
    if device:
        p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    if precision:
        p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="network autocast dtype (bf16 on GPU)")
    if seeds is not None:
        p.add_argument("--seeds", type=seed_list, default=seed_list(seeds), help=f"e.g. 0-9 or 0,3,5-7 (default {seeds})")
    if threads:
        p.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads for torch (default: torch's)")


def resolve_device(text: str | None):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; UserError for anything else or a missing GPU."""
    import torch

    text = (text or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {text!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {text}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def set_threads(n: int | None) -> None:
    import torch

    if n is not None:
        if n < 1:
            raise UserError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def autocast_dtype(precision: str):
    """'fp32' -> None, 'bf16' / 'fp16' -> the torch dtype."""
    import torch

    table = {"fp32": None, "no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        raise UserError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return table[precision]


# ------------------------------------------------------------------------------------------------ input checks
def existing_file(path: str | Path, what: str = "input") -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} is not a file: {path}")
    return path


def check_finite(arr, what: str) -> None:
    """UserError when an input array holds NaN or Inf (they would silently poison every output)."""
    import numpy as np

    a = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
    if a.size and not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise UserError(f"{what}: {bad} of {a.size} values are NaN or Inf")


# ------------------------------------------------------------------------------------------------- run folders
COMPLETE = "COMPLETE.json"  # written last: a folder without it is an interrupted (partial) run


def output_parent(path: str | Path, flag: str = "--out-dir") -> Path:
    """A folder that may hold run folders: created if missing; UserError if it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    return path


def new_run_dir(parent: str | Path, name: str, flag: str = "--out-dir") -> Path:
    """Create and return a fresh `<parent>/<date>_<name>[-k]` folder; never reuses one (mkdir is the lock)."""
    parent = output_parent(parent, flag)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    stem = f"{datetime.date.today().isoformat()}_{safe}"
    for k in range(1, 10_000):
        path = parent / (stem if k == 1 else f"{stem}-{k}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(f"{flag} {parent}: cannot create a run folder ({err.strerror})") from None
    raise UserError(f"{flag} {parent}: too many runs named {stem}")


def fresh_output_dir(path: str | Path, flag: str = "--out", overwrite: bool = False) -> Path:
    """An explicit output folder: must not hold a previous result unless `overwrite`; UserError if it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(f"{flag} {path}: folder is not empty (pick another, or pass --overwrite)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def mark_complete(folder: str | Path, **info) -> Path:
    """Write the completion marker (last step of a run)."""
    from models.core.io import write_text

    info = {"finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **info}
    return write_text(Path(folder) / COMPLETE, json.dumps(info, indent=2) + "\n")


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def require_complete(folder: str | Path) -> Path:
    """UserError unless `folder` is a finished run (e.g. before analysing it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"not a run folder: {folder}")
    if not is_complete(folder):
        raise UserError(f"{folder}: run is incomplete (no {COMPLETE}; interrupted?) - rerun it first")
    return folder


__all__ = ["UserError", "MissingInputError", "Parser", "cli_main", "int_at_least", "finite_float", "seed_list", "add_runtime_flags",
           "resolve_device", "set_threads", "autocast_dtype", "existing_file", "check_finite", "new_run_dir",
           "fresh_output_dir", "output_parent", "mark_complete", "is_complete", "require_complete", "COMPLETE"]
