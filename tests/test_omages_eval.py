"""scripts/omages_eval.py end to end: a 2-family procedural set, N2G and G2M trained 2 steps on it through the
project's loop, generations at CFG 4 and 1, then the report (every check present, pass or fail, and COMPLETE last)."""
import json
import subprocess
import sys

import pytest

from cli_corpus import ROOT, assert_user_error, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("omages_eval")
    data = d / "data"
    res = run_cli("scripts/omages_dataset.py", "--out", data, "--families", "chair,vase", "--train-per-class", "2",
                  "--test-per-class", "2", "--workers", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = {}
    for name, cfg in (("n2g", "tiny.json"), ("g2m", "g2m_tiny.json")):
        res = subprocess.run([sys.executable, str(ROOT / "train_diffusion.py"), "--config",
                              str(ROOT / "configs" / "omages" / cfg), "--data-root", str(data), "--set",
                              "data.synthetic=0", "--out", str(d / name), "--cpu", "--no-demo"],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        ckpt[name] = d / name / "model.safetensors"
    gens = {}
    for cfg in ("4", "1"):
        gens[cfg] = d / f"gen{cfg}"
        res = run_cli("scripts/omages_generate.py", "--n2g", ckpt["n2g"], "--g2m", ckpt["g2m"], "--classes",
                      "chair,vase", "--per-class", "2", "--steps", "2", "--cfg-scale", cfg, "--no-sheets",
                      "--threads", "1", "--out", gens[cfg])
        assert res.returncode == 0, res.stderr[-2000:]
    return {"data": data, "gens": gens, **ckpt}


def test_eval_writes_every_check(setup, tmp_path):
    out = tmp_path / "eval"
    res = run_cli("scripts/omages_eval.py", "--gen", setup["gens"]["4"], "--gen-cfg1", setup["gens"]["1"],
                  "--data-root", setup["data"], "--g2m", setup["g2m"], "--ref", "4", "--material-n", "4",
                  "--steps", "2", "--points", "256", "--threads", "1", "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["n_gen"] == 4 and report["n_ref"] == 4
    assert 0.0 <= report["validity_rate"] <= 1.0
    assert report["material"]["n"] == 4 and report["material"]["albedo_l1_baseline"] > 0
    names = " ".join(v["check"] for v in report["verdicts"])
    for check in ("B4", "B5", "B6", "B7"):
        assert check in names, names
    assert all(isinstance(v["pass"], bool) for v in report["verdicts"])
    assert (out / "report.md").is_file() and (out / "COMPLETE.json").is_file()


def test_eval_refuses_classes_missing_from_the_data(setup, tmp_path):
    """Generated 'chair'/'vase' against a data root holding only other classes: one line, exit 2, nothing written."""
    other = tmp_path / "other"
    res = run_cli("scripts/omages_dataset.py", "--out", other, "--families", "mug", "--train-per-class", "1",
                  "--test-per-class", "1", "--workers", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "eval"
    assert_user_error("scripts/omages_eval.py", ["--gen", setup["gens"]["4"], "--data-root", other, "--out", out],
                      watch=tmp_path, mentions="not in the dataset")
    assert not out.exists()
