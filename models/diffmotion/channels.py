"""The DiffMotion target layout, one definition for the data, the loss, the metrics and the pictures.

The 9 channels are normal (3), albedo (3), metallic, specular, roughness, in model space [-1, 1]. The loss and the
pictures work on three groups of three (normal, albedo, material); the data files keep one map per material channel.
"""
from __future__ import annotations

import torch

GROUP_SLICES = {"normal": slice(0, 3), "albedo": slice(3, 6), "material": slice(6, 9)}
GROUPS = tuple(GROUP_SLICES)  # ("normal", "albedo", "material")
NORMAL, ALBEDO, MATERIAL = GROUP_SLICES.values()
MATERIAL_NAMES = ("metallic", "specular", "roughness")  # channels 6, 7, 8
TARGET_SLICES = {"normal": NORMAL, "albedo": ALBEDO,
                 **{name: slice(6 + i, 7 + i) for i, name in enumerate(MATERIAL_NAMES)}}


def foreground_mask(target: torch.Tensor, tol: float = 0.1) -> torch.Tensor:
    """Foreground where the decoded normal has unit length within tol ([..., 9 or 3, H, W] -> [..., H, W] bool).
    The GT background (PNG 0 -> -1 in all channels) has length sqrt(3) and is excluded."""
    return (target[..., NORMAL, :, :].norm(dim=-3) - 1).abs() <= tol
