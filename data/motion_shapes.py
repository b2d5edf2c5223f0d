"""Procedural content for the DiffMotion data generator: meshes, textures, environment maps (our own recipe; the
original generator is not public).

Everything here is plain NumPy and a pure function of a `numpy.random.Generator`, so a scene is reproducible from its seed.
Conventions: world y is up; every mesh is scaled into the unit sphere; textures are float32 in *linear* [0, 1], indexed
[row = v, col = u] and periodic in u (the azimuthal direction of every parametric surface), so the wrap seam is invisible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MESH_FAMILIES = ("ellipsoid", "superquadric", "rounded_box", "torus", "displaced_sphere", "blob", "revolution", "extrusion")
TEXTURE_FAMILIES = ("solid", "checker", "stripes", "noise", "cells", "dots", "marble")


@dataclass
class Mesh:
    """Triangle mesh with per-vertex uv and smooth normals (float32 / int32 arrays)."""

    vertices: np.ndarray  # [N, 3]
    faces: np.ndarray  # [M, 3]
    uvs: np.ndarray  # [N, 2]
    normals: np.ndarray  # [N, 3]
    family: str = "custom"
    params: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------- meshes
def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unnormalised face cross products summed per vertex)."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v, dtype=np.float64)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def grid_mesh(P: np.ndarray, periodic_v: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate a parametric grid P[nv, nu, 3] that is periodic in u (and optionally in v).

    Normals are computed on the welded grid so the seam is smooth; the returned mesh duplicates the seam column (and
    row) so that uv runs continuously from 0 to 1. Rows that collapse to a point (poles) get their averaged normal.
    """
    nv, nu = P.shape[:2]
    rows = nv if periodic_v else nv - 1
    i, j = np.meshgrid(np.arange(rows), np.arange(nu), indexing="ij")
    a, b = i * nu + j, i * nu + (j + 1) % nu
    c, d = ((i + 1) % nv) * nu + j, ((i + 1) % nv) * nu + (j + 1) % nu
    welded = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    flat = P.reshape(-1, 3).astype(np.float64)
    n = vertex_normals(flat, welded).reshape(nv, nu, 3)
    for r in range(nv):  # poles: every copy of the point gets the mean normal of its row
        if np.ptp(P[r], axis=0).max() < 1e-9:
            m = n[r].sum(0)
            n[r] = m / max(np.linalg.norm(m), 1e-12)
    # uv-extended grid: repeat column 0 as column nu (and row 0 as row nv when periodic in v)
    jj = np.arange(nu + 1) % nu
    ii = np.arange(nv + 1) % nv if periodic_v else np.arange(nv)
    V, N = P[ii][:, jj], n[ii][:, jj]
    ne_v, ne_u = V.shape[:2]
    uu, vv = np.meshgrid(np.arange(ne_u) / nu, np.arange(ne_v) / (ne_v - 1), indexing="xy")
    i, j = np.meshgrid(np.arange(ne_v - 1), np.arange(ne_u - 1), indexing="ij")
    a, b, c, d = i * ne_u + j, i * ne_u + j + 1, (i + 1) * ne_u + j, (i + 1) * ne_u + j + 1
    F = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    V, N = V.reshape(-1, 3), N.reshape(-1, 3)
    area = np.linalg.norm(np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]), axis=1)
    F = F[area > 1e-12]  # drop the degenerate pole triangles
    return V, F, np.stack([uu, vv], -1).reshape(-1, 2), N


def _spow(x, e):
    return np.sign(x) * np.abs(x) ** e


def _sphere_grid(nu: int, nv: int):
    """Angles of a lat-long grid: theta from the +y pole (rows), phi azimuth (columns, periodic)."""
    th = np.linspace(0.0, np.pi, nv)[:, None]
    ph = (np.arange(nu) / nu * 2 * np.pi)[None, :]
    return th, ph


