"""The DiffMotion 3x3 result grid, as the reference run_inference.py draws it: rows = normals, albedo, materials;
columns = frames 1..3.

The material row shows (metallic, specular, roughness) as (R, G, B). Values in [-1, 1] go to display as
(x + 1)/2, clipped to [0, 1], times 255 and truncated (as the original); normals are not renormalised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.diffmotion.channels import GROUP_SLICES, GROUPS


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8 by (x + 1)/2 * 255, clipped, truncated."""
    y = np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 0.5, 0.0, 1.0)
    return (y * 255.0).astype(np.uint8)


def prediction_grid(pred) -> np.ndarray:
    """pred [T, 9, H, W] (numpy or torch, values in [-1, 1]) -> uint8 image [3*H, T*W, 3].

    Row r, column f holds group r (normal, albedo, material) of frame f.
    """
    if hasattr(pred, "detach"):
        pred = pred.detach().float().cpu().numpy()
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 4 or pred.shape[1] != 9:
        raise ValueError(f"prediction_grid: expected [T, 9, H, W], got {pred.shape}")
    rows = []
    for name in GROUPS:
        group = pred[:, GROUP_SLICES[name]]  # [T, 3, H, W]
        rows.append(np.concatenate([g.transpose(1, 2, 0) for g in group], axis=1))
    return to_uint8(np.concatenate(rows, axis=0))


def write_grid(path: str | Path, pred) -> Path:
    """Write the grid PNG of one prediction atomically; returns the path."""
    from models.core.io import write_png

    return write_png(path, prediction_grid(pred))


def input_strip(frames) -> np.ndarray:
    """Conditioning frames [T, 3, H, W] in [-1, 1] -> uint8 [H, T*W, 3] (shown above demo grids)."""
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames, dtype=np.float32)
    return to_uint8(np.concatenate([f.transpose(1, 2, 0) for f in frames], axis=1))
