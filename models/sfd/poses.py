"""Camera conventions, SfM poses -> object-to-world poses, canonical normalisation and the pose metric.

Conventions (documented in docs/sfd.md):
* pixels: pixel (column u, row v) has its centre at (u + 0.5, v + 0.5); principal point (W/2, H/2). COLMAP uses the
  same continuous coordinates, so SfM keypoints and training rays agree exactly (the original SfD used integer pixel
  indices for rays and (W/2 - 0.5, H/2 - 0.5) for COLMAP, a half-pixel mismatch);
* cameras: SfM is OpenCV (x right, y down, z forward); everything written is OpenGL (x right, y up, z backward);
* F = diag(1, -1, -1) turns one into the other. Following SfD (Sec. 3.2) the world is the F-flipped COLMAP frame in
  which instance 0 has the identity pose: P_0 = I and the real camera's c2w is C = (F T_0 F)^-1, where T_i is COLMAP's
  world-to-camera matrix of virtual camera i. Then P_i = C F T_i F, and a COLMAP point p lies at P_i F p in the world
  as seen through instance i.
"""
from __future__ import annotations

import math

import numpy as np

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


# ----------------------------------------------------------------------------------------------------- projection
def project(c2w_gl: np.ndarray, focal: float, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """World points (..., 3) -> continuous pixel coordinates (..., 2) (pixel centres at +0.5)."""
    w2c = np.linalg.inv(c2w_gl)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]            # OpenGL camera: in front means z < 0
    depth = -cam[..., 2]
    u = width / 2 + focal * cam[..., 0] / depth
    v = height / 2 - focal * cam[..., 1] / depth
    return np.stack([u, v], -1)


