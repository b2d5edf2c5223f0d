"""The one training loop, end to end on the toy system: it trains what it says (accumulation, processes, workers and
precision do not change the run), resume is bitwise, and faults (kills, clashes, bad flags, planted pickles) neither
lose nor corrupt anything."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(ROOT / "train_diffusion.py"), "--config", "configs/toy/tiny.json", "--no-demo"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run(args, check=True, cmd=TRAIN):
    out = subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    if check and out.returncode != 0:
        raise AssertionError(out.stderr[-3000:])
    return out


def log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def weights(path):
    return load_file(str(path))


def meta(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def close(a, b, tol):
    return all(torch.allclose(a[k], b[k], atol=tol, rtol=0) for k in a) and a.keys() == b.keys()


def test_dry_run_prints_config_and_plan():
    out = run(["--dry-run", "--set", "optim.lr=0.5", "--batch-per-gpu", "8"])
    info = json.loads(out.stdout)
    assert info["config"]["optim"]["lr"] == 0.5
    assert info["plan"]["grad_accum"] == 4 and info["plan"]["trainable"] == info["plan"]["parameters"] > 0


def test_sigkill_then_resume_is_bitwise(tmp_path):
    common = ["--save-every", "10", "--log-every", "1", "--set", "train.steps=30"]
    run(["--out", tmp_path / "a"] + common)
    killed = run(["--out", tmp_path / "b", "--_sigkill-at-step", "17"] + common, check=False)
    assert killed.returncode == -9
    assert [p.name for p in sorted((tmp_path / "b" / "checkpoints").glob("step_*"))] == ["step_00000010"]
    (tmp_path / "b" / "checkpoints" / ".tmp-00000020-dead").mkdir()  # debris of a kill in the middle of a save
    resumed = run(["--out", tmp_path / "b"] + common)
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = log(tmp_path / "a"), log(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 31))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = weights(tmp_path / "a" / "model.safetensors"), weights(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list((tmp_path / "b" / "checkpoints").glob(".tmp-*"))


def test_accumulation_matches_one_big_batch(tmp_path):
    """AdamW must step once per global batch: accum 4 x 8 == 1 x 32 (up to summation order)."""
    common = ["--save-every", "100", "--log-every", "1", "--set", "train.steps=12", "optim.ema_decay=0"]
    run(["--out", tmp_path / "one"] + common)
    run(["--out", tmp_path / "acc"] + common + ["--batch-per-gpu", "8"])
    w1, w4 = weights(tmp_path / "one" / "model.safetensors"), weights(tmp_path / "acc" / "model.safetensors")
    assert close(w1, w4, 1e-5)
    l1, l4 = log(tmp_path / "one"), log(tmp_path / "acc")
    assert all(abs(a["loss"] - b["loss"]) < 1e-5 for a, b in zip(l1, l4))
    # and it is not a no-op: the weights moved from their initialisation by far more than the tolerance
    run(["--out", tmp_path / "init", "--set", "train.steps=1", "optim.lr=0", "optim.ema_decay=0"])
    w_init = weights(tmp_path / "init" / "model.safetensors")
    assert max((w1[k] - w_init[k]).abs().max().item() for k in w1) > 1e-2


def test_two_processes_equal_one(tmp_path):
    common = ["--save-every", "100", "--log-every", "1", "--set", "train.steps=8", "optim.ema_decay=0"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "29517", str(ROOT / "train_diffusion.py"), "--config", "configs/toy/tiny.json", "--no-demo"]
    out = run(["--out", tmp_path / "ddp"] + common, cmd=launch)
    assert "2 process(es)" in out.stdout + out.stderr
    run(["--out", tmp_path / "one"] + common)
    w1, w2 = weights(tmp_path / "one" / "model.safetensors"), weights(tmp_path / "ddp" / "model.safetensors")
    assert close(w1, w2, 1e-5)
    assert all(abs(a["loss"] - b["loss"]) < 1e-5 for a, b in zip(log(tmp_path / "one"), log(tmp_path / "ddp")))


def test_workers_and_bf16(tmp_path):
    common = ["--save-every", "100", "--log-every", "1", "--set", "train.steps=6"]
    run(["--out", tmp_path / "w0"] + common)
    run(["--out", tmp_path / "w2", "--num-workers", "2"] + common)
    assert [r["loss"] for r in log(tmp_path / "w0")] == [r["loss"] for r in log(tmp_path / "w2")]
    out = run(["--out", tmp_path / "bf16", "--precision", "bf16"] + common)
    assert "precision bf16" in out.stdout + out.stderr
    bf, fp = log(tmp_path / "bf16"), log(tmp_path / "w0")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in bf)
    assert bf[0]["loss"] != fp[0]["loss"] and abs(bf[0]["loss"] - fp[0]["loss"]) < 0.05  # autocast ran, close


def test_init_from_lineage_and_key_map(tmp_path):
    run(["--out", tmp_path / "a", "--set", "train.steps=5", "optim.ema_decay=0"])
    parent = tmp_path / "a" / "model.safetensors"
    out = run(["--out", tmp_path / "b", "--init-from", parent, "--set", "train.steps=1", "optim.lr=0",
               "optim.warmup_steps=0", "optim.ema_decay=0"])
    assert "initialised from" in out.stdout + out.stderr
    wa, wb = weights(parent), weights(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # lr 0: exactly the loaded weights
    m = meta(tmp_path / "b" / "model.safetensors")
    assert m["step"] == "1" and m["total_steps"] == "6"
    assert json.loads(m["lineage"])[0]["ckpt"] == str(parent)
    first = next(iter(wa)).split(".")[0] + "."
    run(["--out", tmp_path / "c", "--init-from", parent, "--init-map", f"{first}={first}", "--set",
         "train.steps=1", "optim.lr=0", "optim.warmup_steps=0", "optim.ema_decay=0"])
    wc = weights(tmp_path / "c" / "model.safetensors")
    assert all(torch.equal(wa[k], wc[k]) == k.startswith(first) for k in wa)
    bad = run(["--out", tmp_path / "d", "--init-from", parent, "--init-map", "nope.=x."], check=False)
    assert bad.returncode == 2 and "selects no keys" in bad.stderr and not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------------------ faults and bad input
def test_planted_pickles_never_run(tmp_path):
    run(["--out", tmp_path / "r", "--save-every", "5", "--set", "train.steps=10"])
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    newest = tmp_path / "r" / "checkpoints" / "step_00000010"
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin"):
        (newest / name).write_bytes(pickle.dumps(Evil()))
    (tmp_path / "r" / "model.safetensors").unlink()  # force the resumed run to do work
    out = run(["--out", tmp_path / "r", "--save-every", "5", "--set", "train.steps=10"])
    assert not marker.exists()
    assert "cannot resume from step_00000010" in out.stdout + out.stderr  # fell back to step 5
    assert meta(tmp_path / "r" / "model.safetensors")["step"] == "10"


def test_kill_between_rename_and_export(tmp_path):
    common = ["--save-every", "5", "--set", "train.steps=10"]
    run(["--out", tmp_path / "ok"] + common)
    killed = run(["--out", tmp_path / "r", "--_sigkill-before-export", "10"] + common, check=False)
    assert killed.returncode == -9 and meta(tmp_path / "r" / "model.safetensors")["step"] == "5"  # stale export
    again = run(["--out", tmp_path / "r"] + common)
    assert "exporting step 10" in again.stdout + again.stderr
    assert meta(tmp_path / "r" / "model.safetensors")["step"] == "10"
    a, b = weights(tmp_path / "ok" / "model.safetensors"), weights(tmp_path / "r" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_truncated_newest_checkpoint_falls_back(tmp_path):
    common = ["--save-every", "5", "--log-every", "1", "--set", "train.steps=15"]
    run(["--out", tmp_path / "ok"] + common)
    run(["--out", tmp_path / "r", "--_sigkill-at-step", "12"] + common, check=False)
    model = tmp_path / "r" / "checkpoints" / "step_00000010" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    out = run(["--out", tmp_path / "r"] + common)
    assert "cannot resume from step_00000010" in out.stderr + out.stdout and "at step 5" in out.stderr + out.stdout
    assert [r["loss"] for r in log(tmp_path / "ok")] == [r["loss"] for r in log(tmp_path / "r")]


def test_second_writer_is_refused(tmp_path):
    from models.core.run_state import RunLock

    lock = RunLock(tmp_path / "r")  # as a running training would hold it
    try:
        out = run(["--out", tmp_path / "r", "--set", "train.steps=3"], check=False)
    finally:
        lock.release()
    assert out.returncode == 2 and "in use by another training run" in out.stderr
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".lock"]
    run(["--out", tmp_path / "r", "--set", "train.steps=3"])  # free again once the first one is gone


@pytest.mark.parametrize("args,needle", [
    (["--keep", "-1"], "--keep"), (["--keep", "0"], "--keep"), (["--save-every", "0"], "--save-every"),
    (["--log-every", "0"], "--log-every"), (["--set", "train.steps=0"], "train.steps"),
    (["--set", "optim.nope=1"], "unknown key"), (["--set", "train.batch_size=7", "--batch-per-gpu", "2"],
                                                 "not divisible"),
    (["--set", "optim.schedule=linear"], "optim.schedule"), (["--seed", "-3"], "--seed"),
    (["--num-workers", "-1"], "--num-workers"), (["--init-from", "missing.safetensors"], "missing.safetensors"),
    (["--config", "configs/nope.json"], "nope.json"), (["--set", "optim.ema_decay=1.5"], "ema_decay"),
])
def test_bad_flags_write_nothing(tmp_path, args, needle):
    out = run(["--out", tmp_path / "r"] + args, check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


def test_changed_config_or_seed_is_refused_and_results_kept(tmp_path):
    run(["--out", tmp_path / "r", "--set", "train.steps=5"])
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    for args, needle in [(["--set", "optim.lr=0.1"], "optim.lr"), (["--seed", "3"], "different seed")]:
        out = run(["--out", tmp_path / "r"] + args + ([] if "optim.lr=0.1" in args else ["--set", "train.steps=5"]),
                  check=False)
        assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    file = tmp_path / "file"
    file.write_text("x")
    out = run(["--out", file], check=False)
    assert out.returncode == 2 and "not a folder" in out.stderr


def test_resume_may_extend_train_steps(tmp_path):
    run(["--out", tmp_path / "r", "--set", "train.steps=3", "--save-every", "3", "--log-every", "1"])
    run(["--out", tmp_path / "r", "--set", "train.steps=5", "--save-every", "3", "--log-every", "1"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 5 and steps == sorted(set(steps))
    assert json.loads((tmp_path / "r" / "run.json").read_text())["config"]["train"]["steps"] == 5
    with safe_open(str(tmp_path / "r" / "model.safetensors"), "pt") as f:
        assert f.metadata()["step"] == "5"


def test_outputs_respect_umask(tmp_path):
    run(["--out", tmp_path / "r", "--set", "train.steps=2"])
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "run.json", "log.jsonl"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
