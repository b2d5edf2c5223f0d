"""The original Multistable SfS checkpoint (`patch_unet_aug_default.ckpt`) onto our PatchUNet.

The authors' file is a plain `torch.save` of their UNet's state_dict (Han, Zickler, Nishino, NeurIPS 2024; the
"annotated diffusion" UNet of their code release). The networks are the same layer for layer; only the module paths
differ, so the map is a set of renames with equal shapes:

    time_mlp.1 / time_mlp.3            -> time_mlp.0 / time_mlp.2   (their index 0 is the parameter-free sinusoid)
    <res block>.mlp.1                  -> <res block>.time_mlp.1
    <res block>.res_conv               -> <res block>.skip
    <attn>.fn.fn.<x> / <attn>.fn.norm  -> <attn>.fn.<x> / <attn>.norm   (Residual(PreNorm(f)) vs PreNormResidual)
    downs.i.3.1 / ups.i.3.1            -> downs.i.3.conv / ups.i.3.conv (their Rearrange / Upsample is index 0)
"""
from __future__ import annotations

import re

import torch

from models.core.checkpoint import CheckpointError

# (pattern on an original key, replacement); applied in order, at most one rule changes a given part of the name
_RULES = [
    (re.compile(r"^time_mlp\.1\."), "time_mlp.0."),
    (re.compile(r"^time_mlp\.3\."), "time_mlp.2."),
    (re.compile(r"\.mlp\.1\."), ".time_mlp.1."),
    (re.compile(r"\.res_conv\."), ".skip."),
    (re.compile(r"\.fn\.fn\."), ".fn."),
    (re.compile(r"\.fn\.norm\."), ".norm."),
    (re.compile(r"^((?:downs|ups)\.\d+\.3)\.1\."), r"\1.conv."),
]
# keys only the original SfS UNet has: enough to tell its files from any other system's
SIGNATURE = ("init_conv.weight", "time_mlp.1.weight", "mid_attn.fn.fn.to_qkv.weight", "final_res_block.mlp.1.weight")


def our_key(original: str) -> str:
    """Our PatchUNet name for one of the original UNet's state_dict keys."""
    key = original
    for pattern, repl in _RULES:
        key = pattern.sub(repl, key)
    return key


def looks_like_sfs(state: dict) -> bool:
    """True when `state` carries the original SfS UNet's distinctive key names."""
    return all(k in state for k in SIGNATURE)


def map_state_dict(original: dict, reference: dict) -> dict:
    """Rename the original UNet's tensors to ours and check them strictly against `reference` (our state_dict,
    e.g. built on the meta device): every key present once, no extras, equal shapes. CheckpointError otherwise."""
    flat = isinstance(original, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in original.items())
    if not flat:
        raise CheckpointError("not a state dict: expected a flat dict of name -> tensor (a torch.save of the UNet's "
                              "state_dict)")
    mapped: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        ours = our_key(key)
        if ours in mapped:
            raise CheckpointError(f"two original keys map onto {ours!r}")
        mapped[ours] = value
    missing = [our_to_original(k) for k in reference if k not in mapped]
    unexpected = [k for k in original if our_key(k) not in reference]
    if missing or unexpected:
        raise CheckpointError(f"key mismatch with the SfS UNet: {len(missing)} missing (e.g. {missing[:3]}), "
                              f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}); wrong net config for this file?")
    out = {}
    for key, ref in reference.items():
        value = mapped[key]
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"{our_to_original(key)}: shape {tuple(value.shape)} in the checkpoint, "
                                  f"{tuple(ref.shape)} expected")
        if not value.is_floating_point():
            raise CheckpointError(f"{our_to_original(key)}: dtype {value.dtype}, expected floating point weights")
        out[key] = value.to(ref.dtype).contiguous()
    return out


def our_to_original(ours: str) -> str:
    """Inverse of `our_key` (for messages that name the user's file's keys, and for tests)."""
    key = re.sub(r"^time_mlp\.([02])\.", lambda m: f"time_mlp.{int(m.group(1)) + 1}.", ours)
    key = key.replace(".time_mlp.1.", ".mlp.1.").replace(".skip.", ".res_conv.")
    key = re.sub(r"^((?:downs|ups)\.\d+\.2|mid_attn)\.fn\.", r"\1.fn.fn.", key)
    key = re.sub(r"^((?:downs|ups)\.\d+\.2|mid_attn)\.norm\.", r"\1.fn.norm.", key)
    key = re.sub(r"^((?:downs|ups)\.\d+\.3)\.conv\.", r"\1.1.", key)
    return key


__all__ = ["our_key", "our_to_original", "looks_like_sfs", "map_state_dict", "SIGNATURE"]
