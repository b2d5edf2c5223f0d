"""scripts/device_check.sh: valid bash, and its CPU dry-run path runs every step to completion."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"
STEPS = ("tests_gpu", "attention", "diffmotion_step", "sfs_vcycle", "sfs_train")


def test_script_parses_and_names_every_step():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    text = SCRIPT.read_text()
    assert all(text.count(f"step {name} ") == 2 for name in STEPS)  # one GPU and one dry-run line each


@pytest.mark.slow
def test_dry_run_completes(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path / "r")], capture_output=True, text=True,
                         timeout=900)
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert all(f"- {name}: exit 0" in summary for name in STEPS), summary + out.stderr[-2000:]
    assert (tmp_path / "r" / "sfs_train" / "model.safetensors").is_file()


OMAGES = ROOT / "scripts" / "omages_device_run.sh"
OMAGES_STEPS = ("dataset", "n2g", "g2m", "report")


def test_omages_script_parses_and_names_every_step():
    assert subprocess.run(["bash", "-n", str(OMAGES)]).returncode == 0
    text = OMAGES.read_text()
    assert all(text.count(f"step {name} ") == 2 for name in OMAGES_STEPS)


@pytest.mark.slow
def test_omages_dry_run_completes(tmp_path):
    out = subprocess.run(["bash", str(OMAGES), "--dry-run", str(tmp_path / "r")], capture_output=True, text=True,
                         timeout=900)
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert all(f"- {name}: exit 0" in summary for name in OMAGES_STEPS), summary + out.stderr[-2000:]
    assert "B4 validity rate" in (tmp_path / "r" / "omages_generation.md").read_text()
