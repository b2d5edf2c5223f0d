"""Encoder: normalisation, chart limits, bad meshes, textured meshes through the glTF loader, the 1-px ring, sparse
pooling on a hand-made case."""
import numpy as np
import pytest

from models.omages import format as fmt
from models.omages.encode import EncodeError, MeshInput, encode_mesh, load_mesh, normalize
from models.omages.pool import boundary_mask, naive_downsample, sparse_pool

trimesh = pytest.importorskip("trimesh")


def cubes(n_side: int):
    parts = [trimesh.creation.box(extents=[0.3] * 3, transform=trimesh.transformations.translation_matrix(
        [i, j, k])) for i in range(n_side) for j in range(n_side) for k in range(n_side)]
    m = trimesh.util.concatenate(parts)
    return MeshInput(m.vertices, m.faces, name="cubes")


def test_normalize_extent_and_centre():
    v = np.random.default_rng(0).normal(size=(100, 3)) * [3, 1, 0.5] + 7
    n, c, s = normalize(v)
    assert np.isclose(np.ptp(n, axis=0).max(), 1.9999) and np.allclose((n.max(0) + n.min(0)) / 2, 0, atol=1e-12)


def test_too_many_charts_is_an_error_or_keeps_the_largest():
    with pytest.raises(EncodeError, match="more than the maximum 64"):
        encode_mesh(cubes(5))
    r = encode_mesh(cubes(5), too_many="largest")
    assert r.n_charts <= 64


@pytest.mark.parametrize("mesh, words", [
    (MeshInput(np.zeros((0, 3)), np.zeros((0, 3), int)), "empty"),
    (MeshInput(np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]])), "nan"),
    (MeshInput(np.zeros((3, 3)), np.array([[0, 1, 2]])), "zero extent"),
    (MeshInput(np.eye(3), np.array([[0, 1, 5]])), "out of range"),
])
def test_bad_meshes(mesh, words):
    with pytest.raises(EncodeError) as err:
        encode_mesh(mesh)
    assert words in str(err.value).lower()


def test_textured_glb_is_sampled(tmp_path):
    from PIL import Image

    plane = trimesh.creation.box(extents=[2, 1, 0.02])
    v, f = trimesh.remesh.subdivide_to_size(plane.vertices, plane.faces, 0.1)
    uv = np.stack([(v[:, 0] + 1) / 2, (v[:, 1] + 0.5)], axis=1)
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4] = [255, 0, 0]
    tex[:, 4:] = [0, 0, 255]
    mr = np.zeros((8, 8, 3), np.uint8)
    mr[..., 1], mr[..., 2] = 128, 255
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex),
                                              metallicRoughnessTexture=Image.fromarray(mr),
                                              metallicFactor=1.0, roughnessFactor=0.5)
    mesh = trimesh.Trimesh(v, f, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False)
    path = tmp_path / "plane.glb"
    mesh.export(path)
    r = encode_mesh(load_mesh(path), res=256)
    src = r.source
    occ = src[..., 3] > 0.5
    x = src[..., 0] * 2 - 1
    top = occ & (np.abs(src[..., 6] * 2 - 1) > 0.9)          # the two large faces (normal +-z)
    left, right = top & (x < -0.3) & (x > -0.8), top & (x > 0.3) & (x < 0.8)   # away from the repeat wrap
    assert np.allclose(src[left][:, 7:10], [1, 0, 0], atol=0.02)
    assert np.allclose(src[right][:, 7:10], [0, 0, 1], atol=0.02)
    assert np.allclose(src[top][:, 11], 0.5 * 128 / 255, atol=0.01)   # rough = G (linear) x factor
    assert np.allclose(src[top][:, 10], 1.0, atol=0.01)


def test_mesh_uvs_as_charts_repack_only():
    box = trimesh.creation.box(extents=[1, 1, 1])
    v, f = box.vertices[box.faces].reshape(-1, 3), np.arange(36).reshape(12, 3)
    uv = np.zeros((36, 2))
    normals = box.face_normals
    for t in range(12):   # one island per cube side (grouped by normal), laid side by side
        axis = int(np.argmax(np.abs(normals[t])))
        k = 2 * axis + int(normals[t, axis] > 0)
        others = [a for a in range(3) if a != axis]
        uv[f[t]] = (v[f[t]][:, others] + 0.5) / 2 + [k * 0.6, 0]
    r = encode_mesh(MeshInput(v, f, uv=uv), use_mesh_uvs=True)
    assert r.n_charts == 6


def test_ring_is_one_pixel_and_on_the_surface():
    plane = trimesh.creation.box(extents=[1, 1, 0.01])
    r = encode_mesh(MeshInput(plane.vertices, plane.faces), res=256)
    occ = r.source[..., 3] > 0.5
    covered = r.chart_map >= 0
    assert np.array_equal(occ, covered)
    from scipy import ndimage
    # every occupied pixel is within one pixel of the interior of its chart
    inner = ndimage.binary_erosion(occ, np.ones((3, 3)))
    assert (ndimage.binary_dilation(inner, np.ones((3, 3))) | ~occ).mean() > 0.99
    p = r.source[occ][:, :3] * 2 - 1
    assert np.abs(p).max() <= 1.0                                   # ring values lie on the mesh, not outside


def test_sparse_pooling_by_hand():
    om = np.zeros((8, 8, 12), np.float32)
    om[2:8, 2:8, 3] = 1
    om[2:8, 2:8, 0] = np.arange(6)[None, :] / 10
    edge = boundary_mask(om[..., 3] > 0.5)
    assert edge.sum() == 6 * 4 - 4
    out = sparse_pool(om, 4)
    assert out.shape == (2, 2, 12) and (out[..., 3] == 1).all()
    # top-left block: boundary pixels (2,2),(2,3),(3,2) -> x values 0, .1, 0
    assert np.isclose(out[0, 0, 0], 0.1 / 3, atol=1e-6)
    naive = naive_downsample(om, 4)
    assert naive[0, 0, 3] == 0                                       # the stride sample misses the chart corner
    assert fmt.validate(out).dtype == np.float32
