#!/usr/bin/env python
"""Convert an original diffmotion checkpoint (`u_vit3d_mixer_*.ckpt`, a torch pickle) to our .safetensors export.

    python scripts/convert_legacy_ckpt.py ckpts/u_vit3d_mixer_e2.ckpt --out ckpts/diffmotion.safetensors
    python scripts/convert_legacy_ckpt.py old.ckpt --config configs/diffmotion/plain_mid.json   # train mode uvit3d_all3

The file is read with torch.load(weights_only=True) (no arbitrary unpickling). Weights sit under
`model_state_dict` (or the file is a bare state dict), possibly with a DDP `module.` prefix, which is stripped.
Our module names equal the original ones (spec Appendix A), so the key map is the identity; the only adaptation is
reshaping between 1x1-conv and linear weights should the two storage forms differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PREFIXES = ("module.", "_orig_mod.")
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "diffmotion" / "nattn_mid.json"


def extract_state_dict(obj) -> dict:
    """The weight dict of a loaded original checkpoint, with wrapper prefixes removed."""
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError("not a state dict: expected tensors under 'model_state_dict'")
    out = {}
    for key, value in obj.items():
        for prefix in PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def map_legacy_keys(legacy: dict, reference: dict) -> dict:
    """Map original keys to ours (identity) and fit 1x1-conv <-> linear weight shapes to `reference`.

    Raises ValueError naming the first missing / unexpected / mis-shaped keys.
    """
    missing = sorted(set(reference) - set(legacy))
    unexpected = sorted(set(legacy) - set(reference))
    if missing or unexpected:
        raise ValueError(f"key mismatch: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                         f"(e.g. {unexpected[:3]}); wrong --config for this checkpoint?")
    out = {}
    for key, ref in reference.items():
        value = legacy[key]
        if tuple(value.shape) != tuple(ref.shape):
            if value.numel() == ref.numel() and value.squeeze().shape == ref.squeeze().shape:
                value = value.reshape(ref.shape)
            else:
                raise ValueError(f"{key}: shape {tuple(value.shape)} in the checkpoint, {tuple(ref.shape)} expected")
        out[key] = value.to(ref.dtype).contiguous()
    return out


def convert(src: str | Path, out: str | Path, config: str | Path = DEFAULT_CONFIG, step: int | None = None) -> Path:
    """Load `src`, map it onto the system built from `config`, check a strict load, and export to `out`."""
    from models import build_system
    from models.core.checkpoint import export_checkpoint, load_foreign
    from models.core.config import load_config, to_dict

    raw = load_foreign(src)
    cfg = load_config(config)
    if cfg.system != "diffmotion":
        raise ValueError(f"{config}: a diffmotion config is needed, got system '{cfg.system}'")
    with torch.device("meta"):  # shapes only; the real tensors come from the checkpoint
        reference = build_system(cfg).net.state_dict()
    state = map_legacy_keys(extract_state_dict(raw), reference)
    system = build_system(cfg)
    system.net.load_state_dict(state, strict=True)
    if step is None:
        step = int(raw.get("epoch", 0)) if isinstance(raw, dict) and not torch.is_tensor(raw.get("epoch")) else 0
    return export_checkpoint(out, system="diffmotion", config=to_dict(cfg), state_dict=system.net.state_dict(),
                             step=step, ema="none (original weights)", extra={"source": Path(src).name})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="original .ckpt file")
    ap.add_argument("--out", default="ckpts/diffmotion.safetensors", help="output .safetensors")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG),
                    help="diffmotion config matching the checkpoint (nattn_mid for u_vit3d_mixer_*.ckpt)")
    ap.add_argument("--step", type=int, default=None, help="step recorded in the metadata (default: the epoch)")
    args = ap.parse_args(argv)
    try:
        path = convert(args.src, args.out, args.config, args.step)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"convert_legacy_ckpt: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
