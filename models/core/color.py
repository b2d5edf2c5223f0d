"""Colour to grey, one rule for every system.

Rec. 709 luma weights 0.2126 R + 0.7152 G + 0.0722 B (the primaries of sRGB, which is what PNG/JPEG files hold),
applied to the stored values without linearisation. PIL's convert("L") and OpenCV use the older Rec. 601 weights
(0.299, 0.587, 0.114); for grey images (R = G = B, e.g. the DiffMotion material maps) both give the same value.
"""
from __future__ import annotations

import numpy as np

REC709 = (0.2126, 0.7152, 0.0722)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] colour (channels last) -> [...] grey by the Rec. 709 weights; summed in float64, returned in the input's
    float dtype (float64 for integer input)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"luminance: expected 3 channels last, got shape {rgb.shape}")
    grey = rgb.astype(np.float64, copy=False) @ np.asarray(REC709, dtype=np.float64)
    return grey.astype(rgb.dtype, copy=False) if rgb.dtype.kind == "f" else grey
