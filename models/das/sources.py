"""Point sources for tracking videos, all without pretrained weights:

    depth map + templates   every pixel unprojected (what the original got from MoGe), then object / camera motion
    3D tracks (.npz)        tracks [T, N, 3] as camera xyz or (u, v, z), optional visibility [T, N] and K
    2D tracks + depth       tracks [T, N, 2] lifted with per-frame depth maps [T, H, W] (a CoTracker-style path)
    meshes                  see models/das/meshes.py

Every loader raises one-line UserErrors for bad inputs (NaN / Inf / non-positive depth, wrong shapes, empty masks).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data.io import read_exr
from models.core.cli import UserError
from models.das.camera import check_intrinsics, pixel_grid, transform, unproject
from models.das.templates import camera_motion, object_motion
from models.das.tracks import Tracks

DEPTH_EXTS = (".npy", ".npz", ".png", ".exr")


# ------------------------------------------------------------------------------------------------ reading files
def _npz_array(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        for k in keys:
            if k in data.files:
                return data[k]
        if len(data.files) == 1:
            return data[data.files[0]]
        raise UserError(f"{path}: expected an array named {' or '.join(keys)}, found {', '.join(data.files) or 'none'}")


def read_array(path: str | Path, what: str, keys: tuple[str, ...] = ("depth",)) -> np.ndarray:
    """.npy / .npz / PNG (8 or 16 bit, raw integer values) / EXR / JPEG -> float64 array, one-line errors."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    ext = path.suffix.lower()
    try:
        if ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            arr = _npz_array(path, keys)
        elif ext == ".exr":
            arr = read_exr(path)
        else:
            arr = np.asarray(iio.imread(path))
    except UserError:
        raise
    except Exception as err:
        raise UserError(f"{what} {path}: cannot read ({str(err).strip().splitlines()[0][:160]})") from None
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise UserError(f"{what} {path}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def load_depth(path: str | Path, inverse: bool = False, scale: float = 1.0) -> np.ndarray:
    """A depth map [H, W] (> 0 everywhere) from .npy / .npz / 16-bit PNG / EXR. `scale` multiplies the stored values
    (e.g. 0.001 for millimetre PNGs); `inverse` means the file holds inverse depth (disparity-like), 1/d is taken."""
    arr = read_array(path, "depth")
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise UserError(f"depth {path}: expected a [H, W] map, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise UserError(f"depth {path}: {int(bad.sum())} of {arr.size} values are NaN or Inf")
    if (arr <= 0).any():
        raise UserError(f"depth {path}: {int((arr <= 0).sum())} of {arr.size} values are zero or negative "
                        f"(min {arr.min():.4g}); every pixel needs a positive {'inverse ' if inverse else ''}depth")
    arr = arr * scale
    return 1.0 / arr if inverse else arr


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Binary mask (> half of the stored maximum) of exactly `shape`; an empty mask is an error."""
    arr = read_array(path, "mask", keys=("mask",))
    if arr.ndim == 3:
        arr = arr[..., :3].mean(-1) if arr.shape[-1] in (3, 4) else arr[..., 0]
    if arr.shape != tuple(shape):
        raise UserError(f"mask {path}: is {arr.shape[0]}x{arr.shape[1]} but the depth map is {shape[0]}x{shape[1]}")
    top = 255.0 if arr.max(initial=0) > 1 else 1.0
    mask = arr > top / 2
    if not mask.any():
        raise UserError(f"mask {path}: empty (no pixel above half of the maximum); nothing to move")
    return mask


def load_image_rgb(path: str | Path) -> np.ndarray:
    """[H, W, 3] float in [0, 1] (the conditioning image; only its size and a resized copy are used here)."""
    arr = read_array(path, "image", keys=("image",))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UserError(f"image {path}: expected [H, W, 3], got shape {arr.shape}")
    top = 65535.0 if arr.max(initial=0) > 255 else 255.0 if arr.max(initial=0) > 1 else 1.0
    return np.clip(arr[..., :3] / top, 0.0, 1.0)


# ------------------------------------------------------------------------------------------- resize + centre crop
def fit_plan(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> dict:
    """Aspect-preserving scale by max(H/h, W/w), then a centre crop to (H, W) (the original demo stretched)."""
    (h, w), (H, W) = src_hw, dst_hw
    s = max(H / h, W / w)
    rh, rw = max(H, round(h * s)), max(W, round(w * s))
    return {"source_size": [h, w], "resized": [rh, rw], "crop_offset": [(rh - H) // 2, (rw - W) // 2],
            "size": [H, W], "scale": [rw / w, rh / h]}


def apply_plan(arr: np.ndarray, plan: dict, mode: str) -> np.ndarray:
    """Resample [H, W] or [H, W, C] by a fit plan; mode "nearest" for depth and masks, "area"/"bilinear" for images."""
    if list(arr.shape[:2]) == plan["size"] and plan["source_size"] == plan["size"]:
        return arr
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    rh, rw = plan["resized"]
    if mode == "nearest":
        x = F.interpolate(x, size=(rh, rw), mode="nearest-exact")
    else:
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
    oy, ox = plan["crop_offset"]
    H, W = plan["size"]
    x = x[0, :, oy:oy + H, ox:ox + W]
    return (x[0] if arr.ndim == 2 else x.permute(1, 2, 0)).numpy()


def plan_intrinsics(K: torch.Tensor, plan: dict) -> torch.Tensor:
    """K of the source image -> K of the resized and cropped one (pixel edges scale, then shift by the crop)."""
    sx, sy = plan["scale"]
    oy, ox = plan["crop_offset"]
    K2 = K.clone()
    K2[0] = K[0] * sx
    K2[1] = K[1] * sy
    K2[0, 2] -= ox
    K2[1, 2] -= oy
    return K2


# ----------------------------------------------------------------------------------------------- depth sources
def depth_points(depth: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel centre unprojected: (points [H*W, 3], uv0 [H*W, 2]), row-major."""
    H, W = depth.shape
    uv = pixel_grid(H, W, dtype=torch.float64, device=depth.device).reshape(-1, 2)
    return unproject(uv, depth.reshape(-1).double(), K.double()), uv


def camera_control(depth: torch.Tensor, K: torch.Tensor, motion: str | None, frames: int = 49,
                   spiral: str = "orbit", source: dict | None = None) -> Tracks:
    """Static scene from one depth map, seen by a template camera path (p_t = M_t p_0)."""
    pts, uv0 = depth_points(depth, K)
    M = camera_motion(motion, frames, spiral)
    return Tracks(transform(M, pts.expand(frames, -1, -1)), K.double(), depth.shape[0], depth.shape[1], poses=M,
                  uv0=uv0, source={"kind": "camera_control", "camera_motion": motion, "spiral": spiral,
                                   **(source or {})})


def object_manipulation(depth: torch.Tensor, K: torch.Tensor, mask: torch.Tensor, kind: str, frames: int = 49,
                        distance: float | None = None, units: str = "pixels", mode: str = "fixed",
                        motion: str | None = None, spiral: str = "orbit", source: dict | None = None) -> Tracks:
    """Masked points move by an object template (about their centroid), then the camera template applies to all."""
    pts, uv0 = depth_points(depth, K)
    inside = mask.reshape(-1).to(torch.bool)
    if not inside.any():
        raise UserError("object mask is empty: nothing to move")
    centroid = pts[inside].mean(0)
    O = object_motion(kind, centroid, frames, distance, units, float(K[0, 0]), mode, tuple(depth.shape))
    moved = pts.expand(frames, -1, -1).clone()
    moved[:, inside] = transform(O, pts[inside].expand(frames, -1, -1))
    M = camera_motion(motion, frames, spiral)
    return Tracks(transform(M, moved), K.double(), depth.shape[0], depth.shape[1], poses=M, uv0=uv0,
                  source={"kind": "object_manipulation", "object_motion": kind, "distance": distance, "units": units,
                          "mode": mode, "centroid": centroid.tolist(), "masked_points": int(inside.sum()),
                          "camera_motion": motion, **(source or {})})


# ----------------------------------------------------------------------------------------------- track sources
def _finite(arr: np.ndarray, what: str) -> None:
    if not np.isfinite(arr).all():
        raise UserError(f"{what}: {int((~np.isfinite(arr)).sum())} values are NaN or Inf")


def load_tracks(path: str | Path, height: int, width: int, K: torch.Tensor | None = None, fmt: str = "xyz",
                motion: str | None = None, spiral: str = "orbit", frames: int | None = None) -> Tracks:
    """Tracks from an .npz: `tracks` [T, N, 3] (camera xyz, or (u, v, z) with fmt "uvz") or [T, N, 2] with
    `depth` [T, H, W] (2D tracks lifted by the depth at the rounded position); optional `visibility` [T, N] and
    `K` [3, 3] (the file's K wins over the argument). `frames` resamples time by nearest index; `motion` adds a
    camera template on top (p'_t = M_t p_t)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tracks not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as err:
        raise UserError(f"tracks {path}: not a readable .npz ({str(err).splitlines()[0][:160]})") from None
    if "tracks" not in arrays:
        raise UserError(f"tracks {path}: no array named 'tracks' (found {', '.join(arrays) or 'none'})")
    tr = arrays["tracks"].astype(np.float64)
    if tr.ndim != 3 or tr.shape[-1] not in (2, 3):
        raise UserError(f"tracks {path}: expected [T, N, 3] (or [T, N, 2] with depth), got shape {tr.shape}")
    T, N = tr.shape[:2]
    if T < 2 or N < 1:
        raise UserError(f"tracks {path}: need at least 2 frames and 1 point, got shape {tr.shape}")
    _finite(tr, f"tracks {path}")
    if "K" in arrays:
        try:
            K = check_intrinsics(arrays["K"])
        except ValueError as err:
            raise UserError(f"tracks {path}: K {err}") from None
    vis = arrays.get("visibility")
    if vis is not None and vis.shape != (T, N):
        raise UserError(f"tracks {path}: visibility must be [T, N] = [{T}, {N}], got {vis.shape}")
    if tr.shape[-1] == 2:
        if "depth" not in arrays:
            raise UserError(f"tracks {path}: 2D tracks [T, N, 2] need per-frame depth maps 'depth' [T, H, W]")
        tr, inview = _lift_2d(tr, arrays["depth"].astype(np.float64), path)
        vis = inview if vis is None else (vis.astype(bool) & inview)
        fmt = "uvz"
    t = torch.from_numpy(tr)
    if fmt == "uvz":
        if (t[..., 2] <= 0).any():
            raise UserError(f"tracks {path}: (u, v, z) tracks need z > 0 everywhere")
        t = unproject(t[..., :2], t[..., 2], K)
    elif fmt != "xyz":
        raise UserError(f"tracks format {fmt!r}: expected xyz or uvz")
    vis_t = None if vis is None else torch.from_numpy(vis.astype(bool))
    if frames is not None and frames != T:
        idx = torch.from_numpy(np.round(np.linspace(0, T - 1, frames)).astype(np.int64))
        t, vis_t = t[idx], None if vis_t is None else vis_t[idx]
        T = frames
    M = camera_motion(motion, T, spiral)
    return Tracks(transform(M, t), K.double(), height, width, visibility=vis_t, poses=M,
                  source={"kind": "tracks", "file": str(path), "format": fmt, "frames_in_file": int(tr.shape[0]),
                          "points": int(N), "camera_motion": motion})


def _lift_2d(tr: np.ndarray, depth: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    T = tr.shape[0]
    if depth.ndim != 3 or depth.shape[0] != T:
        raise UserError(f"tracks {path}: depth must be [T, H, W] with T = {T}, got {depth.shape}")
    _finite(depth, f"depth in {path}")
    if (depth <= 0).any():
        raise UserError(f"depth in {path}: {int((depth <= 0).sum())} values are zero or negative")
    h, w = depth.shape[1:]
    col = np.floor(tr[..., 0]).astype(np.int64)
    row = np.floor(tr[..., 1]).astype(np.int64)
    inview = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    z = depth[np.arange(T)[:, None], row.clip(0, h - 1), col.clip(0, w - 1)]
    return np.concatenate([tr, z[..., None]], axis=-1), inview
