"""Non-overlapping 16x16 tiling of global maps (the patches of Multistable SfS) and the resizes between V-cycle scales.

Layout: a batch of S global maps [S, C, H, W] becomes S*N tiles [S*N, C, P, P], sample-major, and within a sample the
tiles are row-major over the tile grid (tile index = row_tile * (W/P) + col_tile). `untile` is the exact inverse.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH = 16


def tile(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """[S, C, H, W] -> [S * (H/P) * (W/P), C, P, P], row-major tiles per sample.

    H and W must be multiples of `patch` (the reference silently cropped; we refuse instead).
    """
    s, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"map size {h}x{w} is not a multiple of the {patch}-px tile")
    gh, gw = h // patch, w // patch
    t = x.reshape(s, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(s * gh * gw, c, patch, patch)


def untile(tiles: torch.Tensor, size: int | tuple[int, int], patch: int = PATCH) -> torch.Tensor:
    """[S * N, C, P, P] -> [S, C, H, W]; exact inverse of `tile` for a map of `size` (int = square)."""
    h, w = (size, size) if isinstance(size, int) else size
    gh, gw = h // patch, w // patch
    n, c = tiles.shape[0], tiles.shape[1]
    if n % (gh * gw):
        raise ValueError(f"{n} tiles do not fill whole {gh}x{gw} grids")
    s = n // (gh * gw)
    x = tiles.reshape(s, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(s, c, h, w)


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [S, C, H, W] without anti-aliasing and without renormalizing normals.

    Half-pixel centres (align_corners=False), which is what OpenCV's INTER_LINEAR does in the reference code.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


def resize_mask(mask: torch.Tensor, size: int | tuple[int, int], thresh: float = 0.5) -> torch.Tensor:
    """Resize a {0,1} mask [S|1, 1, H, W] bilinearly and threshold it back to {0,1} (float)."""
    return (resize(mask.float(), size) >= thresh).float()
