"""Procedural multi-part shape families with per-part PBR materials: a self-made stand-in for the ABO furniture
the paper trains on (Yan et al. 2024, Sec. 4). Every shape is deterministic in (family, seed).

Each shape is an assembly of primitives (boxes, n-gon cylinders, revolved profiles, tori), subdivided to a maximum
edge length, globally deformed by x <- x + a sin(K x) (and optionally tapered), and normalised. Lampshades, vase
and mug rims are open surfaces, as many real assets are.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from models.omages.encode import MeshInput, normalize
from models.omages.textures import srgb_to_linear

FAMILIES = ("chair", "table", "lamp", "vase", "shelf", "mug", "sofa", "stool")
MAX_EDGE = 0.08


@dataclass
class PartMaterial:
    base: np.ndarray            # linear RGB
    second: np.ndarray          # linear RGB of the pattern's other colour
    pattern: str                # none | stripes | checker | noise
    freq: float
    axis: int
    metallic: float
    roughness: float
    rough_noise: float
    noise_grid: np.ndarray      # (8, 8, 8) value-noise lattice
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Shape:
    family: str
    class_id: int
    seed: int
    vertices: np.ndarray        # normalised to largest extent 1.9999
    faces: np.ndarray
    face_part: np.ndarray       # part index of every face
    materials: list
    open_surface: bool

    def mesh_input(self) -> MeshInput:
        return MeshInput(self.vertices, self.faces, material=part_material_fn(self.face_part, self.materials),
                         name=f"{self.family}_{self.seed}")


# ------------------------------------------------------------------------------------------------ primitives
def _tm():
    from models.core.optional import require

    return require("trimesh", feature="procedural omage shapes", extra="omages")


def _box(ext, center):
    tm = _tm()
    return tm.creation.box(extents=ext, transform=tm.transformations.translation_matrix(center))


def _cyl(radius, height, center, sections=16):
    tm = _tm()
    return tm.creation.cylinder(radius=radius, height=height, sections=sections,
                                transform=tm.transformations.translation_matrix(center))


def _revolve(profile, z0=0.0, sections=40):
    """Surface of revolution around the vertical axis from an (r, z) polyline; open where the profile ends off-axis."""
    tm = _tm()
    prof = np.asarray(profile, dtype=np.float64)
    m = tm.creation.revolve(prof, sections=sections)
    m.apply_translation([0, 0, z0])
    return m


def _torus(major, minor, transform):
    return _tm().creation.torus(major_radius=major, minor_radius=minor, major_sections=32, minor_sections=12,
                                transform=transform)


def _leg(rng, width, height, x, y):
    if rng.random() < 0.5:
        return _box([width, width, height], [x, y, height / 2])
    return _cyl(width / 2, height, [x, y, height / 2], sections=16)


# ----------------------------------------------------------------------------------------------- the families
def _chair(rng):
    w, d = rng.uniform(0.8, 1.2, 2)
    t, lh, lw, bh = rng.uniform(0.05, 0.15), rng.uniform(0.6, 1.0), rng.uniform(0.05, 0.12), rng.uniform(0.5, 1.0)
    parts = [_box([w, d, t], [0, 0, lh + t / 2])]
    ix, iy = w / 2 - lw, d / 2 - lw
    parts += [_leg(rng, lw, lh + t / 2, sx * ix, sy * iy) for sx in (-1, 1) for sy in (-1, 1)]
    bt = rng.uniform(0.05, 0.1)
    parts.append(_box([w * 0.98, bt, bh + 0.65 * t], [0, d / 2 - bt / 2 - 0.01, lh + 0.35 * t + (bh + 0.65 * t) / 2]))
    return parts, False


def _table(rng):
    h, t = rng.uniform(0.6, 1.0), rng.uniform(0.03, 0.1)
    round_top = rng.random() < 0.3
    if round_top:
        r = rng.uniform(0.5, 0.8)
        parts = [_cyl(r, t, [0, 0, h + t / 2], sections=48)]
        lx = ly = r * 0.6
    else:
        lx, ly = rng.uniform(1.0, 2.0) / 2, rng.uniform(0.6, 1.2) / 2
        parts = [_box([2 * lx, 2 * ly, t], [0, 0, h + t / 2])]
    if rng.random() < 0.35:  # pedestal
        pr = rng.uniform(0.05, 0.12)
        parts += [_cyl(pr, h + t / 2, [0, 0, (h + t / 2) / 2 + 0.01], sections=16),
                  _cyl(rng.uniform(0.25, 0.45), 0.04, [0, 0, 0.02], 32)]
    else:
        lw = rng.uniform(0.05, 0.1)
        parts += [_leg(rng, lw, h + t / 2, sx * (lx - 1.5 * lw), sy * (ly - 1.5 * lw))
                  for sx in (-1, 1) for sy in (-1, 1)]
    return parts, False


def _lamp(rng):
    br, bh = rng.uniform(0.2, 0.4), rng.uniform(0.03, 0.08)
    ph, pr = rng.uniform(0.8, 1.6), rng.uniform(0.02, 0.04)
    r0, r1, sh = rng.uniform(0.25, 0.5), rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.5)
    z0 = bh + ph - sh * 0.6
    shade = _revolve([[r0, 0.0], [(r0 + r1) / 2 * 1.02, sh / 2], [r1, sh]], z0=z0)   # open at both ends
    return [_cyl(br, bh, [0, 0, bh / 2], sections=32), _cyl(pr, ph, [0, 0, bh / 2 + ph / 2], sections=12), shade], True


def _vase(rng):
    h, r = rng.uniform(1.0, 2.0), rng.uniform(0.15, 0.5)
    amp, f, ph = rng.uniform(0.1, 0.35), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    z = np.linspace(0, h, 16)
    rad = r * (1 + amp * np.sin(2 * np.pi * f * z / h + ph))
    profile = np.concatenate([[[0.0, 0.0]], np.stack([rad, z], 1)])     # closed bottom, open top
    return [_revolve(profile)], True


def _shelf(rng):
    w, h, d = rng.uniform(0.8, 1.6), rng.uniform(1.0, 2.0), rng.uniform(0.3, 0.6)
    st = rng.uniform(0.03, 0.05)
    parts = [_box([st, d, h], [sx * (w / 2 - st / 2), 0, h / 2]) for sx in (-1, 1)]
    n = int(rng.integers(2, 6))
    for z in np.linspace(0.05, h - 0.03, n):
        parts.append(_box([w - st, d * 0.98, 0.03], [0, 0, z]))   # ends sunk into the sides
    return parts, False


def _mug(rng):
    tm = _tm()
    r, h = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.0)
    taper = rng.uniform(0.85, 1.1)
    cup = _revolve([[0.0, 0.0], [r, 0.0], [r * (1 + taper) / 2, h / 2], [r * taper, h]])   # open top
    major, minor = rng.uniform(0.15, 0.25) * h, rng.uniform(0.03, 0.05)
    tf = tm.transformations.translation_matrix([r + major * 0.6, 0, h / 2]) @ \
        tm.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    return [cup, _torus(major, minor, tf)], True


def _sofa(rng):
    w, d, bh = rng.uniform(1.5, 2.2), rng.uniform(0.7, 1.0), rng.uniform(0.3, 0.45)
    bt, backh = rng.uniform(0.15, 0.25), rng.uniform(0.3, 0.5)
    aw, ah = rng.uniform(0.12, 0.25), rng.uniform(0.2, 0.35)
    parts = [_box([w, d, bh], [0, 0, bh / 2]),
             _box([w * 0.99, bt, backh + 0.05], [0, d / 2 - bt / 2 - 0.005, bh + backh / 2 - 0.025])]
    parts += [_box([aw, d * 0.98, ah + 0.05], [sx * (w / 2 - aw / 2 - 0.005), 0, bh + ah / 2 - 0.025])
              for sx in (-1, 1)]
    ct = rng.uniform(0.06, 0.12)
    parts.append(_box([w - 2 * aw + 0.02, d - bt + 0.01, ct + 0.03], [0, -bt / 2 - 0.005, bh + ct / 2 - 0.015]))
    return parts, False


def _stool(rng):
    tm = _tm()
    r, t, h = rng.uniform(0.2, 0.35), rng.uniform(0.04, 0.08), rng.uniform(0.5, 0.8)
    n, lr = int(rng.integers(3, 5)), rng.uniform(0.03, 0.05)
    parts = [_cyl(r, t, [0, 0, h + t / 2], sections=32)]
    for k in range(n):
        a = 2 * np.pi * k / n
        parts.append(_cyl(lr, h + t / 2, [0.7 * r * np.cos(a), 0.7 * r * np.sin(a), (h + t / 2) / 2], sections=12))
    if rng.random() < 0.5:
        parts.append(_torus(0.7 * r, lr * 0.7, tm.transformations.translation_matrix([0, 0, h * 0.35])))
    return parts, False


BUILDERS = {"chair": _chair, "table": _table, "lamp": _lamp, "vase": _vase, "shelf": _shelf, "mug": _mug,
            "sofa": _sofa, "stool": _stool}


# ------------------------------------------------------------------------------------------------- materials
def _random_material(rng) -> PartMaterial:
    def hsv():
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 1.0))
        return srgb_to_linear(np.array(rgb))

    return PartMaterial(base=hsv(), second=hsv(), pattern=str(rng.choice(["none", "stripes", "checker", "noise"])),
                        freq=float(rng.uniform(3, 10)), axis=int(rng.integers(0, 3)),
                        metallic=float(rng.random() < 0.2), roughness=float(rng.uniform(0.15, 0.95)),
                        rough_noise=float(rng.choice([0.0, 0.1])), noise_grid=rng.random((8, 8, 8)))


def value_noise(grid: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Trilinear value noise on a periodic lattice, at points p (N, 3) in lattice units."""
    n = grid.shape[0]
    i = np.floor(p).astype(np.int64)
    t = p - i
    t = t * t * (3 - 2 * t)
    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (t[:, 0] if dx else 1 - t[:, 0]) * (t[:, 1] if dy else 1 - t[:, 1]) * (t[:, 2] if dz else 1 - t[:, 2])
                out += w * grid[(i[:, 0] + dx) % n, (i[:, 1] + dy) % n, (i[:, 2] + dz) % n]
    return out


