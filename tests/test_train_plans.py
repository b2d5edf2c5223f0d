"""Run plans (--dry-run) under the shipped accelerate configs, gradient checkpointing and --compile."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def train(args, env=None, launch=None, check=True):
    cmd = [sys.executable] + (["-m", "accelerate.commands.launch"] + launch if launch else []) + \
        [str(ROOT / "train_diffusion.py")] + [str(a) for a in args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(ENV, **(env or {})))
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def plan(out):
    return json.loads(out.stdout[out.stdout.index("{"):])["plan"]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "scripts" / "accelerate").glob("*.yaml")))
def test_accelerate_configs_are_valid_and_portable(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ROOT / "scripts" / "accelerate" / name))
    assert cfg.num_processes >= 1
    assert getattr(cfg, "gpu_ids", None) in (None, "all")  # no machine-specific GPU ids


def test_fsdp_config_is_honoured_by_the_plan():
    out = train(["--config", "configs/diffmotion/tiny.json", "--dry-run", "--grad-ckpt"],
                launch=["--config_file", "scripts/accelerate/fsdp_8gpu_bf16.yaml", "--num_processes", "1"])
    p = plan(out)
    assert (p["backend"], p["precision"], p["grad_ckpt"]) == ("fsdp", "bf16", True)


def test_deepspeed_plan_and_batch_split():
    # what `accelerate launch --config_file scripts/accelerate/deepspeed_zero2_bf16.yaml` exports (deepspeed itself
    # is not installed on the CPU test machines)
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2",
           "ACCELERATE_MIXED_PRECISION": "bf16", "WORLD_SIZE": "8"}
    p = plan(train(["--config", "configs/diffmotion/nattn_mid.json", "--dry-run", "--batch-per-gpu", "4"], env=env))
    assert (p["backend"], p["deepspeed_zero_stage"], p["precision"]) == ("deepspeed", "2", "bf16")
    assert (p["global_batch"], p["processes"], p["batch_per_gpu"], p["grad_accum"]) == (64, 8, 4, 2)
    assert p["parameters"] == 100_292_681 == p["trainable"]  # built on the meta device: no memory, exact count


def test_grad_ckpt_refused_where_a_system_has_none(tmp_path):
    out = train(["--config", "configs/toy/tiny.json", "--dry-run", "--grad-ckpt"], check=False)
    assert out.returncode == 2 and "no gradient checkpointing" in out.stderr


def test_grad_ckpt_trains_the_same(tmp_path, motion_root):
    common = ["--config", "configs/diffmotion/tiny.json", "--data-root", motion_root, "--no-demo", "--log-every", "1",
              "--set", "train.steps=2", "net.dropouts=[0,0,0,0]"]
    train(common + ["--out", tmp_path / "a"])
    train(common + ["--out", tmp_path / "b", "--grad-ckpt"])
    la, lb = ([json.loads(x)["loss"] for x in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in "ab")
    assert la == pytest.approx(lb, abs=1e-5)


@pytest.mark.slow
def test_compile_trains_uvit3d(tmp_path, motion_root):
    """torch.compile of the UViT3D: the gather attention runs eagerly (graph break), the rest is compiled."""
    out = train(["--config", "configs/diffmotion/tiny.json", "--data-root", motion_root, "--no-demo", "--compile",
                 "--out", tmp_path / "c", "--log-every", "1", "--set", "train.steps=2"])
    assert (tmp_path / "c" / "model.safetensors").is_file(), out.stderr[-2000:]
