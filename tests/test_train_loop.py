"""The one training loop, end to end on the toy system: resume after SIGKILL is bitwise, 2 processes work,
bad input fails cleanly without touching existing results."""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, os.path.join(ROOT, "train_diffusion.py"), "--config", "configs/toy/tiny.json"]


def run(args, check=True, **kw):
    out = subprocess.run(TRAIN + args, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-2000:])
    return out


def losses(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_dry_run_prints_resolved_config():
    out = run(["--dry-run", "--set", "optim.lr=0.5"])
    assert json.loads(out.stdout)["optim"]["lr"] == 0.5


def test_sigkill_then_resume_is_bitwise(tmp_path):
    common = ["--save-every", "10", "--log-every", "1", "--no-demo", "--set", "train.steps=30"]
    run(["--out", str(tmp_path / "a")] + common)
    killed = run(["--out", str(tmp_path / "b"), "--_sigkill-at-step", "17"] + common, check=False)
    assert killed.returncode == -9
    assert [p.name for p in sorted((tmp_path / "b" / "checkpoints").iterdir())] == ["step_00000010"]
    (tmp_path / "b" / "checkpoints" / ".tmp").mkdir()  # debris of a kill in the middle of a save
    resumed = run(["--out", str(tmp_path / "b")] + common)
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 31))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert not (tmp_path / "b" / "checkpoints" / ".tmp").exists()


def test_loss_decreases_and_demo_written(tmp_path):
    run(["--out", str(tmp_path / "r"), "--save-every", "20", "--log-every", "5", "--set", "train.steps=60"])
    log = losses(tmp_path / "r")
    assert log[-1]["loss"] < log[0]["loss"]
    assert sorted(p.name for p in (tmp_path / "r" / "samples").iterdir())[-1] == "toy_s00000060.png"


def test_two_processes_on_cpu(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "train_diffusion.py", "--config", "configs/toy/tiny.json", "--out", str(tmp_path / "ddp"),
           "--save-every", "10", "--no-demo", "--set", "train.steps=20"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 process(es)" in out.stdout + out.stderr
    assert losses(tmp_path / "ddp")[-1]["step"] == 20
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_bad_input_exits_2_and_keeps_results(tmp_path):
    run(["--out", str(tmp_path / "r"), "--no-demo", "--set", "train.steps=5"])
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    other = run(["--out", str(tmp_path / "r"), "--set", "optim.lr=0.1"], check=False)
    assert other.returncode == 2 and "different config" in other.stderr and "optim.lr" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    for args, needle in [(["--set", "optim.nope=1"], "unknown key"), (["--set", "train.batch_size=7",
                                                                       "--batch-per-gpu", "2"], "not divisible")]:
        out = run(["--out", str(tmp_path / "x")] + args, check=False)
        assert out.returncode == 2 and needle in out.stderr


def test_init_from_export(tmp_path):
    run(["--out", str(tmp_path / "a"), "--no-demo", "--set", "train.steps=5", "optim.ema_decay=0"])
    out = run(["--out", str(tmp_path / "b"), "--no-demo", "--init-from", str(tmp_path / "a" / "model.safetensors"),
               "--set", "train.steps=1", "optim.lr=0", "optim.warmup_steps=0", "optim.ema_decay=0"])
    assert "initialised from" in out.stdout + out.stderr
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # lr 0: the weights are exactly the ones loaded
    bad = run(["--out", str(tmp_path / "c"), "--init-from", str(tmp_path / "a" / "config.json")], check=False)
    assert bad.returncode == 2 and "expected a .safetensors" in bad.stderr
