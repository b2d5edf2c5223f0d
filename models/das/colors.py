"""The tracking colour code (DaS paper, Fig. 2a): R = u0 / W, G = v0 / H, B = robust inverse depth, all from frame 0.

B = clip((1/d - P_lo) / (P_hi - P_lo), 0, 1) with P_lo, P_hi the 2nd and 98th percentiles of 1/d over the first
frame's points (near = bright). d is the camera z (default) or the Euclidean distance to the camera (the mesh
path of the original, which used Blender's distance). Colours are stored as floor(255 c) (the single-image path
of the original truncates), so a level l decodes to the centre of its bin, (l + 0.5) / 255.

`Normalization` holds every constant needed to decode a colour back to (u0, v0, 1/d); it is written into the
tracking video's JSON sidecar.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

COORDS = ("continuous", "index")  # u0 / W, or col / (W - 1) for the pixel centre col + 0.5 (the original MoGe path)
DEPTHS = ("z", "distance")


@dataclasses.dataclass
class Normalization:
    width: int
    height: int
    inv_lo: float  # 1/d at the low percentile (maps to B = 0)
    inv_hi: float  # 1/d at the high percentile (maps to B = 1)
    percentiles: tuple[float, float] = (2.0, 98.0)
    clip: bool = True
    coords: str = "continuous"
    depth: str = "z"
    degenerate: bool = False  # all inverse depths equal: B is 0.5 everywhere

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["percentiles"] = list(self.percentiles)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Normalization":
        d = dict(d)
        d["percentiles"] = tuple(d["percentiles"])
        return cls(**d)

    @property
    def denominators(self) -> tuple[float, float]:
        return (self.width - 1, self.height - 1) if self.coords == "index" else (self.width, self.height)


def inverse_depth(points: torch.Tensor, depth: str = "z") -> torch.Tensor:
    """1/z or 1/|p| of camera points [N, 3]; 0 for points at or behind the camera (they count as infinitely far)."""
    d = points[..., 2] if depth == "z" else points.norm(dim=-1)
    ok = torch.isfinite(d) & (points[..., 2] > 0)
    return torch.where(ok, 1.0 / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(d))


def fit_normalization(inv: torch.Tensor, width: int, height: int, percentiles=(2.0, 98.0), clip: bool = True,
                      coords: str = "continuous", depth: str = "z") -> Normalization:
    """The 2/98 percentile range of the first frame's inverse depths (linear interpolation between ranks)."""
    if coords not in COORDS or depth not in DEPTHS:
        raise ValueError(f"coords must be in {COORDS} and depth in {DEPTHS}")
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}")
    if inv.numel() == 0:
        raise ValueError("no points to normalise")
    q = torch.quantile(inv.double().flatten(), torch.tensor([lo_p / 100.0, hi_p / 100.0], dtype=torch.float64))
    lo, hi = float(q[0]), float(q[1])
    degenerate = not hi - lo > 1e-12 * max(abs(hi), 1e-300)
    return Normalization(int(width), int(height), lo, hi, (float(lo_p), float(hi_p)), bool(clip), coords, depth,
                         degenerate)


def encode(uv0: torch.Tensor, inv0: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """Float colours [N, 3] in [0, 1] from first-frame pixels (u0, v0) [N, 2] and inverse depths [N].

    u0 and v0 are clipped to [0, 1] after normalising (tracks may start outside the image); B is clipped unless
    norm.clip is False (then it is saturated only by the 8-bit conversion, like the original's OpenCV path).
    """
    wd, hd = norm.denominators
    off = 0.5 if norm.coords == "index" else 0.0
    r = ((uv0[..., 0].double() - off) / wd).clamp(0.0, 1.0)
    g = ((uv0[..., 1].double() - off) / hd).clamp(0.0, 1.0)
    if norm.degenerate:
        b = torch.full_like(r, 0.5)
    else:
        b = (inv0.double() - norm.inv_lo) / (norm.inv_hi - norm.inv_lo)
        b = b.clamp(0.0, 1.0) if norm.clip else b
    return torch.stack([r, g, b], dim=-1)


def to_levels(colors: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 levels floor(255 c), saturated to 0..255."""
    return torch.floor(colors * 255.0).clamp(0, 255).to(torch.uint8)


def decode(levels: torch.Tensor, norm: Normalization) -> torch.Tensor:
    """uint8 levels [..., 3] -> (u0, v0, 1/d) [..., 3] at the centre of each level's bin.

    Error bounds for values inside the normalised range: W / 510 px in u0, H / 510 px in v0, (P_hi - P_lo) / 510
    in 1/d (half a level); clipped values only say "beyond the range".
    """
    c = (levels.double() + 0.5) / 255.0
    wd, hd = norm.denominators
    inv = torch.full_like(c[..., 2], norm.inv_lo) if norm.degenerate else \
        norm.inv_lo + c[..., 2] * (norm.inv_hi - norm.inv_lo)
    off = 0.5 if norm.coords == "index" else 0.0
    return torch.stack([c[..., 0] * wd + off, c[..., 1] * hd + off, inv], dim=-1)


# --------------------------------------------------------------------------------------------------- sidecar
SIDECAR_FORMAT = "gp3d-das-tracking/1"


def sidecar(norm: Normalization, K: torch.Tensor, poses: torch.Tensor | None, source: dict, points: int,
            frames: int, footprint: str, fps: float, **extra) -> dict:
    """The JSON record written beside every tracking video (K, per-frame poses, colour normalisation, source)."""
    return {"format": SIDECAR_FORMAT, "frames": int(frames), "height": norm.height, "width": norm.width,
            "fps": float(fps), "value_range": [0, 1], "levels": "floor(255 c)", "footprint": footprint,
            "points": int(points), "K": K.double().tolist(),
            "poses": None if poses is None else poses.double().tolist(),
            "normalization": norm.to_json(), "source": source, **extra}


def read_sidecar(path: str | Path) -> dict:
    from models.core.cli import UserError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable tracking sidecar ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise UserError(f"{path}: not a tracking sidecar (format {SIDECAR_FORMAT!r} expected)")
    return data
