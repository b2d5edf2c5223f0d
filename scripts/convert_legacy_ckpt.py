#!/usr/bin/env python
"""Convert an original authors' checkpoint (Multistable SfS or DiffMotion) to our self-describing .safetensors.

    python scripts/convert_legacy_ckpt.py patch_unet_aug_default.ckpt --out ckpts/sfs_original.safetensors
    python scripts/convert_legacy_ckpt.py u_vit3d_mixer_e2.ckpt --out ckpts/diffmotion_original.safetensors
    python scripts/convert_legacy_ckpt.py old.ckpt --system diffmotion --config configs/diffmotion/plain_mid.json \\
        --out ckpts/plain.safetensors

The file is read with torch.load(weights_only=True) only (a file holding pickled objects is refused). --system auto
tells the two apart by their key names. The weights are checked strictly (every key, every shape) against the
network built from --config (default: configs/sfs/faithful.json, configs/diffmotion/nattn_mid.json), and the export
is written atomically. The key maps live in models/sfs/legacy.py and models/diffmotion/legacy.py.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import Parser, UserError, cli_main, int_at_least  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = {"sfs": ROOT / "configs" / "sfs" / "faithful.json",
                   "diffmotion": ROOT / "configs" / "diffmotion" / "nattn_mid.json"}


def detect_system(raw) -> str:
    """'sfs' or 'diffmotion' from the key names of a loaded original checkpoint; UserError if neither fits."""
    from models.core.checkpoint import CheckpointError
    from models.diffmotion.legacy import extract_state_dict, looks_like_diffmotion
    from models.sfs.legacy import looks_like_sfs

    if isinstance(raw, dict) and looks_like_sfs(raw):
        return "sfs"
    try:
        if looks_like_diffmotion(extract_state_dict(raw)):
            return "diffmotion"
    except CheckpointError:
        pass
    raise UserError("cannot tell which system this checkpoint is from its keys; pass --system sfs|diffmotion")


def _config(system: str, path):
    from models.core.config import load_config

    path = Path(path) if path is not None else DEFAULT_CONFIGS[system]
    if path.is_file():
        cfg = load_config(path)
    elif system == "sfs" and path == DEFAULT_CONFIGS["sfs"]:  # no configs/ folder: the net defaults are the paper's
        from models.systems.sfs import SfsConfig
        cfg = SfsConfig()
    else:
        raise UserError(f"--config {path}: not found")
    if cfg.system != system:
        raise UserError(f"--config {path}: a '{system}' config is needed, got system '{cfg.system}'")
    return cfg


def convert(src, out, config=None, step: int | None = None, system: str = "auto") -> Path:
    """Load `src` safely, map it onto the system's network (strict), and export it to `out`."""
    from models import build_system
    from models.core.checkpoint import export_checkpoint, load_foreign
    from models.core.registry import get_system

    raw = load_foreign(src)
    if system == "auto":
        system = detect_system(raw)
    else:
        try:
            found = detect_system(raw)
        except UserError:
            found = system
        if found != system:
            raise UserError(f"{src}: this is a '{found}' checkpoint, not '{system}' (use --system auto)")
    cfg = _config(system, config)
    with torch.device("meta"):  # shapes only; the real tensors come from the checkpoint
        reference = build_system(cfg).export_state_dict()
    if system == "sfs":
        from models.sfs.legacy import map_state_dict
        state, found_step = map_state_dict(raw, reference), 0
    else:
        from models.diffmotion.legacy import extract_state_dict, legacy_step, map_state_dict
        state, found_step = map_state_dict(extract_state_dict(raw), reference), legacy_step(raw)
    model = get_system(system).from_export(cfg, state, {})  # strict load into a meta-built system
    digest = hashlib.sha256()
    with open(src, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return export_checkpoint(out, system=system, config=model.export_config(), state_dict=model.export_state_dict(),
                             step=found_step if step is None else step, ema="none (original weights)",
                             extra={"source": Path(src).name, "source_sha256": digest.hexdigest()})


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("src", help="the original .ckpt file")
    p.add_argument("--out", required=True, help="output .safetensors")
    p.add_argument("--system", choices=["auto", "sfs", "diffmotion"], default="auto",
                   help="which paper's checkpoint (default: detected from the key names)")
    p.add_argument("--config", default=None, help="config of the matching network (default: the paper's preset)")
    p.add_argument("--step", type=int_at_least(0), default=None,
                   help="step recorded in the metadata (default: the file's epoch, else 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    try:
        out = Path(args.out)
        if out.suffix != ".safetensors":
            raise UserError(f"--out {out}: must end in .safetensors")
        if out.exists() and not args.overwrite:
            raise UserError(f"--out {out}: exists (pass --overwrite to replace it)")
        path = convert(args.src, out, args.config, args.step, args.system)
    except UserError as err:  # one line and exit 2 here too, so callers of main() get the code back
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        print(f"convert_legacy_ckpt.py: error: {' '.join(lines)[:500]}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    cli_main(main)