def pattern_value(m: PartMaterial, local: np.ndarray) -> np.ndarray:
    """Mix weight in [0, 1] between the part's two colours, evaluated in part-local 3D coordinates."""
    if m.pattern == "stripes":
        return (np.sin(local[:, m.axis] * m.freq * np.pi) > 0).astype(np.float64)
    if m.pattern == "checker":
        return (np.floor(local * m.freq / 2).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
    if m.pattern == "noise":
        return value_noise(m.noise_grid, local * m.freq / 2 + 8)
    return np.zeros(len(local))


def part_material_fn(face_part: np.ndarray, materials: list):
    def material(points, faces, src_uv):
        n = len(points)
        alb, met, rgh = np.zeros((n, 3)), np.zeros(n), np.zeros(n)
        part = face_part[faces]
        for k, m in enumerate(materials):
            sel = np.nonzero(part == k)[0]
            if sel.size == 0:
                continue
            local = points[sel] - m.center
            t = pattern_value(m, local)[:, None]
            alb[sel] = m.base * (1 - t) + m.second * t
            met[sel] = m.metallic
            noise = value_noise(m.noise_grid, local * 4 + 3) * 2 - 1 if m.rough_noise else 0.0
            rgh[sel] = np.clip(m.roughness + m.rough_noise * noise, 0.0, 1.0)
        return alb, met, rgh

    return material


# -------------------------------------------------------------------------------------------------- assembly
def _deform(v: np.ndarray, rng) -> np.ndarray:
    a = rng.uniform(0.02, 0.06)
    K = rng.normal(size=(3, 3))
    v = v + a * np.sin(v @ K.T)
    if rng.random() < 0.5:  # taper along the vertical axis
        z = (v[:, 2] - v[:, 2].min()) / max(np.ptp(v[:, 2]), 1e-9)
        s = 1 + rng.uniform(-0.25, 0.25) * (z - 0.5)
        v = v * np.stack([s, s, np.ones_like(s)], 1)
    return v


def make_shape(family: str, seed: int) -> Shape:
    """One random shape of `family`, deterministic in (family, seed). Z-up while building, y-up in the result."""
    tm = _tm()
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    rng = np.random.default_rng([FAMILIES.index(family), int(seed)])
    parts, open_surface = BUILDERS[family](rng)
    verts, faces, face_part = [], [], []
    offset = 0
    for k, p in enumerate(parts):
        v, f = tm.remesh.subdivide_to_size(np.asarray(p.vertices), np.asarray(p.faces), MAX_EDGE, max_iter=20)
        verts.append(v)
        faces.append(f + offset)
        face_part.append(np.full(len(f), k))
        offset += len(v)
    v = _deform(np.concatenate(verts), rng)
    v = v[:, [0, 2, 1]] * np.array([1, 1, -1])   # z-up -> y-up (a proper rotation, so windings stay outward)
    v, _, _ = normalize(v)
    f = np.concatenate(faces).astype(np.int64)
    fp = np.concatenate(face_part)
    mats = [_random_material(rng) for _ in parts]
    for k, m in enumerate(mats):
        m.center = v[np.unique(f[fp == k])].mean(axis=0)
    return Shape(family=family, class_id=FAMILIES.index(family), seed=int(seed), vertices=v, faces=f,
                 face_part=fp, materials=mats, open_surface=open_surface)