def _profile_surface(s: np.ndarray, y: np.ndarray, rho: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """Sweep a (radial scale s(t), height y(t)) profile around y with a star-shaped cross-section rho(phi)."""
    r = s[:, None] * rho[None, :]
    return np.stack([r * np.sin(ph), np.broadcast_to(y[:, None], r.shape), r * np.cos(ph)], -1)


def _bevel_profile(h: float, b: float, n: int):
    """Closed box-like profile top-centre -> rim -> side -> rim -> bottom-centre, rounded with radius b, by arc length."""
    pts = [np.array([0.0, h / 2])]
    for k in range(8):  # top bevel arc
        a = np.pi / 2 * k / 7
        pts.append(np.array([1 - b + b * np.sin(a), h / 2 - b + b * np.cos(a)]))
    for k in range(8):  # bottom bevel arc
        a = np.pi / 2 + np.pi / 2 * k / 7
        pts.append(np.array([1 - b + b * np.sin(a), -h / 2 + b + b * np.cos(a)]))
    pts.append(np.array([0.0, -h / 2]))
    pts = np.array(pts)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    t = np.concatenate([[0], np.cumsum(seg)])
    q = np.linspace(0, t[-1], n)
    return np.interp(q, t, pts[:, 0]), np.interp(q, t, pts[:, 1])


def _random_rotation(rng: np.random.Generator, full: bool) -> np.ndarray:
    if full:  # uniform on SO(3) via QR of a Gaussian matrix
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        return q if np.linalg.det(q) > 0 else -q
    ax, az, yaw = np.radians(rng.uniform(-25, 25)), np.radians(rng.uniform(-25, 25)), rng.uniform(0, 2 * np.pi)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rotation_y(yaw) @ rz @ rx


def rotation_y(theta: float) -> np.ndarray:
    """Right-handed rotation about the world's vertical (+y) axis by `theta` radians."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _radial_noise(rng, d, freq, amp, terms=10):
    """Smooth random function on directions d[..., 3]: a sum of random plane waves, scaled to max |.| ~= amp."""
    w = rng.normal(size=(terms, 3))
    w *= (rng.uniform(*freq, size=terms) / np.linalg.norm(w, axis=1))[:, None]
    ph, a = rng.uniform(0, 2 * np.pi, terms), rng.uniform(0.3, 1.0, terms)
    val = sum(a[k] * np.sin(d @ w[k] + ph[k]) for k in range(terms))
    return amp * val / np.abs(val).max()


def make_mesh(rng: np.random.Generator, family: str | None = None, nu: int = 160, nv: int = 80) -> Mesh:
    """Sample one procedural mesh, randomly oriented and scaled so that it fits the unit sphere (max |v| = 1)."""
    family = family or str(rng.choice(MESH_FAMILIES))
    th, ph = _sphere_grid(nu, nv)
    unit = np.stack(np.broadcast_arrays(np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)), -1)
    periodic_v, prm = False, {}
    if family == "ellipsoid":
        prm["radii"] = rng.uniform(0.5, 1.0, 3).round(3).tolist()
        P = unit * np.array(prm["radii"])
    elif family in ("superquadric", "rounded_box"):
        lo, hi = (0.12, 0.35) if family == "rounded_box" else (0.35, 2.2)
        e1, e2 = rng.uniform(lo, hi, 2)
        prm.update(e1=round(e1, 3), e2=round(e2, 3), radii=rng.uniform(0.5, 1.0, 3).round(3).tolist())
        P = np.stack(np.broadcast_arrays(_spow(np.sin(th), e1) * _spow(np.sin(ph), e2), _spow(np.cos(th), e1),
                                         _spow(np.sin(th), e1) * _spow(np.cos(ph), e2)), -1) * np.array(prm["radii"])
    elif family == "torus":
        R, r = rng.uniform(0.55, 0.8), rng.uniform(0.15, 0.4)
        prm.update(R=round(R, 3), r=round(r, 3), squash=round(rng.uniform(0.6, 1.0), 3))
        psi = np.linspace(0, 2 * np.pi, nv, endpoint=False)[:, None]
        ring = R + r * np.cos(psi)
        P = np.stack(np.broadcast_arrays(ring * np.sin(ph), r * prm["squash"] * np.sin(psi), ring * np.cos(ph)), -1)
        periodic_v = True
    elif family in ("displaced_sphere", "blob"):
        freq, amp = ((2.5, 7.0), rng.uniform(0.04, 0.15)) if family == "displaced_sphere" else ((0.8, 2.2), rng.uniform(0.2, 0.45))
        prm.update(amp=round(amp, 3))
        radius = np.maximum(1.0 + _radial_noise(rng, unit, freq, amp), 0.3)
        P = unit * radius[..., None] * (rng.uniform(0.7, 1.0, 3) if family == "blob" else 1.0)
    elif family == "revolution":
        t = (1 - np.cos(np.linspace(0, np.pi, nv))) / 2  # denser near the caps
        k = np.arange(1, 4)
        c, p0 = rng.uniform(-0.18, 0.18, 3) / k, rng.uniform(0, 2 * np.pi, 3)
        base = np.clip(0.55 + (c[None] * np.cos(np.pi * k[None] * t[:, None] + p0[None])).sum(1), 0.15, None)
        env = np.sin(np.pi * t) ** rng.uniform(0.12, 0.35)
        h = rng.uniform(1.2, 2.6)
        prm.update(height=round(h, 3))
        P = _profile_surface(base * env, h * (0.5 - t), np.ones(nu), ph[0])
    elif family == "extrusion":
        phi = ph[0]
        if rng.random() < 0.5:
            kk, a = int(rng.integers(3, 9)), rng.uniform(0.08, 0.3)
            rho, prm["section"] = 1 + a * np.cos(kk * phi), f"star{kk}"
        else:
            n = rng.uniform(2.5, 8.0)
            rho, prm["section"] = (np.abs(np.cos(phi)) ** n + np.abs(np.sin(phi)) ** n) ** (-1 / n), "superellipse"
        rho = rho / rho.max()
        h, b = rng.uniform(0.5, 2.0), rng.uniform(0.05, 0.3)
        s, y = _bevel_profile(h, min(b, h / 2 - 1e-3), nv)
        twist = rng.uniform(-1.2, 1.2) if rng.random() < 0.4 else 0.0
        prm.update(height=round(h, 3), bevel=round(b, 3), twist=round(twist, 3))
        P = _profile_surface(s, y, rho, phi)
        ang = twist * P[..., 1]
        x, z = P[..., 0] * np.cos(ang) + P[..., 2] * np.sin(ang), -P[..., 0] * np.sin(ang) + P[..., 2] * np.cos(ang)
        P = np.stack([x, P[..., 1], z], -1)
    else:
        raise ValueError(f"unknown mesh family {family!r}; choose from {MESH_FAMILIES}")
    if family != "extrusion" and rng.random() < 0.25:  # mild taper for extra variety
        tap = rng.uniform(-0.35, 0.35)
        P = P * np.stack([1 + tap * P[..., 1], np.ones_like(P[..., 1]), 1 + tap * P[..., 1]], -1)
        prm["taper"] = round(tap, 3)
    P = P @ _random_rotation(rng, full=bool(rng.random() < 0.4)).T
    V, F, UV, N = grid_mesh(P, periodic_v)
    return finish_mesh(V, F, UV, N, family, prm)


def finish_mesh(V, F, UV, N, family="custom", params=None) -> Mesh:
    """Centre on the bounding-box centre, scale into the unit sphere, and make the winding face outwards."""
    V = np.asarray(V, np.float64)
    V = V - (V.min(0) + V.max(0)) / 2
    V = V / np.linalg.norm(V, axis=1).max()
    F = np.asarray(F, np.int64)
    if N is None:
        N = vertex_normals(V, F)
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    if (fn * V[F].mean(1)).sum() < 0:  # inward winding: flip faces and normals together
        F, N = F[:, ::-1], -np.asarray(N)
    return Mesh(V.astype(np.float32), np.ascontiguousarray(F, dtype=np.int32), np.asarray(UV, np.float32),
                np.asarray(N, np.float32), family, dict(params or {}))


def spherical_uv(V: np.ndarray) -> np.ndarray:
    """Fallback uv for meshes without texture coordinates: longitude/latitude about the centroid."""
    d = V - V.mean(0)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return np.stack([np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi) + 0.5, np.arccos(np.clip(d[:, 1], -1, 1)) / np.pi], 1)


# --------------------------------------------------------------------------------------------------------- textures
def srgb_to_linear(x):
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _hsv(h, s, v):
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def random_palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """n linear-RGB albedo colours, sampled in HSV/sRGB space so the distribution looks natural."""
    h0 = rng.random()
    cols = [_hsv((h0 + rng.normal(0, 0.25)) % 1, rng.uniform(0.05, 0.9), rng.uniform(0.15, 0.95)) for _ in range(n)]
    return srgb_to_linear(np.array(cols)).astype(np.float32)


def _periodic_noise(rng, size, fu, fv, octaves=4):
    """Fractal value noise on [0,1)^2, periodic in u, built from bilinearly-upsampled random lattices."""
    out, amp, tot = np.zeros((size, size)), 1.0, 0.0
    x = np.arange(size) / size
    for _ in range(octaves):
        lat = rng.random((fv + 2, fu))
        gu, gv = x * fu, x * fv
        iu, iv = np.floor(gu).astype(int), np.floor(gv).astype(int)
        su, sv = gu - iu, gv - iv
        su, sv = su * su * (3 - 2 * su), sv * sv * (3 - 2 * sv)
        l00, l01 = lat[iv][:, iu], lat[iv][:, (iu + 1) % fu]
        l10, l11 = lat[iv + 1][:, iu], lat[iv + 1][:, (iu + 1) % fu]
        top, bot = l00 + (l01 - l00) * su, l10 + (l11 - l10) * su
        out += amp * (top + (bot - top) * sv[:, None])
        tot, amp, fu, fv = tot + amp, amp * 0.5, fu * 2, fv * 2
    out /= tot
    return (out - out.min()) / max(np.ptp(out), 1e-8)


def pattern(rng: np.random.Generator, family: str, size: int = 256) -> tuple[np.ndarray, bool]:
    """A scalar field in [0, 1] of shape [size, size] and whether it should be colourised with hard steps."""
    v, u = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    if family == "solid":
        return 0.15 * _periodic_noise(rng, size, 4, 2, 2), False
    if family == "checker":
        nu, nv = 2 * int(rng.integers(2, 9)), int(rng.integers(2, 10))  # even nu keeps the u-seam consistent
        return ((np.floor(u * nu) + np.floor(v * nv)) % 2).astype(float), True
    if family == "stripes":
        ku, kv = int(rng.integers(0, 6)), int(rng.integers(0, 10))
        ku, kv = (ku, kv) if ku or kv else (1, 4)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * (ku * u + kv * v) + rng.uniform(0, 6.3))
        return (s > rng.uniform(0.3, 0.7)).astype(float) if rng.random() < 0.6 else s, True
    if family == "noise":
        return _periodic_noise(rng, size, int(rng.integers(2, 8)), int(rng.integers(2, 8))), False
    if family == "cells":
        n = int(rng.integers(6, 30))
        pts = rng.random((n, 2))
        du = np.abs(u[..., None] - pts[:, 0])
        du = np.minimum(du, 1 - du)  # periodic in u
        dist = np.sqrt(du ** 2 + (v[..., None] - pts[:, 1]) ** 2)
        return (np.argmin(dist, -1) % 5) / 4.0, True
    if family == "dots":
        nu, nv = int(rng.integers(4, 14)), int(rng.integers(3, 10))
        fu, fv = (u * nu) % 1 - 0.5, (v * nv) % 1 - 0.5
        return (np.hypot(fu, fv) < rng.uniform(0.15, 0.42)).astype(float), True
    if family == "marble":
        turb = _periodic_noise(rng, size, 4, 4)
        k = int(rng.integers(1, 5))
        return 0.5 + 0.5 * np.sin(2 * np.pi * (k * u + rng.uniform(2, 8) * v) + rng.uniform(2, 8) * turb), False
    raise ValueError(f"unknown texture family {family!r}; choose from {TEXTURE_FAMILIES}")


def make_base_color(rng: np.random.Generator, family: str | None = None, size: int = 256) -> tuple[np.ndarray, str]:
    """Procedural base-colour texture, float32 [size, size, 3] in linear RGB."""
    family = family or str(rng.choice(TEXTURE_FAMILIES))
    t, hard = pattern(rng, family, size)
    pal = random_palette(rng, int(rng.integers(2, 4)))
    if hard:
        idx = np.clip(np.round(t * (len(pal) - 1)).astype(int), 0, len(pal) - 1)
        img = pal[idx]
    else:
        x = t * (len(pal) - 1)
        i0 = np.clip(np.floor(x).astype(int), 0, len(pal) - 2)
        img = pal[i0] + (pal[i0 + 1] - pal[i0]) * (x - i0)[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32), family


def make_param_map(rng: np.random.Generator, lo: float, hi: float, p_textured: float, size: int = 256) -> tuple[np.ndarray, dict]:
    """Scalar material map [size, size]: constant U[lo, hi], or with prob p_textured two values mixed by a pattern."""
    a = rng.uniform(lo, hi)
    if rng.random() >= p_textured:
        return np.full((size, size), a, np.float32), {"value": round(float(a), 4)}
    fam = str(rng.choice(("checker", "stripes", "noise", "cells", "dots")))
    t, _ = pattern(rng, fam, size)
    b = rng.uniform(lo, hi)
    return (a + (b - a) * t).astype(np.float32), {"range": [round(float(a), 4), round(float(b), 4)], "pattern": fam}


# ----------------------------------------------------------------------------------------------------- environments
def envmap_directions(h: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions [h, 2h, 3] and solid angles [h, 2h] of a lat-long map in mitsuba's `envmap` convention
    (row 0 = +y; column u: u=0.5 -> +z, u=0.25 -> +x; checked by rendering with mitsuba 3.9.1)."""
    w = 2 * h
    th = (np.arange(h) + 0.5) / h * np.pi
    u = (np.arange(w) + 0.5) / w
    T, U = np.meshgrid(th, u, indexing="ij")
    d = np.stack([np.sin(T) * np.sin(2 * np.pi * U), np.cos(T), -np.sin(T) * np.cos(2 * np.pi * U)], -1)
    return d, np.sin(T) * (np.pi / h) * (2 * np.pi / w)


def make_environment(rng: np.random.Generator, h: int = 128, kind: str | None = None) -> tuple[np.ndarray, dict]:
    """Procedural sky: horizon/zenith gradient + ground + 1-3 normalised lobes ("sun"/softboxes).

    Returns the radiance map float32 [h, 2h, 3] and a light summary (used by the NumPy renderer): directional lights
    as (direction, irradiance RGB), plus sky/ground radiance for an ambient term.
    """
    kind = kind or str(rng.choice(("sky", "studio")))
    d, dom = envmap_directions(h)
    sky, horizon = random_palette(rng, 1)[0] * 0.5 + 0.5, np.ones(3)
    sky = sky / sky.mean()
    ground = random_palette(rng, 1)[0] * 0.6 + 0.2
    amb = rng.uniform(0.12, 0.4) if kind == "sky" else rng.uniform(0.05, 0.15)
    up = np.clip(d[..., 1:2], 0, 1)
    rad = np.where(d[..., 1:2] >= 0, horizon + (sky - horizon) * up ** 0.5, ground / ground.mean() * 0.5) * amb
    lights = []
    for k in range(1 if kind == "sky" else int(rng.integers(2, 4))):
        el = np.radians(rng.uniform(8, 75) if kind == "sky" else rng.uniform(-10, 60))
        # mostly lit from the camera's side (az = 0 is +z, towards the camera); 20 % anywhere, incl. back-lit
        az = rng.uniform(0, 2 * np.pi) if rng.random() < 0.2 else np.radians(rng.uniform(-110, 110))
        ldir = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        kappa = rng.uniform(60, 900) if kind == "sky" else rng.uniform(8, 60)
        irr = rng.uniform(1.8, 3.5) if kind == "sky" else rng.uniform(1.5, 3.0) / (1.3 + 0.5 * k)
        col = np.array([1.0, 0.95, 0.85]) if kind == "sky" else random_palette(rng, 1)[0] * 0.3 + 0.7
        lobe = np.exp(kappa * (d @ ldir - 1))
        lobe /= (lobe * dom * np.clip(d @ ldir, 0, None)).sum()  # unit irradiance on a surface facing the lobe
        rad = rad + lobe[..., None] * irr * col / col.mean()
        lights.append({"dir": ldir.round(5).tolist(), "irradiance": (irr * col / col.mean()).round(4).tolist()})
    info = {"kind": kind, "lights": lights, "sky": (amb * sky).round(4).tolist(),
            "ground": (amb * 0.5 * ground / ground.mean()).round(4).tolist()}
    return rad.astype(np.float32), info


# ------------------------------------------------------------------------------- analytic SDF shapes (NumPy renderer)
SDF_FAMILIES = ("ellipsoid", "blob", "rounded_box", "torus", "capsule")


def make_sdf_shape(rng: np.random.Generator, family: str | None = None) -> dict:
    """A small CSG of analytic primitives (smooth union), scaled into the unit sphere. JSON-serialisable."""
    family = family or str(rng.choice(SDF_FAMILIES))
    rot = lambda: _random_rotation(rng, full=bool(rng.random() < 0.5)).round(6).tolist()  # noqa: E731
    if family == "ellipsoid":
        prims = [{"kind": "ellipsoid", "c": [0, 0, 0], "radii": rng.uniform(0.5, 1.0, 3).tolist(), "R": rot()}]
    elif family == "blob":
        prims = [{"kind": "ellipsoid", "c": rng.uniform(-0.35, 0.35, 3).tolist(), "radii": rng.uniform(0.3, 0.6, 3).tolist(),
                  "R": rot()} for _ in range(int(rng.integers(2, 4)))]
    elif family == "rounded_box":
        h = rng.uniform(0.35, 0.8, 3)
        prims = [{"kind": "box", "c": [0, 0, 0], "h": h.tolist(), "round": float(rng.uniform(0.03, 0.5) * h.min()), "R": rot()}]
    elif family == "torus":
        prims = [{"kind": "torus", "c": [0, 0, 0], "R_major": float(rng.uniform(0.55, 0.8)), "r": float(rng.uniform(0.15, 0.4)),
                  "R": rot()}]
    elif family == "capsule":
        prims = [{"kind": "capsule", "c": [0, 0, 0], "half": float(rng.uniform(0.2, 0.6)), "r": float(rng.uniform(0.2, 0.45)),
                  "R": rot()}]
    else:
        raise ValueError(f"unknown SDF family {family!r}; choose from {SDF_FAMILIES}")
    bound = 0.0
    for p in prims:  # conservative bounding radius of each primitive
        ext = {"ellipsoid": lambda q: max(q["radii"]), "box": lambda q: float(np.linalg.norm(q["h"])),
               "torus": lambda q: q["R_major"] + q["r"], "capsule": lambda q: q["half"] + q["r"]}[p["kind"]](p)
        bound = max(bound, float(np.linalg.norm(p["c"])) + ext)
    return {"family": family, "prims": prims, "scale": 1.0 / bound, "smooth": float(rng.uniform(0.1, 0.25))}


def sdf_eval(shape: dict, p: np.ndarray) -> np.ndarray:
    """Signed distance (approximate for ellipsoids) of `shape` at object-space points p[N, 3]."""
    s = shape["scale"]
    q_all = p / s  # evaluate in unscaled units, then rescale the distance
    out = None
    for prim in shape["prims"]:
        q = (q_all - np.asarray(prim["c"])) @ np.asarray(prim["R"])  # world -> primitive frame
        k = prim["kind"]
        if k == "ellipsoid":
            r = np.asarray(prim["radii"])
            k0 = np.linalg.norm(q / r, axis=1)
            k1 = np.maximum(np.linalg.norm(q / r ** 2, axis=1), 1e-9)
            d = k0 * (k0 - 1) / k1
        elif k == "box":
            qq = np.abs(q) - (np.asarray(prim["h"]) - prim["round"])
            d = np.linalg.norm(np.maximum(qq, 0), axis=1) + np.minimum(qq.max(1), 0) - prim["round"]
        elif k == "torus":
            d = np.hypot(np.hypot(q[:, 0], q[:, 2]) - prim["R_major"], q[:, 1]) - prim["r"]
        else:  # capsule along the primitive's y axis
            y = np.clip(q[:, 1], -prim["half"], prim["half"])
            d = np.linalg.norm(q - np.stack([np.zeros_like(y), y, np.zeros_like(y)], 1), axis=1) - prim["r"]
        if out is None:
            out = d
        else:  # polynomial smooth minimum
            kk = shape["smooth"]
            h = np.maximum(kk - np.abs(out - d), 0) / kk
            out = np.minimum(out, d) - h * h * kk / 4
    return out * s
