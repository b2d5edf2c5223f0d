"""The training run folder: a lock against two writers, training-state checkpoints that never unpickle code, and the
record of what a run was started with.

    <run>/run.json                    config + seed (+ parent checkpoint); a resume must match it
    <run>/.lock                       held (flock) by the main process of the one run writing here
    <run>/checkpoints/step_00001000/  accelerate's model/optimizer/RNG files, ema.safetensors, state.json (written last)
    <run>/model.safetensors           the export (see checkpoint.py)

accelerate stores the model as safetensors and reads optimizer and RNG files with torch.load(weights_only=True); the
EMA and step counter are ours, as safetensors + JSON, so no `custom_checkpoint_*.pkl` is ever written or read.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from models.core.cli import UserError

STATE = "state.json"  # written last inside a checkpoint folder: its presence marks the folder complete


class RunLock:
    """An exclusive advisory lock on the run folder for the lifetime of the run (released by the OS on a kill)."""

    def __init__(self, run_dir: Path):
        import fcntl

        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise UserError(f"{run_dir} is in use by another training run (pid {holder}); use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete training-state folders, oldest first."""
    root = run_dir / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / STATE).is_file()) if root.is_dir() else []


def remove_debris(run_dir: Path) -> None:
    """Temporary folders of saves that were killed half way (never picked up: only step_* with state.json are)."""
    root = run_dir / "checkpoints"
    for p in root.glob(".tmp-*") if root.is_dir() else []:
        shutil.rmtree(p, ignore_errors=True)


def save_training_state(accelerator, run_dir: Path, step: int, token: str, ema, record: dict, keep: int) -> Path:
    """Write checkpoints/step_<step> through a temporary folder + rename; prune to the newest `keep`."""
    from safetensors.torch import save_file

    root = run_dir / "checkpoints"
    tmp = root / f".tmp-{step:08d}-{token}"
    accelerator.save_state(str(tmp), safe_serialization=True)  # every rank: sharded states need it
    accelerator.wait_for_everyone()
    final = root / f"step_{step:08d}"
    if accelerator.is_main_process:
        if ema is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()},
                      str(tmp / "ema.safetensors"), metadata=ema.meta())
        (tmp / STATE).write_text(json.dumps({**record, "step": step}, indent=2) + "\n")
        if final.exists():  # a re-save of the same step (e.g. after an export-only resume)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_training_state(accelerator, ckpt: Path, ema) -> dict:
    """Restore model/optimizer (accelerate, weights_only loads), EMA and the state record of one checkpoint."""
    from safetensors import safe_open

    accelerator.load_state(str(ckpt))
    record = json.loads((ckpt / STATE).read_text())
    if ema is not None:
        with safe_open(str(ckpt / "ema.safetensors"), framework="pt") as f:
            ema.load({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
    return record


def resume_latest(accelerator, run_dir: Path, ema, log) -> dict | None:
    """Load the newest checkpoint that loads; a truncated or corrupt one is reported and skipped."""
    for ckpt in reversed(checkpoint_dirs(run_dir)):
        try:
            record = load_training_state(accelerator, ckpt, ema)
        except Exception as err:  # corrupt files raise many types (safetensors, pickle, json, shape)
            log(f"warning: cannot resume from {ckpt.name} ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                f"trying the previous checkpoint")
            continue
        log(f"resumed from {ckpt} at step {record['step']}")
        return record
    return None


def check_run_record(run_dir: Path, record: dict) -> dict | None:
    """Compare with run.json: same config and seed, or UserError. Returns the record to write, or None.

    Only `train.steps` may change on a resume (extending or shortening a run); the stored record keeps its lineage.
    """
    path = run_dir / "run.json"
    if not path.exists():
        return record
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: unreadable (not JSON); use another --out") from None
    if old.get("seed") != record["seed"]:
        raise UserError(f"{run_dir} was made with a different seed ({old.get('seed')} vs {record['seed']}); "
                        f"use another --out")
    changed = [k for k in _changed_keys(old.get("config"), record["config"]) if k != "train.steps"]
    if changed:
        raise UserError(f"{run_dir} was made with a different config (differs in {', '.join(changed[:5])}); "
                        f"use another --out")
    if old["config"]["train"]["steps"] == record["config"]["train"]["steps"]:
        return None
    return {**old, "config": record["config"]}


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _changed_keys(a: dict, b: dict) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
