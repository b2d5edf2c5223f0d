"""Point splatting with a z-buffer, vectorised in torch (CPU or GPU), plus the per-point loop it replaces.

Each visible point (finite, z > 0, projected inside the image) covers a filled rectangle of pixels centred on
(floor(u), floor(v)), clipped at the image border. Per pixel the nearest point wins; among points at exactly the
same depth the lowest point index wins, so the result never depends on the order in which candidates are processed
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
    zbuffer [H, W] (+inf = none)), all on uv's device."""
    dev = uv.device
    n = z.shape[0]
    ok = visible_mask(uv, z, height, width)
    if visible is not None:
        ok &= visible.to(dev, torch.bool)
    ids = torch.nonzero(ok).squeeze(1)
    px = torch.floor(uv[ids, 0]).long()
    py = torch.floor(uv[ids, 1]).long()
    ox, oy = footprint_offsets(footprint, dev)
    X = (px[:, None] + ox).reshape(-1)
    Y = (py[:, None] + oy).reshape(-1)
    inside = (X >= 0) & (X < width) & (Y >= 0) & (Y < height)
    pix = (Y * width + X)[inside]
    zc = z[ids].repeat_interleave(ox.numel())[inside]
    idc = ids.repeat_interleave(ox.numel())[inside]
    zbuf = torch.full((height * width,), float("inf"), dtype=z.dtype, device=dev)
    zbuf.scatter_reduce_(0, pix, zc, reduce="amin")
    win = zc == zbuf[pix]  # every candidate at the nearest depth; the lowest index among them wins
    best = torch.full((height * width,), n, dtype=torch.long, device=dev)
    best.scatter_reduce_(0, pix[win], idc[win], reduce="amin")
    image = torch.zeros(height * width, 3, dtype=torch.uint8, device=dev)
    hit = best < n
    image[hit] = levels.to(dev)[best[hit]]
    best[~hit] = -1
    return image.view(height, width, 3), best.view(height, width), zbuf.view(height, width)


def splat_video(uv: torch.Tensor, z: torch.Tensor, levels: torch.Tensor, height: int, width: int,
                footprint: str = "3x3", visibility: torch.Tensor | None = None, progress: bool = False,
                desc: str = "splat") -> torch.Tensor:
    """uv [T, N, 2], z [T, N], levels [N, 3] (+ optional visibility [T, N]) -> uint8 video [T, H, W, 3] on the CPU."""
    from tqdm import tqdm

    frames = []
    for t in tqdm(range(uv.shape[0]), desc=desc, disable=not progress, leave=False):
        vis = None if visibility is None else visibility[t]
        frames.append(splat_frame(uv[t], z[t], levels, height, width, footprint, vis)[0].cpu())
    return torch.stack(frames)


def splat_frame_loop(uv: np.ndarray, z: np.ndarray, levels: np.ndarray, height: int, width: int,
                     footprint: str = "3x3", visible: np.ndarray | None = None) -> np.ndarray:
    """The straightforward version, one rectangle per point in a Python loop (how the original drew with PIL):
    painter's algorithm far to near, equal depths drawn from the highest index down so the result equals
    `splat_frame`. Kept as the reference for tests and the speed benchmark."""
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
