"""Procedural normal maps for SfS training: object scenes and relief height fields (our own generator; the
reference's training set is not public).

Frame: x right, y up, z toward the viewer, orthographic camera looking along -z; pixel (row, col) of an RxR map
sits at x = (col + 0.5) * 2/R - 1, y = 1 - (row + 0.5) * 2/R (the frame spans [-1, 1]^2). Background is (0, 0, 0).
Everything is a deterministic function of (seed, resolution); numpy draws the parameters, torch does the pixel work.

(a) `object_scene`: 1-5 randomly rotated primitives (ellipsoids, superquadrics, rounded boxes, capsules, cylinders,
    tori, rounded cones), hard or smooth union, optional small displacement detail; ellipsoids of hard unions are
    intersected analytically, everything else is sphere traced (64 iterations) on the rays that hit a bounding sphere.
    Normals = normalized central-difference SDF gradient (h = 1e-3). The scene is rescaled to 30-70% foreground.
(b) `relief_scene`: full-frame height field = sum of 2-7 signed components, scaled to a mean slant of 15-23 deg,
    plus an optional planar tilt; normals from finite differences, n ~ (-dz/dcol, +dz/drow, 1) (y up).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.core.geometry import normals_from_height  # noqa: F401  (re-exported: the one definition)

FAMILIES = ("object", "relief")
OBJECT, RELIEF = 0, 1
PRIMITIVES = ("ellipsoid", "superquadric", "roundbox", "capsule", "cylinder", "torus", "cone")


def pixel_grid(res: int, dtype=torch.float32):
    """(x, y) coordinates of pixel centres, each [R, R], frame [-1, 1]^2 with y up."""
    c = (torch.arange(res, dtype=dtype) + 0.5) * (2.0 / res) - 1.0
    y, x = torch.meshgrid(-c, c, indexing="ij")
    return x, y


def slant_deg(normals: torch.Tensor) -> torch.Tensor:
    """Per-pixel slant (angle to the view axis) in degrees; [..., 3, H, W] -> [..., H, W]."""
    return torch.rad2deg(torch.acos(normals[..., 2, :, :].clamp(-1, 1)))


# ----------------------------------------------------------------------------------------------------------------
# (b) relief components; all take pixel-centre coordinates x, y [R, R] in frame units and return heights [R, R]
# ----------------------------------------------------------------------------------------------------------------

def cap(x, y, cx, cy, radius, rim_slant_deg=60.0):
    """Spherical-cap dome of base `radius` whose rim has the given slant (90 = hemisphere)."""
    s = math.sin(math.radians(rim_slant_deg))
    rho = radius / s
    d2 = (x - cx) ** 2 + (y - cy) ** 2
    z = (rho * rho - d2).clamp_min(0).sqrt() - rho * math.cos(math.radians(rim_slant_deg))
    return torch.where(d2 < radius * radius, z, torch.zeros_like(z))


def gaussian_bump(x, y, cx, cy, sigma, amp=1.0):
    return amp * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma * sigma))


def _profile(d, width, kind: str):
    """Cross-section as a function of distance d from the centre line: 'ellipse' (half-ellipse) or 'gauss'."""
    if kind == "ellipse":
        return (1 - (d / width) ** 2).clamp_min(0).sqrt()
    return torch.exp(-0.5 * (d / width) ** 2)


def ring(x, y, cx, cy, r0, width, profile="gauss"):
    """Annular ridge of radius r0 (height 1 at its crest); negate for a groove."""
    d = ((x - cx) ** 2 + (y - cy) ** 2).sqrt() - r0
    return _profile(d.abs(), width, profile)


def smoothstep(e0, e1, v):
    t = ((v - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def plateau(x, y, cx, cy, r0, edge, points=0, depth=0.0, sides=0, angle=0.0, sharp=1.0):
    """Plateau of height 1 with a smooth-stepped edge of width `edge` (negate for a well).

    Outline in polar form around (cx, cy): a star r0 * (1 + depth * (2 |cos(points * theta / 2)|^(2 sharp) - 1))
    when points > 0 (sharp = 1 is a plain cosine, larger is pointier), a regular polygon with `sides` sides when
    sides >= 3, else a disc.
    """
    dx, dy = x - cx, y - cy
    d = (dx * dx + dy * dy).sqrt()
    th = torch.atan2(dy, dx) - angle
    if points > 0:
        r = r0 * (1 + depth * (2 * torch.cos(points * th / 2).abs() ** (2 * sharp) - 1))
    elif sides >= 3:
        seg = 2 * math.pi / sides
        r = r0 * math.cos(math.pi / sides) / torch.cos(torch.remainder(th, seg) - seg / 2)
    else:
        r = torch.full_like(d, r0)
    return smoothstep(-edge / 2, edge / 2, r - d)


def catmull_rom(ctrl: np.ndarray, samples_per_seg: int = 16) -> np.ndarray:
    """Points [M, 2] along a uniform Catmull-Rom spline through control points [K, 2] (K >= 2)."""
    p = np.concatenate([2 * ctrl[:1] - ctrl[1:2], ctrl, 2 * ctrl[-1:] - ctrl[-2:-1]])
    t = np.linspace(0, 1, samples_per_seg, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(p[-2][None])
    return np.concatenate(out)


def polyline_distance(x, y, pts: np.ndarray):
    """Euclidean distance from each pixel to a polyline [M, 2] (exact per segment)."""
    p = torch.as_tensor(pts, dtype=x.dtype)
    a, b = p[:-1], p[1:]
    ab = b - a
    q = torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)
    best = torch.full((q.shape[0],), float("inf"), dtype=x.dtype)
    for s in range(0, a.shape[0], 32):  # chunks keep the [pixels, segments] temporaries small
        aa, dd = a[s:s + 32], ab[s:s + 32]
        rel = q[:, None, :] - aa[None]
        t = ((rel * dd[None]).sum(-1) / (dd * dd).sum(-1).clamp_min(1e-12)[None]).clamp(0, 1)
        dist = (rel - t[..., None] * dd[None]).norm(dim=-1).amin(dim=1)
        best = torch.minimum(best, dist)
    return best.reshape(x.shape)


def tube(x, y, ctrl: np.ndarray, width, profile="ellipse"):
    """Ridge of height 1 along a Catmull-Rom curve through `ctrl` (frame units); negate for a groove."""
    return _profile(polyline_distance(x, y, catmull_rom(np.asarray(ctrl, dtype=np.float64))), width, profile)


def bandlimited_noise(res: int, rng: np.random.Generator, cycles: float) -> torch.Tensor:
    """White noise low-passed in Fourier space (Gaussian filter, corner `cycles` per frame), unit std."""
    w = torch.as_tensor(rng.standard_normal((res, res)), dtype=torch.float32)
    f = torch.fft.fftfreq(res) * res  # cycles per frame
    fr = (f[:, None] ** 2 + f[None] ** 2).sqrt()
    z = torch.fft.ifft2(torch.fft.fft2(w) * torch.exp(-0.5 * (fr / cycles) ** 2)).real
    return z / z.std().clamp_min(1e-12)


def _relief_component(kind: str, x, y, res: int, rng: np.random.Generator):
    """One random component, with a height scale that gives it slopes of order one before global scaling."""
    px = 2.0 / 160  # widths below are quoted in pixels of a 160-px frame
    cx, cy = rng.uniform(-0.8, 0.8, size=2)
    if kind == "cap":
        return cap(x, y, cx, cy, rng.uniform(0.12, 0.45), rng.uniform(30, 80)) * rng.uniform(0.5, 1.0)
    if kind == "gauss":
        s = rng.uniform(0.06, 0.35)
        return gaussian_bump(x, y, cx, cy, s, s * rng.uniform(0.8, 2.0))
    if kind == "ring":
        w = rng.uniform(3, 10) * px
        return ring(x, y, cx * 0.6, cy * 0.6, rng.uniform(0.15, 0.7), w, rng.choice(["gauss", "ellipse"])) * w
    if kind == "plateau":
        edge = rng.uniform(4, 15) * px
        star = rng.random() < 0.5
        z = plateau(x, y, cx * 0.7, cy * 0.7, rng.uniform(0.2, 0.6), edge,
                    points=int(rng.integers(3, 7)) if star else 0, depth=rng.uniform(0.15, 0.45),
                    sides=0 if star else int(rng.integers(3, 9)), angle=rng.uniform(0, 2 * math.pi),
                    sharp=rng.uniform(1, 4))
        return z * edge * rng.uniform(0.5, 1.5)
    if kind == "tube":
        k = int(rng.integers(4, 7))
        t = np.linspace(-1.2, 1.2, k)
        off = rng.uniform(-0.6, 0.6, size=k)
        ang = rng.uniform(0, math.pi)
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        ctrl = np.stack([t, off], 1) @ rot.T + rng.uniform(-0.3, 0.3, size=2)
        w = rng.uniform(3, 12) * px
        return tube(x, y, ctrl, w, rng.choice(["gauss", "ellipse"])) * w * rng.uniform(0.7, 1.5)
    cycles = rng.uniform(2, 8)  # band-limited noise
    return bandlimited_noise(res, rng, cycles) * (rng.uniform(0.3, 0.8) / (math.pi * cycles))


RELIEF_KINDS = ("cap", "gauss", "ring", "plateau", "tube", "noise")
RELIEF_WEIGHTS = (0.22, 0.2, 0.16, 0.16, 0.16, 0.10)


def relief_scene(res: int, seed: int, return_height: bool = False):
    """Relief normal map [3, R, R] (no background); with return_height also the height in pixel units [R, R]."""
    rng = np.random.default_rng([int(seed), RELIEF, 0x5F5])
    x, y = pixel_grid(res)
    z = torch.zeros(res, res)
    kinds = rng.choice(len(RELIEF_KINDS), size=int(rng.integers(2, 8)), p=RELIEF_WEIGHTS)
    for k in kinds:
        sign = 1.0 if rng.random() < 0.5 else -1.0  # equal prior on convex and concave
        z = z + sign * _relief_component(RELIEF_KINDS[k], x, y, res, rng)
    spacing = 2.0 / res
    g_row, g_col = torch.gradient(z, spacing=spacing)
    # global height scale k: the components' mean slant hits the target; 95th percentile capped at 70 deg.
    # The planar tilt is added afterwards so that it cannot stand in for the relief.
    target = math.radians(rng.uniform(15, 23))
    g = (g_col * g_col + g_row * g_row).sqrt().flatten().double()

    def mean_slant(k):
        return torch.atan(k * g).mean().item()

    lo, hi = 0.0, 1.0
    while mean_slant(hi) < target and hi < 1e6:
        hi *= 2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_slant(mid) < target else (lo, mid)
    k = 0.5 * (lo + hi)
    p95 = torch.quantile(g, 0.95).item()
    if p95 > 0:
        k = min(k, math.tan(math.radians(70)) / p95)
    tilt = math.tan(math.radians(rng.uniform(0, 20))) if rng.random() < 0.5 else 0.0
    phi = rng.uniform(0, 2 * math.pi)
    zt = k * z + tilt * (math.cos(phi) * x + math.sin(phi) * y)
    n = normals_from_height(zt, spacing)
    if return_height:
        return n, zt / spacing
    return n


# ----------------------------------------------------------------------------------------------------------------
# (a) object scenes
# ----------------------------------------------------------------------------------------------------------------

def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random rotation (QR of a Gaussian matrix with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _sample_primitive(rng: np.random.Generator) -> dict:
    kind = PRIMITIVES[int(rng.integers(len(PRIMITIVES)))]
    p: dict = {"kind": kind, "center": rng.uniform(-0.4, 0.4, size=3), "rot": _rotation(rng)}
    if kind == "ellipsoid":
        p["axes"] = rng.uniform(0.2, 0.7, size=3)
        p["bound"] = p["axes"].max()
    elif kind == "superquadric":
        p["axes"] = rng.uniform(0.2, 0.6, size=3)
        p["e"] = np.exp(rng.uniform(math.log(0.3), math.log(3.0), size=2))  # (e1 vertical, e2 horizontal)
        p["bound"] = np.linalg.norm(p["axes"])
    elif kind == "roundbox":
        p["half"] = rng.uniform(0.15, 0.5, size=3)
        p["round"] = rng.uniform(0.02, 0.6) * p["half"].min()
        p["bound"] = np.linalg.norm(p["half"])
    elif kind == "capsule":
        p["half_len"], p["radius"] = rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.35)
        p["bound"] = p["half_len"] + p["radius"]
    elif kind == "cylinder":
        p["half_len"], p["radius"] = rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.45)
        p["round"] = rng.uniform(0.0, 0.3) * min(p["half_len"], p["radius"])
        p["bound"] = math.hypot(p["half_len"], p["radius"])
    elif kind == "torus":
        p["major"] = rng.uniform(0.25, 0.55)
        p["minor"] = rng.uniform(0.06, min(0.2, 0.6 * p["major"]))
        p["bound"] = p["major"] + p["minor"]
    else:  # rounded cone along local y, base sphere r1 at -h/2, tip sphere r2 at +h/2
        r1, r2 = rng.uniform(0.2, 0.45), rng.uniform(0.02, 0.1)
        h = rng.uniform(max(0.3, 1.3 * (r1 - r2)), 0.9)
        p.update(r1=r1, r2=r2, height=h, bound=max(math.hypot(h / 2, r1), h / 2 + r2))
    return p


def _len(parts) -> torch.Tensor:
    """Euclidean length of a vector given as a tuple of component tensors (cheaper than stack + norm)."""
    acc = parts[0] * parts[0]
    for c in parts[1:]:
        acc = acc + c * c
    return acc.sqrt()


def _sdf_local(p: dict, q: torch.Tensor) -> torch.Tensor:
    """Signed distance (exact or a conservative estimate) of one primitive at local points q [M, 3]."""
    kind = p["kind"]
    if kind == "ellipsoid":  # first-order estimate, good near the surface; signed steps fix small overshoots
        a = torch.as_tensor(p["axes"], dtype=q.dtype)
        k0 = _len((q / a).unbind(1))
        k1 = _len((q / (a * a)).unbind(1)).clamp_min(1e-9)
        return k0 * (k0 - 1) / k1
    if kind == "superquadric":  # inside-outside function G is 1-homogeneous; (G - 1) * min axis underestimates
        a = torch.as_tensor(p["axes"], dtype=q.dtype)
        e1, e2 = p["e"]
        u = (q / a).abs() + 1e-12
        xy = u[:, 0] ** (2 / e2) + u[:, 1] ** (2 / e2)
        g = (xy ** (e2 / e1) + u[:, 2] ** (2 / e1)) ** (e1 / 2)
        return (g - 1) * (0.5 * float(a.min()))
    if kind == "roundbox":
        b = torch.as_tensor(p["half"] - p["round"], dtype=q.dtype)
        d = q.abs() - b
        return _len(d.clamp_min(0).unbind(1)) + d.amax(dim=1).clamp_max(0) - p["round"]
    if kind == "capsule":
        qy = q[:, 1] - q[:, 1].clamp(-p["half_len"], p["half_len"])
        return _len((q[:, 0], qy, q[:, 2])) - p["radius"]
    rad = _len((q[:, 0], q[:, 2]))
    if kind == "cylinder":
        rr = p["round"]
        dx, dy = rad - (p["radius"] - rr), q[:, 1].abs() - (p["half_len"] - rr)
        outside = _len((dx.clamp_min(0), dy.clamp_min(0)))
        return torch.maximum(dx, dy).clamp_max(0) + outside - rr
    if kind == "torus":
        return _len((rad - p["major"], q[:, 1])) - p["minor"]
    r1, r2, h = p["r1"], p["r2"], p["height"]  # rounded cone: side line tangent to both end spheres
    b = (r1 - r2) / h
    a = math.sqrt(1 - b * b)
    yy = q[:, 1] + h / 2
    k = -b * rad + a * yy
    d_side = a * rad + b * yy - r1
    d_base = _len((rad, yy)) - r1
    d_tip = _len((rad, yy - h)) - r2
    return torch.where(k < 0, d_base, torch.where(k > a * h, d_tip, d_side))


class _Scene:
    """Primitives + union mode + global scale; world SDF and bounding spheres."""

    def __init__(self, prims, smooth_k: float, detail, scale: float = 1.0):
        self.prims, self.k, self.detail, self.scale = prims, smooth_k, detail, scale
        self.offset = np.zeros(3)  # world = scale * scene + offset (offset only moves x, y)
        self._t = [(torch.as_tensor(p["center"], dtype=torch.float32), torch.as_tensor(p["rot"], dtype=torch.float32))
                   for p in prims]

    def sdf(self, pts: torch.Tensor, prims=None) -> torch.Tensor:
        s = self.scale
        q0 = (pts - torch.as_tensor(self.offset, dtype=pts.dtype)) / s
        d = None
        for i in (range(len(self.prims)) if prims is None else prims):
            c, r = self._t[i]
            di = _sdf_local(self.prims[i], (q0 - c) @ r)  # row form of R^T (p - c)
            if d is None:
                d = di
            elif self.k > 0:  # polynomial smooth minimum
                h = (self.k - (d - di).abs()).clamp_min(0) / self.k
                d = torch.minimum(d, di) - h * h * self.k / 4
            else:
                d = torch.minimum(d, di)
        if self.detail is not None:
            amp, w, ph = self.detail
            d = d + amp * torch.sin(q0 @ w + ph).mean(dim=1)
        return d * s

    def bounds(self, prims):
        pad = self.k + (self.detail[0] if self.detail is not None else 0.0) + 1e-3
        return [(self.prims[i]["center"] * self.scale + self.offset, (self.prims[i]["bound"] + pad) * self.scale)
                for i in prims]


def _trace(scene: _Scene, prims, x, y, iters=64, eps=2e-4, relax=0.9):
    """Sphere-trace orthographic rays (x, y, z from +inf toward -z) against the union of `prims`.

    Returns (hit [N] bool, z [N]). Only rays through a bounding sphere are traced, starting at its nearest entry;
    finished rays are dropped from the active set each iteration.
    """
    n = x.shape[0]
    z0 = torch.full((n,), -float("inf"))
    z1 = torch.full((n,), float("inf"))
    for c, rad in scene.bounds(prims):
        r2 = (x - c[0]) ** 2 + (y - c[1]) ** 2
        half = (rad * rad - r2).clamp_min(0).sqrt()
        inside = r2 < rad * rad
        z0 = torch.where(inside, torch.maximum(z0, c[2] + half), z0)
        z1 = torch.where(inside, torch.minimum(z1, c[2] - half), z1)
    hit = torch.zeros(n, dtype=torch.bool)
    z = z0.clone()
    active = torch.nonzero(torch.isfinite(z0)).squeeze(1)
    tol = eps * scene.scale
    for it in range(iters):
        if active.numel() == 0:
            break
        za = z[active]
        d = scene.sdf(torch.stack([x[active], y[active], za], 1), prims)
        done = d.abs() < (tol if it < iters - 1 else 20 * tol)
        hit[active[done]] = True
        za = za - relax * d
        z[active] = za
        keep = ~done & (za > z1[active]) & (it < iters - 1)
        active = active[keep]
    return hit, z


def _ellipsoid_hits(scene: _Scene, prims, x, y):
    """Analytic front intersections of orthographic rays with ellipsoids: (z [K, N] or -inf, normals [K, N, 3])."""
    zs, ns = [], []
    for i in prims:
        p = scene.prims[i]
        a = p["axes"] * scene.scale
        m = torch.as_tensor(p["rot"] @ np.diag(1 / a ** 2) @ p["rot"].T, dtype=torch.float32)
        c = torch.as_tensor(p["center"] * scene.scale + scene.offset, dtype=torch.float32)
        u = torch.stack([x - c[0], y - c[1], torch.zeros_like(x)], 1)
        # (u + s e_z)^T M (u + s e_z) = 1, quadratic in s = z - c_z; the front hit is the larger root
        qa = m[2, 2]
        qb = 2 * (u @ m[:, 2])
        qc = ((u @ m) * u).sum(1) - 1
        disc = qb * qb - 4 * qa * qc
        s = (-qb + disc.clamp_min(0).sqrt()) / (2 * qa)
        zi = torch.where(disc > 0, c[2] + s, torch.full_like(s, -float("inf")))
        pts = torch.stack([x, y, zi.clamp_min(-1e3)], 1) - c
        ni = pts @ m
        zs.append(zi)
        ns.append(ni / ni.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return torch.stack(zs), torch.stack(ns)


def _render_scene(scene: _Scene, res: int) -> torch.Tensor:
    """Normal map [3, R, R] of a scene (background 0)."""
    gx, gy = pixel_grid(res)
    x, y = gx.flatten(), gy.flatten()
    n = x.shape[0]
    best_z = torch.full((n,), -float("inf"))
    normals = torch.zeros(n, 3)
    all_p = list(range(len(scene.prims)))
    analytic = [i for i in all_p if scene.k == 0 and scene.detail is None and scene.prims[i]["kind"] == "ellipsoid"]
    traced = [i for i in all_p if i not in analytic]
    if analytic:
        ze, ne = _ellipsoid_hits(scene, analytic, x, y)
        best_z, arg = ze.max(dim=0)
        normals = ne.gather(0, arg[None, :, None].expand(1, n, 3))[0]
    if traced:
        hit, zt = _trace(scene, traced, x, y)
        win = hit & (zt > best_z)
        idx = torch.nonzero(win).squeeze(1)
        if idx.numel():
            pts = torch.stack([x[idx], y[idx], zt[idx]], 1)
            h = 1e-3
            off = torch.cat([torch.eye(3), -torch.eye(3)]) * h
            d = scene.sdf((pts[None] + off[:, None]).reshape(-1, 3), traced).reshape(6, -1)
            g = (d[:3] - d[3:]).T / (2 * h)
            normals[idx] = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            best_z = torch.where(win, zt, best_z)
    normals[~torch.isfinite(best_z)] = 0.0
    return normals.T.reshape(3, res, res).contiguous()


def object_scene(res: int, seed: int, coarse: int = 48) -> torch.Tensor:
    """Object-scene normal map [3, R, R] with background 0, aiming at 30-70% foreground."""
    rng = np.random.default_rng([int(seed), OBJECT, 0x0B7])
    prims = [_sample_primitive(rng) for _ in range(int(rng.integers(1, 6)))]
    smooth_k = rng.uniform(0.05, 0.2) if rng.random() < 0.5 else 0.0
    detail = None
    if rng.random() < 0.3:  # small band-limited displacement (0.5-2% of the object size)
        freq = rng.uniform(8, 20, size=4)
        dirs = rng.standard_normal((3, 4))
        dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
        amp = min(rng.uniform(0.005, 0.02) * 0.5, 0.12 / freq.max())
        detail = (amp, torch.as_tensor(dirs * freq, dtype=torch.float32),
                  torch.as_tensor(rng.uniform(0, 2 * math.pi, size=4), dtype=torch.float32))
    target, recentre = rng.uniform(0.35, 0.65), rng.uniform(0.5, 1.0)
    scene = _Scene(prims, smooth_k, detail)
    gx, gy = pixel_grid(coarse)
    for it in range(2):  # coarse silhouettes set the framing: pull the centroid in, then scale to the target
        fg = (_render_scene(scene, coarse) != 0).any(0).float()
        frac = fg.mean().item()
        if frac <= 0:
            scene.scale *= 2.0
            continue
        if it == 0:
            centroid = np.array([(gx * fg).sum().item(), (gy * fg).sum().item(), 0.0]) / fg.sum().item()
            scene.offset = -recentre * centroid
        new = float(np.clip(scene.scale * math.sqrt(target / frac), 0.4, 3.0))
        scene.offset = scene.offset * (new / scene.scale)  # zoom about the frame centre
        scene.scale = new
    return _render_scene(scene, res)


def normal_map(seed: int, res: int, family: int | str | None = None) -> tuple[torch.Tensor, int]:
    """One procedural map [3, R, R] and its family index (0 object, 1 relief); family=None draws it from the seed."""
    if family is None:
        family = int(np.random.default_rng([int(seed), 0xFA]).integers(2))
    if isinstance(family, str):
        family = FAMILIES.index(family)
    return (object_scene(res, seed) if family == OBJECT else relief_scene(res, seed)), int(family)


__all__ = ["FAMILIES", "OBJECT", "RELIEF", "PRIMITIVES", "pixel_grid", "normals_from_height", "slant_deg", "cap",
           "gaussian_bump", "ring", "plateau", "tube", "catmull_rom", "polyline_distance", "bandlimited_noise",
           "smoothstep", "relief_scene", "object_scene", "normal_map"]
