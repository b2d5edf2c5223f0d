"""The "pile of duplicates" test scene shared by both renderers: one asymmetric textured L-shaped object, N rigid copies
on a plane without interpenetration, one pinhole camera looking at the pile.

Structure from Duplicates (Cheng et al., NeurIPS 2023) treats the N copies as N views of one object (Sec. 3.1), so the
object must have no rotational symmetry and faces that look different from each other: every face of the mesh maps to
its own cell of a texture atlas filled with sharp shapes and letters (features for SIFT).

World frame: z up. Object poses are rigid object-to-world [R | t] (no scale; the size lives in the mesh). Camera poses
are OpenGL camera-to-world (x right, y up, z backward); focal lengths are in pixels with the principal point at the
image centre (W/2, H/2) and pixel centres at (u + 0.5, v + 0.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# L-shaped profile in the object's x-z plane (counter-clockwise), extruded along y. Union of two boxes:
BOX_A = ((-0.6, -0.2, -0.4), (0.6, 0.2, 0.0))   # the long bar
BOX_B = ((0.2, -0.2, 0.0), (0.6, 0.2, 0.6))     # the upright at one end
PROFILE = np.array([(-0.6, -0.4), (0.6, -0.4), (0.6, 0.6), (0.2, 0.6), (0.2, 0.0), (-0.6, 0.0)], np.float64)
HALF_Y = 0.2
ATLAS_GRID = (4, 3)  # columns x rows of atlas cells; one face per cell (8 faces used)
# focal of the original synthetic renders: 1111 px at 800 px width, i.e. fov_x = 2 atan(400 / 1111)
FOCAL_PER_WIDTH = 1111.0 / 800.0


def bounding_radius() -> float:
    """Radius of the smallest origin-centred sphere holding the object."""
    corners = np.array([[x, y, z] for (x, z) in PROFILE for y in (-HALF_Y, HALF_Y)])
    return float(np.linalg.norm(corners, axis=1).max())


# ------------------------------------------------------------------------------------------------------------- mesh
def _cell_uv(cell: int, uv01: np.ndarray) -> np.ndarray:
    """Map [0,1]^2 face coordinates into atlas cell `cell` (row-major from the top), with a small inset."""
    cols, rows = ATLAS_GRID
    cx, cy = cell % cols, cell // cols
    inset = 0.04
    u = (cx + inset + (1 - 2 * inset) * uv01[:, 0]) / cols
    v = 1.0 - (cy + inset + (1 - 2 * inset) * uv01[:, 1]) / rows  # OBJ/Mitsuba uv: v = 0 at the image bottom
    return np.stack([u, v], 1)


def mesh_faces() -> list[dict]:
    """The object's faces as polygons: {'verts': Kx3, 'uv': Kx2, 'normal': 3, 'cell': int}, outward normals."""
    faces = []
    prof = PROFILE
    lo, hi = prof.min(0), prof.max(0)
    for cell, y in ((0, HALF_Y), (1, -HALF_Y)):  # the two L-shaped caps
        verts = np.array([[x, y, z] for x, z in prof])
        uv = _cell_uv(cell, (prof - lo) / (hi - lo))
        faces.append({"verts": verts, "uv": uv, "normal": np.array([0.0, math.copysign(1.0, y), 0.0]), "cell": cell})
    for i in range(len(prof)):  # six side quads around the profile
        a, b = prof[i], prof[(i + 1) % len(prof)]
        verts = np.array([[a[0], -HALF_Y, a[1]], [b[0], -HALF_Y, b[1]], [b[0], HALF_Y, b[1]], [a[0], HALF_Y, a[1]]])
        edge = b - a
        normal = np.array([edge[1], 0.0, -edge[0]]) / np.linalg.norm(edge)  # right of a CCW edge = outside
        uv = _cell_uv(2 + i, np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64))
        faces.append({"verts": verts, "uv": uv, "normal": normal, "cell": 2 + i})
    return faces


def _triangulate(k: int) -> list[tuple[int, int, int]]:
    if k == 4:
        return [(0, 1, 2), (0, 2, 3)]
    # the L-shaped cap in PROFILE order: four triangles covering the bar and the upright
    return [(0, 1, 4), (0, 4, 5), (1, 2, 3), (1, 3, 4)]


def _oriented(tri, verts, normal):
    a, b, c = (verts[i] for i in tri)
    return tri if np.dot(np.cross(b - a, c - a), normal) > 0 else (tri[0], tri[2], tri[1])