def camera_depth(c2w_gl: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance along the viewing axis (positive in front of the camera)."""
    w2c = np.linalg.inv(c2w_gl)
    return -(points @ w2c[2, :3] + w2c[2, 3])


def pixel_rays(c2w_gl: np.ndarray, focal: float, uv: np.ndarray, width: int, height: int):
    """Rays through continuous pixel coordinates: d_cam = K^-1 [u, v, 1] (OpenCV), flipped to OpenGL by diag(1, -1,
    -1), rotated by the c2w rotation and normalised; origin = the camera centre. Returns (origins, unit dirs)."""
    uv = np.asarray(uv, np.float64)
    d = np.stack([(uv[..., 0] - width / 2) / focal, -(uv[..., 1] - height / 2) / focal,
                  -np.ones(uv.shape[:-1])], -1)
    d = d @ c2w_gl[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.broadcast_to(c2w_gl[:3, 3], d.shape).copy(), d


def pixel_centres(width: int, height: int) -> np.ndarray:
    """H x W x 2 continuous coordinates of every pixel centre."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([u, v], -1)


# ------------------------------------------------------------------------------------------------- SfM -> world
def rigid_inverse(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return out


def poses_from_sfm(cam_from_world: dict[int, np.ndarray], order: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """COLMAP world-to-camera matrices (OpenCV) of the instances in `order` -> (C = OpenGL c2w of the real camera,
    [P_i] object-to-world with P_order[0] = I)."""
    flipped = [FLIP @ cam_from_world[i] @ FLIP for i in order]
    c2w = rigid_inverse(flipped[0])
    poses = [c2w @ t for t in flipped]
    poses[0] = np.eye(4)  # exactly, not up to round-off
    return c2w, poses


def canonical_points(points_colmap: np.ndarray) -> np.ndarray:
    """COLMAP-frame points -> the (F-flipped) canonical object frame."""
    return points_colmap * FLIP[:3, :3].diagonal()


def transform(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:3, :3].T + m[:3, 3]


def scale_matrix(points0_world: np.ndarray, keep: float = 0.99) -> np.ndarray:
    """SfD's canonical normalisation S from instance 0's SfM points: keep the `keep` share closest to their mean (a
    one-cluster k-means), centre c = mean of those, radius r = half the diagonal of their bounding box.
    S = [[r, 0, 0, c_x], [0, r, 0, c_y], [0, 0, r, c_z], [0, 0, 0, 1]], so x_canon = S^-1 P_i^-1 x_world."""
    pts = np.asarray(points0_world, np.float64)
    if len(pts) < 4:
        raise ValueError("need at least 4 points of instance 0 for the scale matrix")
    dist = np.linalg.norm(pts - pts.mean(0), axis=1)
    kept = pts[dist <= np.quantile(dist, keep)]
    c = kept.mean(0)
    r = 0.5 * float(np.linalg.norm(kept.max(0) - kept.min(0)))
    s = np.eye(4)
    s[:3, :3] *= r
    s[:3, 3] = c
    return s


# ------------------------------------------------------------------------------------------------------- metrics
def rotation_angle_deg(r: np.ndarray) -> float:
    """Geodesic angle of a rotation matrix; atan2 of sin and cos keeps precision near 0 (acos does not)."""
    sin = 0.5 * np.linalg.norm([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return math.degrees(math.atan2(sin, (np.trace(r) - 1) / 2))


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src + t - dst|^2 (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    r = u @ sign @ vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ sign) / var) if var > 0 else 1.0
    return s, r, mu_d - s * r @ mu_s


def relative_rotation_errors(c2w_pred, poses_pred, c2w_gt, poses_gt) -> np.ndarray:
    """Errors (deg) of the pairwise relative rotations A_j A_i^T over all pairs i < j, with A_i the object-to-camera
    rotation of instance i. Independent of the unknown object frame and scale of the reconstruction."""
    a_p = [(rigid_inverse(c2w_pred) @ p)[:3, :3] for p in poses_pred]
    a_g = [(rigid_inverse(c2w_gt) @ p)[:3, :3] for p in poses_gt]
    errs = [rotation_angle_deg((a_p[j] @ a_p[i].T) @ (a_g[j] @ a_g[i].T).T)
            for i in range(len(a_p)) for j in range(i + 1, len(a_p))]
    return np.array(errs)


def pose_metric(c2w_pred, poses_pred, c2w_gt, poses_gt) -> dict:
    """SfD's pose metric: virtual cameras V_i = P_i^-1 C relative to instance 0 (V_0^-1 V_i), centres centred and scaled
    to unit mean distance, predicted centres aligned to GT by a similarity; rotation error = geodesic angle, translation
    error = distance of aligned centres (normalised units). Also the frame-free pairwise relative-rotation errors."""
    def relative(c2w, poses):
        v = [rigid_inverse(p) @ c2w for p in poses]
        v0inv = rigid_inverse(v[0])
        return [v0inv @ vi for vi in v]

    mp, mg = relative(c2w_pred, poses_pred), relative(c2w_gt, poses_gt)
    cp = np.array([m[:3, 3] for m in mp])
    cg = np.array([m[:3, 3] for m in mg])

    def normalise(c):
        c = c - c.mean(0)
        return c / max(np.linalg.norm(c, axis=1).mean(), 1e-12)

    cp, cg = normalise(cp), normalise(cg)
    s, r, t = umeyama(cp, cg)
    aligned = (s * cp @ r.T) + t
    dt = np.linalg.norm(aligned - cg, axis=1)
    dr = np.array([rotation_angle_deg(r @ a[:3, :3] @ b[:3, :3].T) for a, b in zip(mp, mg)])
    rel = relative_rotation_errors(c2w_pred, poses_pred, c2w_gt, poses_gt)
    return {"dr_mean_deg": float(dr.mean()), "dr_max_deg": float(dr.max()), "dt_mean": float(dt.mean()),
            "dt_max": float(dt.max()), "rel_rot_median_deg": float(np.median(rel)) if len(rel) else 0.0,
            "rel_rot_mean_deg": float(rel.mean()) if len(rel) else 0.0,
            "rel_rot_max_deg": float(rel.max()) if len(rel) else 0.0,
            "dr_per_instance_deg": dr.tolist(), "dt_per_instance": dt.tolist()}
