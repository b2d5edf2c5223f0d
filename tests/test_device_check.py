"""The prepared device scripts (scripts/device_check.sh, scripts/omages_device_run.sh): valid bash, every step named on
both paths, and the CPU dry-run path runs every step to completion and leaves its main output."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# script, its steps, a file the dry run must leave (relative to the results folder), text that file must hold
SCRIPTS = [
    ("device_check.sh", ("tests_gpu", "attention", "diffmotion_step", "sfs_vcycle", "sfs_train"),
     "sfs_train/model.safetensors", None),
    ("omages_device_run.sh", ("dataset", "n2g", "g2m", "report"), "omages_generation.md", "B4 validity rate"),
]


@pytest.mark.parametrize("script,steps,_,__", SCRIPTS)
def test_script_parses_and_names_every_step(script, steps, _, __):
    path = ROOT / "scripts" / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text()
    assert all(text.count(f"step {name} ") == 2 for name in steps)  # one GPU and one dry-run line each


@pytest.mark.slow
@pytest.mark.parametrize("script,steps,product,text", SCRIPTS)
def test_dry_run_completes(tmp_path, script, steps, product, text):
    out = subprocess.run(["bash", str(ROOT / "scripts" / script), "--dry-run", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=900)
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert all(f"- {name}: exit 0" in summary for name in steps), summary + out.stderr[-2000:]
    assert (tmp_path / "r" / product).is_file()
    if text is not None:
        assert text in (tmp_path / "r" / product).read_text()