def mesh_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices Vx3, uvs Vx2, triangles Fx3) with vertices duplicated per face (each face has its own atlas cell)."""
    verts, uvs, tris = [], [], []
    for f in mesh_faces():
        base = len(verts)
        verts.extend(f["verts"])
        uvs.extend(f["uv"])
        for t in _triangulate(len(f["verts"])):
            t = _oriented(t, f["verts"], f["normal"])
            tris.append(tuple(base + i for i in t))
    return np.array(verts), np.array(uvs), np.array(tris, np.int64)


def write_obj(path, text_writer) -> None:
    """The GT mesh as OBJ with per-vertex uvs and flat faces (`text_writer(path, text)` writes atomically)."""
    v, uv, f = mesh_arrays()
    lines = ["# Structure-from-Duplicates test object: L-shaped bar, one atlas cell per face"]
    lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in uv]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in f]
    text_writer(path, "\n".join(lines) + "\n")


def surface_samples(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points on the object surface and their outward normals (for projection checks, Chamfer)."""
    v, _, f = mesh_arrays()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    idx = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    pts = (1 - s)[:, None] * a[idx] + (s * (1 - r2))[:, None] * b[idx] + (s * r2)[:, None] * c[idx]
    normals = cross[idx] / np.linalg.norm(cross[idx], axis=1, keepdims=True)
    return pts, normals


# ---------------------------------------------------------------------------------------------------------- texture
def make_atlas(size: int, seed: int) -> np.ndarray:
    """sRGB texture atlas in [0,1] (size x size x 3): per cell random filled circles, rectangles and 3-letter text on a
    light background, drawn with sharp edges so that SIFT finds many distinctive keypoints."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    cols, rows = ATLAS_GRID
    cw, ch = size / cols, size / rows
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    for cell in range(cols * rows):
        x0, y0 = int((cell % cols) * cw), int((cell // cols) * ch)
        x1, y1 = int(x0 + cw), int(y0 + ch)
        img[y0:y1, x0:x1] = rng.integers(200, 250, 3)
        scale = cw / 128.0
        for _ in range(70):
            colour = tuple(int(c) for c in rng.integers(0, 200, 3))
            kind = rng.integers(3)
            px, py = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
            if kind == 0:
                cv2.circle(img, (px, py), int(rng.uniform(4, 14) * scale), colour, -1, cv2.LINE_AA)
            elif kind == 1:
                w, h = (int(rng.uniform(6, 26) * scale) for _ in range(2))
                cv2.rectangle(img, (px, py), (px + w, py + h), colour, -1, cv2.LINE_AA)
            else:
                text = "".join(rng.choice(list(letters), 3))
                cv2.putText(img, text, (px, py), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, colour,
                            max(1, int(1.2 * scale)), cv2.LINE_AA)
        img[y0:y1, x0:x1][[0, -1]] = 90  # thin dark cell border
        img[y0:y1, x0:x1][:, [0, -1]] = 90
    return img.astype(np.float32) / 255.0


# -------------------------------------------------------------------------------------------------------- placement
def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


@dataclass
class SceneLayout:
    """Everything both renderers need: poses, camera, image size, texture seed."""
    n: int
    width: int
    height: int
    object_to_world: np.ndarray  # N x 4 x 4
    c2w_gl: np.ndarray           # 4 x 4 OpenGL camera-to-world
    focal: float                 # pixels at `width`
    seed: int
    light: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"n": self.n, "width": self.width, "height": self.height, "focal": self.focal, "seed": self.seed,
                "object_to_world": self.object_to_world.tolist(), "c2w_opengl": self.c2w_gl.tolist()}


def place_instances(n: int, rng: np.random.Generator, max_tilt_deg: float = 40.0) -> np.ndarray:
    """N rigid object-to-world poses: random yaw about z, tilt <= max_tilt about a random horizontal axis, centres on a
    jittered plane with bounding-sphere rejection (so copies never interpenetrate)."""
    r = bounding_radius()
    spacing = 2.0 * r * 1.02
    side = spacing * math.sqrt(n) * 0.7
    centres = np.zeros((0, 3))
    tries = 20_000
    while len(centres) < n:  # random sequential placement; widen the area until all n fit
        state = rng.bit_generator.state
        cand = (rng.uniform(-side / 2, side / 2, (tries, 2)) * [1.3, 1 / 1.3]).tolist()
        placed: list[tuple[float, float]] = []
        used = tries
        for k, (x, y) in enumerate(cand):
            if all(math.hypot(x - cx, y - cy) >= spacing for cx, cy in placed):
                placed.append((x, y))
                if len(placed) == n:
                    used = k + 1
                    break
        centres = np.array([[x, y, 0.0] for x, y in placed]).reshape(-1, 3)
        if used < tries:  # consume exactly the draws that were used (keeps the random stream, hence the scenes)
            rng.bit_generator.state = state
            rng.uniform(size=2 * used)
        side *= 1.05
    poses = []
    for c in centres:
        yaw = rotation_matrix([0, 0, 1], rng.uniform(0, 2 * math.pi))
        tilt_axis = np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), math.sin(a), 0.0])
        tilt = rotation_matrix(tilt_axis, math.radians(rng.uniform(-max_tilt_deg, max_tilt_deg)))
        m = np.eye(4)
        m[:3, :3] = tilt @ yaw
        m[:3, 3] = c
        poses.append(m)
    return np.stack(poses)


def look_at_gl(origin, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world: -z looks from origin towards target, +y roughly along `up`."""
    origin, target, up = (np.asarray(a, np.float64) for a in (origin, target, up))
    back = origin - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, true_up, back, origin
    return m


