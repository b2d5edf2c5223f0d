"""The original DiffMotion checkpoints (`u_vit3d_mixer_*.ckpt`) onto our UViT3D.

The authors save `{"epoch", "model_state_dict", "optimizer_state_dict", ...}` with torch.save, the weights possibly
under a DDP `module.` (or torch.compile `_orig_mod.`) prefix. Our module names equal theirs (Han, Nishino, Zickler,
NeurIPS 2025, UViT3D-Mixer of their code release), so the key map is the identity; the one adaptation is between the
1x1-conv and linear storage forms of the same weight.
"""
from __future__ import annotations

import torch

from models.core.checkpoint import CheckpointError

PREFIXES = ("module.", "_orig_mod.")


def extract_state_dict(obj) -> dict:
    """The weight dict of a loaded original checkpoint (under 'model_state_dict', 'state_dict' or bare), with
    wrapper prefixes removed."""
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError("not a state dict: expected tensors under 'model_state_dict'")
    out = {}
    for key, value in obj.items():
        for prefix in PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def looks_like_diffmotion(state: dict) -> bool:
    """True when (prefix-stripped) keys have the UViT3D's top-level module names."""
    heads = {k.split(".", 1)[0] for k in state}
    return {"down_blocks", "mid_blocks", "up_blocks"} <= heads


def map_state_dict(legacy: dict, reference: dict) -> dict:
    """Original keys onto ours (identity), 1x1-conv <-> linear weight shapes fitted to `reference`; strict.

    CheckpointError names the first missing / unexpected / mis-shaped keys.
    """
    missing = sorted(set(reference) - set(legacy))
    unexpected = sorted(set(legacy) - set(reference))
    if missing or unexpected:
        raise CheckpointError(f"key mismatch: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} "
                              f"unexpected (e.g. {unexpected[:3]}); wrong --config for this checkpoint?")
    out = {}
    for key, ref in reference.items():
        value = legacy[key]
        if tuple(value.shape) != tuple(ref.shape):
            if value.numel() == ref.numel() and value.squeeze().shape == ref.squeeze().shape:
                value = value.reshape(ref.shape)
            else:
                raise CheckpointError(f"{key}: shape {tuple(value.shape)} in the checkpoint, {tuple(ref.shape)} "
                                      f"expected")
        out[key] = value.to(ref.dtype).contiguous()
    return out


def legacy_step(obj) -> int:
    """The epoch recorded in an original checkpoint (0 when absent)."""
    epoch = obj.get("epoch", 0) if isinstance(obj, dict) else 0
    return int(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else 0


__all__ = ["extract_state_dict", "looks_like_diffmotion", "map_state_dict", "legacy_step", "PREFIXES"]
