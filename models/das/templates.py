"""Camera-motion strings and object-motion templates (DaS paper Fig. 3c camera control, Fig. 3a object manipulation).

Camera grammar: one or more `kind args [start end]` joined by `;` (case-insensitive):

    trans dx dy dz [start end]   translation (dx, dy, dz) * s
    rot axis deg [start end]     right-handed rotation about x / y / z by deg * s
    spiral R [start end]         spiral of radius 0.1 R (see `spiral_poses`)

with s = (f - start) / (end - start) for frame f in [start, end], identity before start, the end value after end.
Frames default to 0 .. T-1, are clamped to that range and swapped when start > end; start == end is an error.
The per-frame product is taken in the written order: M_f = M_f(1) @ M_f(2) @ ...  Each M_f maps first-frame camera
coordinates to frame-f camera coordinates (p_f = M_f p_0): `trans 0.2 0 0` moves the points right, i.e. the camera
left; `trans 0 0 0.5` moves them away (dolly back).

Spiral modes: "orbit" (default) is a true orbit, the camera placed on the spiral looking at (0, 0, 0.5 R);
"compat" applies that camera-to-world pose directly as the point transform, which is what the original demo did.
"""
from __future__ import annotations

import math

import torch

from models.core.cli import UserError
from models.das.camera import invert_pose, look_at, rotation, translation

KINDS = {"trans": (3, 5), "rot": (2, 4), "spiral": (1, 3)}  # allowed argument counts
SPIRAL_MODES = ("orbit", "compat")


