"""Downsampling a source omage to the training resolution.

Sparse pooling (the reference's "edge snapping"): a block that contains a chart-boundary pixel takes the mean of its
boundary pixels over all channels, any other block takes its centre sample. Every block touching a chart outline thus
stays occupied and sits on the true 3D boundary, which naive stride subsampling erodes.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.omages.format import OCC


def boundary_mask(occ: np.ndarray) -> np.ndarray:
    """Occupied pixels with at least one unoccupied 8-neighbour (pixels outside the image count as unoccupied)."""
    inner = ndimage.binary_erosion(occ, structure=np.ones((3, 3), dtype=bool), border_value=0)
    return occ & ~inner


def sparse_pool(omage: np.ndarray, factor: int) -> np.ndarray:
    """(R, R, C) file-space omage -> (R / factor, R / factor, C) by sparse pooling."""
    h, w, c = omage.shape
    if h % factor or w % factor:
        raise ValueError(f"resolution {h}x{w} is not a multiple of the pooling factor {factor}")
    occ = omage[..., OCC] >= 0.5
    edge = boundary_mask(occ)
    hb, wb = h // factor, w // factor
    e_blocks = edge.reshape(hb, factor, wb, factor)
    count = e_blocks.sum(axis=(1, 3))
    sums = (omage * edge[..., None]).reshape(hb, factor, wb, factor, c).sum(axis=(1, 3), dtype=np.float64)
    edge_mean = sums / np.maximum(count, 1)[..., None]
    nearest = omage[factor // 2::factor, factor // 2::factor]
    out = np.where((count > 0)[..., None], edge_mean, nearest).astype(np.float32)
    occ_out = out[..., OCC] >= 0.5
    out[~occ_out] = 0.0
    if c >= 7:  # averaged normals are shorter than 1: renormalise them (file space (n + 1) / 2)
        n = out[occ_out][:, 4:7] * 2 - 1
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        out[occ_out, 4:7] = np.clip((n + 1) / 2, 0.0, 1.0)
    return out


def naive_downsample(omage: np.ndarray, factor: int, offset: int = 0) -> np.ndarray:
    """Plain stride subsampling `omage[offset::factor, offset::factor]` (the baseline sparse pooling is measured against)."""
    return np.ascontiguousarray(omage[offset::factor, offset::factor])


def upsample_nearest(omage: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling; the decoder is resolution-agnostic, so this should not change the decoded shape."""
    return np.repeat(np.repeat(omage, factor, axis=0), factor, axis=1)
