"""Metrics: exact point-to-triangle distances against brute force, surface errors on known offsets, the Chamfer
distribution metrics, FD/KID and omage statistics; the rasteriser against a per-triangle reference."""
import numpy as np
import pytest

from models.omages import metrics as M
from models.omages.raster import rasterize


def brute_distance(p, v, f):
    tri = v[f]
    return np.array([np.linalg.norm(M.closest_on_triangles(np.repeat(x[None], len(f), 0), tri[:, 0], tri[:, 1],
                                                           tri[:, 2]) - x, axis=1).min() for x in p])


def test_closest_point_is_never_beaten_by_dense_samples():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 500, 3))
    p = rng.normal(size=(500, 3)) * 2
    q = M.closest_on_triangles(p, a, b, c)
    d = np.linalg.norm(q - p, axis=1)
    u, w = np.meshgrid(np.linspace(0, 1, 120), np.linspace(0, 1, 120))
    ok = u + w <= 1
    pts = a[:, None] + (b - a)[:, None] * u[ok][None, :, None] + (c - a)[:, None] * w[ok][None, :, None]
    dense = np.linalg.norm(pts - p[:, None], axis=2).min(axis=1)
    assert (d <= dense + 1e-12).all() and (dense - d).max() < 0.05


def test_point_to_mesh_matches_brute_force_on_a_skewed_mesh():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(60, 3))
    f = rng.integers(0, 60, size=(80, 3))                 # long thin overlapping triangles: the hard case
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    p = rng.normal(size=(300, 3)) * 1.5
    d, q, fi = M.point_to_mesh(p, v, f, k=4)
    assert np.allclose(d, brute_distance(p, v, f), atol=1e-12)
    assert np.allclose(np.linalg.norm(q - p, axis=1), d)


def test_surface_errors_on_known_offset():
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    same = M.surface_errors(v, f, v, f, n=2000)
    assert same["cd_l1"] < 1e-12 and same["nc"] == pytest.approx(1.0)
    shifted = M.surface_errors(v + [0, 0, 0.01], f, v, f, n=2000)
    assert shifted["cd_l1"] == pytest.approx(0.02, rel=1e-6) and shifted["hd"] == pytest.approx(0.01, rel=1e-6)
    flipped = M.surface_errors(v, f[:, ::-1], v, f, n=2000)
    assert flipped["nc"] == pytest.approx(-1.0)                 # the sign of the normal counts
    assert M.surface_errors(v, np.zeros((0, 3), int), v, f)["cd_l1"] == np.inf


def test_sampling_is_area_uniform_and_seeded():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 3, 5]], float)
    f = np.array([[0, 1, 2], [3, 4, 5]])                        # areas 1 : 9
    p, fi = M.sample_surface(v, f, 20000, seed=0)
    assert abs((fi == 1).mean() - 0.9) < 0.01
    assert np.array_equal(p, M.sample_surface(v, f, 20000, seed=0)[0])


def test_distribution_metrics():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(12, 256, 3))
    same = M.mmd_cov_1nna(ref + 1e-4 * rng.normal(size=ref.shape), ref)
    assert same["cov_cd"] == 1.0 and same["nna_cd"] == 0.0          # each copy's nearest neighbour is its twin
    far = M.mmd_cov_1nna(ref + 5.0, ref)
    assert far["nna_cd"] == 1.0 and far["mmd_cd"] > 20
    mixed = M.mmd_cov_1nna(rng.normal(size=(12, 256, 3)), ref)
    assert 0.2 <= mixed["nna_cd"] <= 0.8
    cm = M.chamfer_matrix(ref[:2], ref[:3])
    assert cm.shape == (2, 3) and cm[0, 0] < 1e-5 and cm[0, 1] > 0.1


def test_fd_and_kid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = a + 2.0
    assert M.frechet_distance(a, b) == pytest.approx(32.0, rel=1e-6)   # |mu1 - mu2|^2 with equal covariances
    assert abs(M.kid(a, rng.normal(size=(400, 8)), subsets=10, subset_size=200)) < 0.05
    assert M.kid(a, b, subsets=10, subset_size=200) > 1.0


def test_omage_stats():
    om = np.zeros((16, 16, 12), np.float32)
    om[1:5, 1:5, 3] = 1
    om[8:12, 8:16, 3] = 1
    s = M.omage_stats(om)
    assert s["n_charts"] == 2 and s["occupied"] == pytest.approx(48 / 256)
    assert sorted(s["chart_areas"].tolist()) == [16 / 256, 32 / 256]
    assert M.stats_distance([om], [om]) == {"n_charts": 0.0, "occupied": 0.0, "chart_areas": 0.0}


def test_rasterizer_matches_per_triangle_reference():
    rng = np.random.default_rng(0)
    tri = rng.uniform(-3, 40, (40, 3, 2))
    face, bary = rasterize(tri, 37, 37)
    ys, xs = np.mgrid[0:37, 0:37]
    P = np.stack([xs, ys], -1).reshape(-1, 2).astype(float)
    cover = np.zeros(len(P), bool)
    for a, b, c in tri:
        cr = lambda p, q: (q[0] - p[0]) * (P[:, 1] - p[1]) - (q[1] - p[1]) * (P[:, 0] - p[0])  # noqa: E731
        d = np.stack([cr(a, b), cr(b, c), cr(c, a)])
        cover |= (d >= 0).all(0) | (d <= 0).all(0)
    assert np.array_equal(cover, face.reshape(-1) >= 0)
    fi = face.reshape(-1)
    m = fi >= 0
    rec = (bary.reshape(-1, 3)[m, :, None] * tri[fi[m]]).sum(1)
    assert np.abs(rec - P[m]).max() < 1e-4


def test_rasterizer_depth_test_keeps_the_nearest():
    t = np.array([[[0, 0], [20, 0], [0, 20]], [[0, 0], [20, 0], [0, 20]]], float)
    face, _ = rasterize(t, 16, 16, depth=np.array([[2.0] * 3, [1.0] * 3]))
    assert set(np.unique(face[face >= 0])) == {1}
