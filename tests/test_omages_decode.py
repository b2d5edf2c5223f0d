"""A7 decoder hygiene (no faces across borders, one triangle per 3-of-4 quad, no duplicates, empty -> empty mesh),
orientation, seam zipping, and the GLB / PLY exports."""
import itertools

import numpy as np
import pytest

from models.omages import format as fmt
from models.omages.decode import decode, grid_faces
from models.omages.export import write_glb, write_ply
from models.omages.seams import boundary_stats, remove_degenerate


def synthetic(occ: np.ndarray, normal=(0, 0, 1)) -> np.ndarray:
    """A flat omage: position = pixel grid on z = 0, constant normal, given occupancy."""
    h, w = occ.shape
    om = np.zeros((h, w, 12), np.float32)
    r, c = np.mgrid[0:h, 0:w]
    om[..., 0] = (c / (w - 1) * 1.8 - 0.9 + 1) / 2
    om[..., 1] = (r / (h - 1) * 1.8 - 0.9 + 1) / 2
    om[..., 2] = 0.5
    om[..., 3] = 1
    om[..., 4:7] = (np.asarray(normal) + 1) / 2
    om[..., 7:10] = 0.5
    om[..., 11] = 0.5
    om[~occ.astype(bool)] = 0
    return om


@pytest.mark.parametrize("bits", list(itertools.product([0, 1], repeat=4)))
def test_a7_every_2x2_configuration(bits):
    occ = np.array(bits, dtype=bool).reshape(2, 2)
    f = grid_faces(occ, synthetic(occ)[..., :3])
    assert len(f) == {4: 2, 3: 1}.get(int(occ.sum()), 0)
    mesh = decode(synthetic(occ))
    assert len(mesh.faces) == len(f)


def test_a7_no_faces_across_image_borders():
    occ = np.zeros((16, 16), bool)
    occ[:, 0] = occ[:, -1] = occ[0, :] = occ[-1, :] = True      # only border strips: wrap-around would join them
    occ[:, 1] = occ[:, -2] = True
    mesh = decode(synthetic(occ))
    cols = mesh.pixel[mesh.faces][..., 1]
    rows = mesh.pixel[mesh.faces][..., 0]
    assert (np.ptp(cols, axis=1) <= 1).all() and (np.ptp(rows, axis=1) <= 1).all()


def test_a7_no_duplicate_faces_and_consistent_orientation():
    rng = np.random.default_rng(0)
    occ = rng.random((32, 32)) < 0.7
    for normal in ((0, 0, 1), (0, 0, -1)):
        mesh = decode(synthetic(occ, normal))
        key = np.sort(mesh.faces, axis=1)
        assert len(np.unique(key, axis=0)) == len(key)
        v, f = mesh.vertices, mesh.faces
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        assert (np.sign(n[:, 2]) == normal[2]).all()


def test_orientation_without_normals_points_outwards():
    from models.omages.encode import encode_mesh
    from models.omages.procedural import make_shape

    om = encode_mesh(make_shape("vase", 1).mesh_input()).omage.copy()
    om[..., 4:7] = 0                         # a geometry-only omage (the reference's -x-y-z bug case)
    mesh = decode(om)
    v, f = mesh.vertices, mesh.faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    c = v.mean(axis=0)
    out = ((v[f].mean(axis=1) - c) * n).sum(axis=1)
    assert (out > 0).mean() > 0.8


def test_a7_empty_occupancy_gives_an_empty_mesh(tmp_path):
    mesh = decode(np.zeros((64, 64, 12), np.float32))
    assert mesh.empty and len(mesh.vertices) == 0 and mesh.n_patches == 0
    glb = write_glb(tmp_path / "empty.glb", mesh)
    assert glb.read_bytes()[:4] == b"glTF"
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)))


def test_long_edges_are_dropped():
    occ = np.ones((8, 8), bool)
    om = synthetic(occ)
    om[4, 4, :3] = [0.99, 0.99, 0.99]                                   # one wild pixel makes webbing
    assert len(decode(om, long_edge=None).faces) > len(decode(om).faces)


def test_zipping_closes_a_split_seam():
    occ = np.ones((10, 21), bool)
    occ[:, 10] = False                                                 # two charts sharing one 3D seam
    om = synthetic(occ)
    om[:, 11:, 0] -= om[0, 11, 0] - om[0, 9, 0]                     # right chart's first column on the left's last
    mesh = decode(om)
    assert mesh.n_patches == 2
    zipped = decode(om, zip_eps=0.5)
    before, after = boundary_stats(mesh.faces), boundary_stats(zipped.faces)
    assert after["boundary_edges"] < before["boundary_edges"] - 15 and after["nonmanifold_edges"] == 0


def test_remove_degenerate():
    f = np.array([[0, 1, 2], [2, 1, 0], [0, 0, 1], [1, 2, 3]])
    assert remove_degenerate(f).tolist() == [[0, 1, 2], [1, 2, 3]]


def test_glb_has_pbr_material_and_reloads(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    om = fmt.load_omage("test_data/omages/chair_0.npz")
    mesh = decode(om)
    path = write_glb(tmp_path / "chair.glb", mesh, om)
    scene = trimesh.load(str(path))
    geom = list(scene.geometry.values())[0]
    assert len(geom.faces) == len(mesh.faces)
    mat = geom.visual.material
    assert mat.baseColorTexture is not None and mat.metallicRoughnessTexture is not None
    # the texture under a vertex is that vertex's pixel: check roughness (G) at a few vertices
    mr = np.asarray(mat.metallicRoughnessTexture)
    r, c = mesh.pixel[:50].T
    assert np.allclose(mr[r, c, 1] / 255, om[r, c, 11], atol=1 / 255)


def test_point_cloud_ply(tmp_path):
    pts = np.random.default_rng(0).random((100, 3))
    path = write_ply(tmp_path / "p.ply", pts, np.ones((100, 3)))
    data = path.read_bytes()
    assert data.startswith(b"ply") and data.endswith(np.float32(pts[-1, 2]).tobytes() + bytes([255, 255, 255]))