def _number(text: str, what: str, template: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"camera motion {template!r}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise UserError(f"camera motion {template!r}: {what} must be finite, got {text!r}")
    return value


def _frame_range(args: list[str], frames: int, template: str) -> tuple[int, int]:
    if not args:
        return 0, frames - 1
    lo, hi = (_number(a, n, template) for a, n in zip(args, ("start", "end")))
    if lo != int(lo) or hi != int(hi):
        raise UserError(f"camera motion {template!r}: start and end must be whole frame numbers")
    lo, hi = (min(max(int(x), 0), frames - 1) for x in (lo, hi))
    if lo == hi:
        raise UserError(f"camera motion {template!r}: start == end ({lo}) leaves no frames to move over")
    return min(lo, hi), max(lo, hi)


def ramp(frames: int, start: int, end: int) -> torch.Tensor:
    """s_f = (f - start) / (end - start), clamped to [0, 1] (identity before start, holds after end)."""
    f = torch.arange(frames, dtype=torch.float64)
    return ((f - start) / (end - start)).clamp(0.0, 1.0)


def spiral_poses(radius: float, n: int, mode: str = "orbit") -> torch.Tensor:
    """[n, 4, 4] spiral: r_k = 0.1 R sin(pi tau), theta = 2 pi tau, camera at (r sin theta, 0.3 r cos theta, -0.5 r).

    The camera looks at (0, 0, 0.5 R) with world up (0, 1, 0); the pose P = [look-at | position] is identity at both
    ends and its largest offset, r = 0.1 R, is at the middle. "orbit" returns P^-1 (world-to-camera, a real orbit
    around the target), "compat" returns P itself as the original demo used it.
    """
    if mode not in SPIRAL_MODES:
        raise ValueError(f"spiral mode must be one of {SPIRAL_MODES}, got {mode!r}")
    out = torch.empty(n, 4, 4, dtype=torch.float64)
    target = (0.0, 0.0, 0.5 * radius)
    for k in range(n):
        tau = k / (n - 1) if n > 1 else 0.0
        r, theta = 0.1 * radius * math.sin(math.pi * tau), 2.0 * math.pi * tau
        pos = (r * math.sin(theta), 0.3 * r * math.cos(theta), -0.5 * r)
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = look_at(pos, target) if radius != 0 else torch.eye(3, dtype=torch.float64)
        pose[:3, 3] = torch.tensor(pos, dtype=torch.float64)
        out[k] = pose if mode == "compat" else invert_pose(pose)
    return out


def _one(template: str, frames: int, spiral: str) -> torch.Tensor:
    words = template.split()
    kind = words[0].lower()
    args = words[1:]
    if kind not in KINDS:
        raise UserError(f"camera motion {template!r}: unknown kind {words[0]!r} (expected trans, rot or spiral)")
    if len(args) not in KINDS[kind]:
        counts = " or ".join(map(str, KINDS[kind]))
        raise UserError(f"camera motion {template!r}: {kind} takes {counts} arguments, got {len(args)}")
    n_own = KINDS[kind][0]
    start, end = _frame_range(args[n_own:], frames, template)
    s = ramp(frames, start, end)
    if kind == "trans":
        d = torch.tensor([_number(a, n, template) for a, n in zip(args[:3], ("dx", "dy", "dz"))], dtype=torch.float64)
        return torch.stack([translation(*(d * si).tolist()) for si in s])
    if kind == "rot":
        axis = args[0].lower()
        if axis not in ("x", "y", "z"):
            raise UserError(f"camera motion {template!r}: rotation axis must be x, y or z, got {args[0]!r}")
        deg = _number(args[1], "angle", template)
        return torch.stack([rotation(axis, deg * float(si)) for si in s])
    radius = _number(args[0], "radius", template)
    poses = spiral_poses(radius, frames, spiral)
    # the original indexes its pose list with floor(s * (n - 1)); the epsilon keeps exact frames exact
    idx = torch.floor(s * (frames - 1) + 1e-9).long().clamp(0, frames - 1)
    return poses[idx]


def camera_motion(text: str | None, frames: int, spiral: str = "orbit") -> torch.Tensor:
    """Parse a camera-motion string into [frames, 4, 4] float64 matrices (identity for None / empty)."""
    if frames < 2:
        raise UserError(f"camera motion needs at least 2 frames, got {frames}")
    out = torch.eye(4, dtype=torch.float64).expand(frames, 4, 4).clone()
    if text is None or not text.strip():
        return out
    parts = [p.strip() for p in text.split(";")]
    if any(not p for p in parts):
        raise UserError(f"camera motion {text!r}: empty part between ';'")
    for part in parts:
        out = out @ _one(part, frames, spiral)
    return out


# ------------------------------------------------------------------------------------------------ object motion
OBJECT_DIRECTIONS = {"up": (0, -1, 0), "down": (0, 1, 0), "left": (-1, 0, 0), "right": (1, 0, 0),
                     "front": (0, 0, 1), "back": (0, 0, -1)}  # front = away from the camera, as in the original
OBJECT_KINDS = (*OBJECT_DIRECTIONS, "rot")
OBJECT_UNITS = ("pixels", "depth", "scene")


def object_motion(kind: str, centroid, frames: int, distance: float | None = None, units: str = "pixels",
                  focal: float = 1.0, mode: str = "fixed", size: tuple[int, int] | None = None) -> torch.Tensor:
    """[frames, 4, 4] transforms T(c) A(s) T(-c) of an object's first-frame camera points, s = f / (frames - 1).

    kind: up / down / left / right / front / back (translation along the base vector) or rot (about the vertical
    axis through the centroid c, `distance` degrees at the last frame). Translation units:
      pixels  the centroid moves `distance` px on screen at its depth (d * z_c / focal scene units; default 50,
              the original's 50 px), along z too for front / back;
      depth   a fraction of the centroid depth z_c;
      scene   scene units (those of the depth map).
    mode "compat" reproduces the original single-image path: `distance` is taken as is (no units), and the
    translation column's x and y are divided by the image width and height (size = (H, W)), which also moves the
    rotation pivot off the centroid.
    """
    kind = kind.lower()
    if kind not in OBJECT_KINDS:
        raise UserError(f"object motion {kind!r}: expected one of {', '.join(OBJECT_KINDS)}")
    if units not in OBJECT_UNITS:
        raise UserError(f"object motion units {units!r}: expected one of {', '.join(OBJECT_UNITS)}")
    if frames < 2:
        raise UserError(f"object motion needs at least 2 frames, got {frames}")
    c = torch.as_tensor(centroid, dtype=torch.float64)
    d = 50.0 if distance is None else float(distance)
    s = torch.arange(frames, dtype=torch.float64) / (frames - 1)
    if kind == "rot":
        A = torch.stack([rotation("y", d * float(si)) for si in s])
    else:
        scale = 1.0 if mode == "compat" else {"pixels": float(c[2]) / focal, "depth": float(c[2]), "scene": 1.0}[units]
        step = torch.tensor(OBJECT_DIRECTIONS[kind], dtype=torch.float64) * d * scale
        A = torch.stack([translation(*(step * si).tolist()) for si in s])
    M = translation(*c.tolist()) @ A @ translation(*(-c).tolist())
    if mode == "compat":
        if size is None:
            raise ValueError("compat object motion needs the image size (H, W)")
        M[:, 0, 3] /= size[1]
        M[:, 1, 3] /= size[0]
    elif mode != "fixed":
        raise ValueError(f"object motion mode must be 'fixed' or 'compat', got {mode!r}")
    return M
