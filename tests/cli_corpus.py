"""Shared check for the bad-input corpus: a CLI given a bad input exits 2 with one line and writes nothing.

Each system's test file keeps its own table of rows and calls `assert_user_error` on each.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> set[str]:
    """Every path below `folder` (relative), to prove that nothing was written."""
    folder = Path(folder)
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def run_cli(script: str, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def assert_user_error(script: str, args: list, *, watch: Path, mentions: str | None = None,
                      cwd: Path | None = None) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line naming `mentions`, no traceback, `watch` unchanged."""
    before = snapshot(watch)
    res = run_cli(script, *args, cwd=cwd)
    err_lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    # tqdm or warnings must not hide the error: the last line is the message, and it is the only "error" line
    assert res.returncode == 2, f"{script} {args}: exit {res.returncode}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr, f"{script} {args}: traceback\n{res.stderr[-2000:]}"
    errors = [ln for ln in err_lines if "error" in ln.lower()]
    assert len(errors) == 1, f"{script} {args}: expected one error line, got\n{res.stderr[-2000:]}"
    if mentions is not None:
        assert mentions.lower() in errors[0].lower(), f"{script} {args}: {errors[0]!r} does not mention {mentions!r}"
    after = snapshot(watch)
    assert after == before, f"{script} {args}: wrote {sorted(after - before)[:5]}"
    return errors[0]
