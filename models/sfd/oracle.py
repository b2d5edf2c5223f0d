"""Oracle correspondences for testing SfM without any feature detector: project the same object-surface points into
every instance with the ground-truth camera, add pixel noise and a share of wrong matches."""
from __future__ import annotations

import numpy as np

from models.sfd import scene_layout as L
from models.sfd.poses import project


def oracle_tracks(layout: L.SceneLayout, rng: np.random.Generator, *, points: int = 400, noise_px: float = 0.5,
                  outlier_frac: float = 0.1) -> tuple[list[np.ndarray], dict]:
    """Keypoints per instance (COLMAP pixel coordinates) and matches per pair (i < j) as index arrays [m, 2].

    A surface point is seen by instance i when it faces the camera and projects inside the image (occlusion by other
    copies is ignored: the oracle only has to be right about geometry). `outlier_frac` of each pair's matches are
    replaced by random wrong pairs."""
    pts, normals = L.surface_samples(points, rng)
    cam_centre = layout.c2w_gl[:3, 3]
    keypoints, seen = [], []
    for pose in layout.object_to_world:
        world = pts @ pose[:3, :3].T + pose[:3, 3]
        n_world = normals @ pose[:3, :3].T
        facing = np.einsum("ij,ij->i", n_world, cam_centre - world) > 0
        uv = project(layout.c2w_gl, layout.focal, world, layout.width, layout.height)
        inside = facing & np.all((uv >= 0) & (uv < [layout.width, layout.height]), axis=1)
        keypoints.append(uv + rng.normal(0, noise_px, uv.shape))
        seen.append(inside)
    matches = {}
    n = len(keypoints)
    for i in range(n):
        for j in range(i + 1, n):
            common = np.nonzero(seen[i] & seen[j])[0]
            if len(common) < 8:
                continue
            m = np.stack([common, common], 1)
            bad = rng.random(len(m)) < outlier_frac
            m[bad, 1] = rng.integers(0, points, int(bad.sum()))
            matches[(i, j)] = m
    return keypoints, matches
