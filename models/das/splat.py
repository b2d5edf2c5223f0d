"""Point splatting with a z-buffer, vectorised in torch (CPU or GPU), plus the per-point loop it replaces.

Each visible point (finite, z > 0, projected inside the image) covers a filled rectangle of pixels centred on
(floor(u), floor(v)), clipped at the image border. Per pixel the nearest point wins; among points at the same
depth the lowest point index wins, so the result never depends on the order in which candidates are processed
(threads, chunks, device).
Footprints: "1" (1 px), "3x3" (the single-image path of the original), "5x5" (its CoTracker path), "7x5" (its
SpaTracker path: half-width 3, half-height 2). Uncovered pixels stay exactly black.
"""
from __future__ import annotations

import numpy as np
import torch

FOOTPRINTS = {"1": (0, 0), "3x3": (1, 1), "5x5": (2, 2), "7x5": (3, 2)}  # (half-width, half-height) in px


def footprint_offsets(footprint: str, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    if footprint not in FOOTPRINTS:
        raise ValueError(f"footprint must be one of {', '.join(FOOTPRINTS)}, got {footprint!r}")
    rx, ry = FOOTPRINTS[footprint]
    oy, ox = torch.meshgrid(torch.arange(-ry, ry + 1, device=device), torch.arange(-rx, rx + 1, device=device),
                            indexing="ij")
    return ox.reshape(-1), oy.reshape(-1)


def visible_mask(uv: torch.Tensor, z: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Points that are drawn at all: finite, in front of the camera, centre pixel inside the image."""
    u, v = uv[..., 0], uv[..., 1]
    ok = torch.isfinite(u) & torch.isfinite(v) & torch.isfinite(z) & (z > 0)
    return ok & (u >= 0) & (u < width) & (v >= 0) & (v < height)


def splat_frame(uv: torch.Tensor, z: torch.Tensor, levels: torch.Tensor, height: int, width: int,
                footprint: str = "3x3", visible: torch.Tensor | None = None):
    """One frame: uv [N, 2], z [N], levels uint8 [N, 3] -> (image uint8 [H, W, 3], winner [H, W] (-1 = none),
    zbuffer [H, W] (+inf = none)), all on uv's device.

    Depth test and tie-break are one integer min per pixel: the key is the float64 bit pattern of z (monotonic for
    z > 0) with its lowest b bits replaced by the point index (b = bits of N). Depths closer than 2^(b-52)
    relative (about 1e-10 for 345,600 points) therefore count as equal and go to the lower index.
    """
    dev = uv.device
    n = z.shape[0]
    ok = visible_mask(uv, z, height, width)
    if visible is not None:
        ok &= visible.to(dev, torch.bool)
    ids = torch.nonzero(ok).squeeze(1)
    px = uv[ids, 0].long()  # truncation = floor, since u >= 0 here
    py = uv[ids, 1].long()
    bits = max(1, int(n).bit_length())
    key = (z[ids].double().view(torch.int64) >> bits << bits) | ids
    ox, oy = footprint_offsets(footprint, dev)
    X = px[:, None] + ox
    Y = py[:, None] + oy
    inside = (X >= 0) & (X < width) & (Y >= 0) & (Y < height)
    pix = torch.where(inside, Y * width + X, height * width)  # off-image footprint pixels go to one spare slot
    empty = torch.iinfo(torch.int64).max
    best = torch.full((height * width + 1,), empty, dtype=torch.int64, device=dev)
    best.scatter_reduce_(0, pix.reshape(-1), key[:, None].expand_as(pix).reshape(-1), reduce="amin")
    best = best[:-1]
    hit = best != empty
    winner = torch.full((height * width,), -1, dtype=torch.long, device=dev)
    winner[hit] = best[hit] & ((1 << bits) - 1)
    image = torch.zeros(height * width, 3, dtype=torch.uint8, device=dev)
    image[hit] = levels.to(dev)[winner[hit]]
    zbuf = torch.full((height * width,), float("inf"), dtype=z.dtype, device=dev)
    zbuf[hit] = z[winner[hit]]
    return image.view(height, width, 3), winner.view(height, width), zbuf.view(height, width)


def splat_frame_loop(uv: np.ndarray, z: np.ndarray, levels: np.ndarray, height: int, width: int,
                     footprint: str = "3x3", visible: np.ndarray | None = None) -> np.ndarray:
    """The straightforward version, one rectangle per point in a Python loop (how the original drew with PIL):
    painter's algorithm far to near, equal depths drawn from the highest index down, so the result equals
    `splat_frame` (unless two points on one pixel differ in depth by less than its 1e-10 relative key precision).
    Kept as the reference for tests and the speed benchmark."""
    rx, ry = FOOTPRINTS[footprint]
    image = np.zeros((height, width, 3), np.uint8)
    u, v = uv[:, 0], uv[:, 1]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(u) & np.isfinite(v) & np.isfinite(z) & (z > 0)
        ok &= (u >= 0) & (u < width) & (v >= 0) & (v < height)
    if visible is not None:
        ok &= visible.astype(bool)
    ids = np.nonzero(ok)[0]
    order = ids[np.lexsort((-ids, -z[ids]))]
    for i in order:
        x, y = int(np.floor(u[i])), int(np.floor(v[i]))
        image[max(y - ry, 0):y + ry + 1, max(x - rx, 0):x + rx + 1] = levels[i]
    return image
