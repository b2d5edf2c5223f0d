"""The one portable checkpoint format: a .safetensors of (EMA) weights whose metadata describes the model.

metadata: format="gp3d/1", system=<registry name>, config=<JSON of the system config>, step, ema, torch, created, git_commit.
`run_inference.py --ckpt X` therefore needs no model flags. No pickle is ever read for our own format; foreign
checkpoints go through `torch.load(weights_only=True)` only.
"""
from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import torch

from models.core.io import atomic_write
from models.core.cli import UserError

FORMAT = "gp3d/1"


class CheckpointError(UserError, ValueError):
    """A file that is not a valid checkpoint of the expected kind (message is one line)."""


def _git_commit() -> str:
    """Commit of this source tree; "unknown" for an installed copy (which must not report its host repository's)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=root)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def export_checkpoint(path: str | Path, *, system: str, config: dict, state_dict: dict, step: int = 0,
                      ema: str = "", dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write weights + self-describing metadata atomically. Tensors are made contiguous and untied."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    meta = {
        "format": FORMAT,
        "system": system,
        "config": json.dumps(config, sort_keys=True),
        "step": str(int(step)),
        "ema": ema,
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def read_metadata(path: str | Path) -> dict:
    """Metadata of one of our checkpoints; CheckpointError for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a .safetensors export (for original .ckpt files use "
                              f"scripts/convert_legacy_ckpt.py)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {err}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (metadata format={meta.get('format')!r})")
    return meta


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(metadata, state_dict) of one of our checkpoints."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read tensors (truncated or corrupt?): {err}") from None
    return meta, state


def load_system(path: str | Path, device: str | torch.device = "cpu", expect: str | None = None):
    """Rebuild a System from a checkpoint's metadata: built on the meta device, weights loaded straight in, strictly."""
    from models.core.config import ConfigError, from_dict
    from models.core.registry import get_system

    meta, state = read_checkpoint(path)
    name = meta.get("system", "")
    if expect is not None and name != expect:
        raise CheckpointError(f"{path}: this is a '{name}' checkpoint, but a '{expect}' one is needed here")
    try:
        cls = get_system(name)
        cfg = from_dict(cls.Config, json.loads(meta["config"]), where=f"{Path(path).name}:config")
    except (KeyError, ConfigError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: bad config in metadata: {err}") from None
    try:
        system = cls.from_export(cfg, state, meta)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(f"{path}: weights do not match the '{name}' network: {' '.join(first[:2])[:300]}") from None
    system.step = int(meta.get("step", 0))
    return system.to(device).eval()


def load_foreign(path: str | Path) -> dict:
    """Load an original authors' torch checkpoint safely (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot load with weights_only=True: {str(err).splitlines()[0][:200]}") from None