def make_layout(n: int, width: int, seed: int, elevation_deg: float = 65.0, fill: float = 0.95) -> SceneLayout:
    """Poses and a camera that frames every instance's bounding sphere inside `fill` of the (square) image."""
    rng = np.random.default_rng(seed)
    poses = place_instances(n, rng)
    centres = poses[:, :3, 3]
    target = centres.mean(0)
    r = bounding_radius()
    focal = FOCAL_PER_WIDTH * width
    azim = rng.uniform(0, 2 * math.pi)
    el = math.radians(elevation_deg)
    direction = np.array([math.cos(azim) * math.cos(el), math.sin(azim) * math.cos(el), math.sin(el)])
    lo, hi = 1.0, 200.0
    for _ in range(60):  # smallest distance at which all spheres fit
        mid = 0.5 * (lo + hi)
        c2w = look_at_gl(target + mid * direction, target)
        w2c = np.linalg.inv(c2w)
        cam = centres @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -cam[:, 2]
        ok = np.all(depth > 2 * r)
        if ok:
            half = (np.abs(cam[:, :2]) + 0.8 * r) / depth[:, None]
            ok = bool(np.all(half * focal <= fill * width / 2))
        lo, hi = (lo, mid) if ok else (mid, hi)
    c2w = look_at_gl(target + hi * direction, target)
    return SceneLayout(n=n, width=width, height=width, object_to_world=poses, c2w_gl=c2w, focal=focal, seed=seed)


# --------------------------------------------------------------------------------------------------------- lighting
def default_light(seed: int) -> dict:
    """A spherical-Gaussian environment, L(w) = sum_k mu_k exp(lambda_k (w . xi_k - 1)) (the light model of SfD
    Sec. 3.4, after PhySG), in world coordinates: a broad sky lobe plus a few sharp sun-like lobes above the horizon."""
    rng = np.random.default_rng(seed + 7)
    # sky from above, a dim bounce from below (so nothing is pitch black), three sharp sun-like lobes
    axes, sharp, amp = [np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])], [2.0, 1.0], [np.full(3, 0.9),
                                                                                              np.full(3, 0.12)]
    for _ in range(3):
        az, el = rng.uniform(0, 2 * math.pi), rng.uniform(math.radians(25), math.radians(75))
        axes.append(np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)]))
        sharp.append(float(rng.uniform(30, 80)))
        amp.append(rng.uniform(4.0, 9.0) * (0.8 + 0.2 * rng.random(3)))
    return {"axis": np.stack(axes).tolist(), "sharpness": sharp, "amplitude": np.stack(amp).tolist()}


def eval_light(light: dict, dirs: np.ndarray) -> np.ndarray:
    """Radiance (..., 3) of the SG environment for unit world directions (..., 3)."""
    axis = np.asarray(light["axis"], np.float64)
    lam = np.asarray(light["sharpness"], np.float64)
    mu = np.asarray(light["amplitude"], np.float64)
    cos = dirs @ axis.T                                   # (..., K)
    return np.exp(lam * (cos - 1.0)) @ mu                 # (..., 3)


def latlong_directions(height: int, width: int) -> np.ndarray:
    """Directions of an SfD lat-long map (z up): rows = polar angle phi in [0, pi] from +z, columns = azimuth theta from
    +pi down to -pi; d = (cos theta sin phi, sin theta sin phi, cos phi). Sampled at pixel centres."""
    phi = (np.arange(height) + 0.5) / height * math.pi
    theta = math.pi - (np.arange(width) + 0.5) / width * 2 * math.pi
    ph, th = np.meshgrid(phi, theta, indexing="ij")
    return np.stack([np.cos(th) * np.sin(ph), np.sin(th) * np.sin(ph), np.cos(ph)], -1)
