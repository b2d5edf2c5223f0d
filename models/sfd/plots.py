"""Pictures of a preprocessing run: feature matches between instance crops, and the recovered scene in 3D (the real
camera with every instance's box in the world, and the N virtual cameras around the one canonical object)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from data.io import write_png
from models.sfd.poses import rigid_inverse, transform


def matches_image(crops, feats, matches: dict, max_pairs: int = 3, tile: int = 384, seed: int = 0) -> np.ndarray:
    """Rows of side-by-side crops with lines between matched keypoints (best, median and worst kept pairs)."""
    import cv2

    rng = np.random.default_rng(seed)
    ranked = sorted(matches, key=lambda p: -len(matches[p]))
    picks = [ranked[k] for k in sorted({0, len(ranked) // 2, len(ranked) - 1})][:max_pairs] if ranked else []
    rows = []
    for i, j in picks:
        a, b = crops[i].image, crops[j].image
        sa, sb = tile / a.shape[1], tile / b.shape[1]
        canvas = np.concatenate([cv2.resize(a, (tile, tile), interpolation=cv2.INTER_AREA),
                                 cv2.resize(b, (tile, tile), interpolation=cv2.INTER_AREA)], 1).copy()
        m = matches[(i, j)]
        for ka, kb in m[rng.permutation(len(m))[:150]]:
            pa = tuple(int(v) for v in feats[i].crop_xy[ka] * sa)
            pb = tuple(int(v) for v in feats[j].crop_xy[kb] * sb + np.array([tile, 0]))
            colour = tuple(int(c) for c in rng.integers(60, 256, 3))
            cv2.line(canvas, pa, pb, colour, 1, cv2.LINE_AA)
            cv2.circle(canvas, pa, 2, colour, -1)
            cv2.circle(canvas, pb, 2, colour, -1)
        cv2.putText(canvas, f"instance {crops[i].label} - {crops[j].label}: {len(m)} matches", (8, 22),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2, cv2.LINE_AA)
        rows.append(canvas)
    if not rows:
        return np.zeros((tile, 2 * tile, 3), np.uint8)
    return np.concatenate(rows, 0)


def _frustum(ax, c2w: np.ndarray, size: float, colour: str, label: str | None = None):
    o = c2w[:3, 3]
    corners = [transform(c2w, np.array([[sx * 0.5, sy * 0.5, -1.0]]) * size)[0] for sx, sy in
               ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    for c in corners:
        ax.plot(*zip(o, c), color=colour, lw=0.8)
    ring = corners + corners[:1]
    ax.plot(*zip(*ring), color=colour, lw=0.8, label=label)


def _box(ax, m: np.ndarray, colour):
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    pts = transform(m, cube)
    for a in range(8):
        for b in range(a + 1, 8):
            if bin(a ^ b).count("1") == 1:
                ax.plot(*zip(pts[a], pts[b]), color=colour, lw=0.7)


def cameras_image(c2w: np.ndarray, poses: list[np.ndarray], scale: np.ndarray, points_world: np.ndarray,
                  points_canon: np.ndarray, labels: list[int]) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points_world, points_canon = _inliers(points_world), _inliers(points_canon)
    fig = plt.figure(figsize=(11, 5.2), dpi=100)
    colours = plt.cm.tab10(np.arange(len(poses)) % 10)
    r = float(scale[0, 0])
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    ax.set_title("world: real camera + instances (box = S)")
    sub = points_world[:: max(1, len(points_world) // 3000)]
    ax.scatter(*sub.T, s=0.5, c="grey")
    for p, col, lab in zip(poses, colours, labels):
        _box(ax, p @ scale, col)
        ax.text(*transform(p, scale[:3, 3][None])[0], str(lab), color=col)
    dist = np.linalg.norm(c2w[:3, 3] - points_world.mean(0)) if len(points_world) else 1.0
    _frustum(ax, c2w, 0.15 * dist, "k", "camera")
    ax2 = fig.add_subplot(1, 2, 2, projection="3d")
    ax2.set_title("object frame: virtual cameras P_i^-1 C")
    sub = points_canon[:: max(1, len(points_canon) // 3000)]
    ax2.scatter(*sub.T, s=0.5, c="grey")
    for p, col, lab in zip(poses, colours, labels):
        v = rigid_inverse(p) @ c2w
        _frustum(ax2, v, 0.15 * dist, col)
        ax2.text(*v[:3, 3], str(lab), color=col)
    _box(ax2, scale, "k")
    for a in (ax, ax2):
        a.set_box_aspect((1, 1, 1))
        _equal_limits(a)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    import imageio.v3 as iio

    return iio.imread(buf.getvalue(), extension=".png")[..., :3]


def _inliers(pts: np.ndarray) -> np.ndarray:
    """Drop far-away SfM points (a few always exist) so they do not squash the plot."""
    if len(pts) < 10:
        return pts
    d = np.linalg.norm(pts - np.median(pts, 0), axis=1)
    return pts[d <= 3 * np.median(d)]


def _equal_limits(ax):
    lims = np.array([ax.get_xlim3d(), ax.get_ylim3d(), ax.get_zlim3d()])
    centre, half = lims.mean(1), (lims[:, 1] - lims[:, 0]).max() / 2
    ax.set_xlim3d(centre[0] - half, centre[0] + half)
    ax.set_ylim3d(centre[1] - half, centre[1] + half)
    ax.set_zlim3d(centre[2] - half, centre[2] + half)


def save(path: Path, img: np.ndarray) -> None:
    write_png(path, img)
