"""Pinhole cameras in OpenCV axes (x right, y down, z forward), pixel (col, row) covering [col, col+1) x [row, row+1).

A pixel's centre is (col + 0.5, row + 0.5), so a point projected to (u, v) is drawn in pixel (floor(u), floor(v)).
Poses are 4x4 world-to-camera matrices acting on column vectors: p_cam = M @ [p_world, 1].
"""
from __future__ import annotations

import math

import torch

DEFAULT_FOV_DEG = 55.0  # horizontal; f = (720 / 2) / tan(27.5 deg) = 691.5 px at 720 wide


def intrinsics_from_fov(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> torch.Tensor:
    """3x3 K (float64) for a horizontal field of view, square pixels, principal point at the image centre."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"horizontal FOV must lie in (0, 180) degrees, got {fov_deg}")
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return intrinsics(f, f, width / 2.0, height / 2.0)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def intrinsics_from_normalized(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> torch.Tensor:
    """MoGe-style normalised intrinsics (focal lengths and centre relative to width / height) -> pixel K."""
    return intrinsics(fx * width, fy * height, cx * width, cy * height)


def check_intrinsics(K) -> torch.Tensor:
    """A 3x3 finite K with positive focal lengths and last row (0, 0, 1); ValueError otherwise."""
    K = torch.as_tensor(K, dtype=torch.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got shape {tuple(K.shape)}")
    if not torch.isfinite(K).all():
        raise ValueError("K holds NaN or Inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K needs positive focal lengths, got fx={K[0, 0].item():.4g}, fy={K[1, 1].item():.4g}")
    if not torch.allclose(K[2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)):
        raise ValueError("K's last row must be (0, 0, 1)")
    return K


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """K for an image resampled by (sx, sy): pixel edges scale, so centres map to centres."""
    S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device))
    return S @ K


def pixel_grid(height: int, width: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """[H, W, 2] pixel centres (u, v) = (col + 0.5, row + 0.5)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + 0.5,
                          torch.arange(width, dtype=dtype, device=device) + 0.5, indexing="ij")
    return torch.stack([u, v], dim=-1)


def unproject(uv: torch.Tensor, z: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(u, v) pixels [..., 2] and depth z [...] -> camera points [..., 3] (X = (u - cx) z / fx, ...)."""
    K = K.to(uv)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[..., 1] - K[1, 2]) / K[1, 1] * z
    return torch.stack([x, y, z], dim=-1)


def project(points: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera points [..., 3] -> (uv [..., 2], z [...]); points with z <= 0 get non-finite or meaningless uv (cull by z)."""
    K = K.to(points)
    z = points[..., 2]
    u = K[0, 0] * points[..., 0] / z + K[0, 2]
    v = K[1, 1] * points[..., 1] / z + K[1, 2]
    return torch.stack([u, v], dim=-1), z


# --------------------------------------------------------------------------------------------------- 4x4 poses
def rotation(axis: str, degrees: float, dtype=torch.float64) -> torch.Tensor:
    """Right-handed 4x4 rotation about x, y or z by `degrees` (the standard R_x, R_y, R_z)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    m = torch.eye(4, dtype=dtype)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def translation(dx: float, dy: float, dz: float, dtype=torch.float64) -> torch.Tensor:
    m = torch.eye(4, dtype=dtype)
    m[:3, 3] = torch.tensor([dx, dy, dz], dtype=dtype)
    return m


def look_at(position, target, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """3x3 rotation with columns (right, up, forward) for a camera at `position` looking at `target`."""
    p, t, w = (torch.as_tensor(x, dtype=torch.float64) for x in (position, target, up))
    fwd = t - p
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(w, fwd)
    right = right / right.norm()
    new_up = torch.linalg.cross(fwd, right)
    return torch.stack([right, new_up, fwd], dim=1)


def invert_pose(M: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid 4x4 matrices [..., 4, 4] (R^T, -R^T t)."""
    R, t = M[..., :3, :3], M[..., :3, 3:]
    out = torch.zeros_like(M)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1.0
    return out


def transform(M: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 matrices [..., 4, 4] to points [..., N, 3] (broadcasting the leading dimensions)."""
    M = M.to(points)
    return points @ M[..., :3, :3].transpose(-1, -2) + M[..., None, :3, 3]
