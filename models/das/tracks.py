"""A set of 3D tracks and its tracking video: the one path every point source goes through.

`Tracks.points[t, i]` is point i in the camera coordinates of frame t. Its colour comes from frame 0: (u0, v0) is the
point's first-frame pixel position (the projection of points[0], unless a source knows it exactly, e.g. the pixel
centre of a depth map) and the B channel its first-frame inverse depth.
"""
from __future__ import annotations

import dataclasses

import torch

from models.das import colors as C
from models.das.camera import project
from models.das.splat import splat_frame


@dataclasses.dataclass
class Tracks:
    points: torch.Tensor  # [T, N, 3] camera coordinates of each frame
    K: torch.Tensor  # [3, 3] pixel intrinsics
    height: int
    width: int
    visibility: torch.Tensor | None = None  # [T, N] bool; None = visible wherever projected inside the image
    poses: torch.Tensor | None = None  # [T, 4, 4] camera motion applied (first-frame camera -> frame t camera)
    uv0: torch.Tensor | None = None  # [N, 2] exact first-frame pixel positions, when known
    source: dict = dataclasses.field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.points.shape[0])


def render_tracks(tracks: Tracks, footprint: str = "3x3", coords: str = "continuous", depth: str = "z",
                  percentiles=(2.0, 98.0), clip: bool = True, device=None, progress: bool = False,
                  fps: float = 8.0):
    """-> (uint8 video [T, H, W, 3] as a CPU tensor, sidecar dict). `device` runs the splatting (CPU or CUDA).
    Frames are projected one at a time, so memory stays at one frame's worth of candidates."""
    from tqdm import tqdm

    dev = torch.device(device) if device is not None else tracks.points.device
    K = tracks.K.to(dev)
    p0 = tracks.points[0].to(dev)
    uv0 = tracks.uv0.to(dev) if tracks.uv0 is not None else project(p0, K)[0]
    inv0 = C.inverse_depth(p0, depth)
    norm = C.fit_normalization(inv0, tracks.width, tracks.height, percentiles, clip, coords, depth)
    levels = C.to_levels(C.encode(uv0, inv0, norm))
    frames = []
    for t in tqdm(range(tracks.frames), desc="splat", disable=not progress, leave=False):
        uv, z = project(tracks.points[t].to(dev), K)
        vis = tracks.visibility[t].to(dev) if tracks.visibility is not None else None
        frames.append(splat_frame(uv, z, levels, tracks.height, tracks.width, footprint, vis)[0].cpu())
    meta = C.sidecar(norm, tracks.K, tracks.poses, tracks.source, p0.shape[0], tracks.frames, footprint, fps)
    return torch.stack(frames), meta
