"""Procedural families: deterministic by seed, within the chart budget, open surfaces where intended, materials
in range, and no coincident opposite-facing parts (they would make the signed normal check ill-posed)."""
import numpy as np
import pytest

from models.omages.encode import encode_mesh
from models.omages.metrics import face_normals, point_to_mesh, sample_surface
from models.omages.procedural import FAMILIES, make_shape
from models.omages.seams import boundary_stats


@pytest.mark.parametrize("family", FAMILIES)
def test_family(family):
    a, b = make_shape(family, 5), make_shape(family, 5)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    c = make_shape(family, 6)
    assert c.vertices.shape != a.vertices.shape or not np.allclose(c.vertices, a.vertices)   # seeds differ
    assert np.isclose(np.ptp(a.vertices, axis=0).max(), 1.9999)
    assert len(np.unique(a.face_part)) >= 1 and len(a.materials) == a.face_part.max() + 1
    open_edges = boundary_stats(a.faces)["boundary_edges"]
    assert (open_edges > 0) == a.open_surface                          # lampshade, vase and mug rims are open
    r = encode_mesh(a.mesh_input())
    assert 1 <= r.n_charts <= 64
    om = r.omage[r.omage[..., 3] > 0.5]
    assert set(np.unique(om[:, 10])) <= {0.0, 1.0}                     # metallic is binary
    assert om[:, 11].min() >= 0.0 and om[:, 11].max() <= 1.0


def test_no_coincident_opposite_parts():
    for family in ("chair", "sofa", "shelf"):
        s = make_shape(family, 1)
        pts, fi = sample_surface(s.vertices, s.faces, 1500, seed=0)
        n = face_normals(s.vertices, s.faces)
        bad = 0
        for k in np.unique(s.face_part):
            sel, other = s.face_part[fi] == k, s.face_part != k
            if not other.any() or not sel.any():
                continue
            d, _, cf = point_to_mesh(pts[sel], s.vertices, s.faces[other])
            cf = np.nonzero(other)[0][cf]
            bad += int(((d < 2e-3) & ((n[fi[sel]] * n[cf]).sum(1) < -0.5)).sum())
        assert bad / len(pts) < 0.002, family


def test_materials_differ_between_parts():
    s = make_shape("chair", 2)
    bases = np.array([m.base for m in s.materials])
    assert len(np.unique(bases.round(6), axis=0)) > 1
