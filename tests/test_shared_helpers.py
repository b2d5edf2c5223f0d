"""The helpers that have one definition for every system: geometry (flip, normals from height, angular error),
colour (luminance), the DiffMotion channel layout."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.core.color import REC709, luminance
from models.core.geometry import angular_error, angular_error_stats, flip_normals, normals_from_height


def _unit_field(shape=(2, 3, 6, 5), seed=0):
    n = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return n / n.norm(dim=-3, keepdim=True)


# ---------------------------------------------------------------------------------------------------- flip_normals
def test_flip_normals_maps_vectors_and_numpy():
    n = _unit_field()
    f = flip_normals(n)
    assert torch.equal(f[:, :2], -n[:, :2]) and torch.equal(f[:, 2], n[:, 2])
    assert torch.equal(flip_normals(f), n)  # an involution
    light = torch.tensor([[0.3, -0.4, 0.866], [0.0, 0.6, 0.8]])
    assert torch.equal(flip_normals(light), light * torch.tensor([-1.0, -1.0, 1.0]))  # [N, 3] lights, last axis
    arr = n[0].numpy()
    out = flip_normals(arr)
    assert isinstance(out, np.ndarray) and np.array_equal(out, f[0].numpy())
    assert np.array_equal(flip_normals(np.array([1, 2, 3])), [-1.0, -2.0, 3.0])
    t = n.movedim(1, -1)  # channels last, explicit axis
    assert torch.equal(flip_normals(t, dim=-1), f.movedim(1, -1))
    with pytest.raises(ValueError, match="expected 3"):
        flip_normals(torch.zeros(2, 4, 5, 5), dim=1)


def test_flip_keeps_the_lambertian_image():
    """I(n, l) = I(flip n, flip l) exactly: the depth reversal that makes shading ambiguous."""
    from data.lambertian import render_lambertian

    n = _unit_field((1, 3, 8, 8)).float()
    n[:, 2] = n[:, 2].abs()
    light = torch.tensor([[0.3, -0.5, 0.81]])
    assert torch.equal(render_lambertian(n, light, 0.8), render_lambertian(flip_normals(n), flip_normals(light), 0.8))


# ------------------------------------------------------------------------------------------- normals_from_height
def test_normals_from_height_plane_and_frame():
    """A plane z = a*col - b*row (row grows downwards) has the constant normal ∝ (-a, -b, 1): +y is up."""
    rows, cols = torch.meshgrid(torch.arange(7.0), torch.arange(9.0), indexing="ij")
    a, b = 0.5, 0.25
    n = normals_from_height(a * cols - b * rows)
    expect = torch.tensor([-a, -b, 1.0]) / math.sqrt(a * a + b * b + 1)
    assert n.shape == (3, 7, 9)
    torch.testing.assert_close(n, expect.view(3, 1, 1).expand(3, 7, 9), rtol=0, atol=1e-6)
    # spacing: the same surface sampled at pitch 2 has half the slope per unit length
    n2 = normals_from_height(a * cols - b * rows, spacing=2.0)
    torch.testing.assert_close(n2[:, 3, 4], torch.tensor([-a, -b, 2.0]) / math.sqrt(a * a + b * b + 4), atol=1e-6,
                               rtol=0)
    batch = normals_from_height(torch.stack([a * cols, -b * rows]))  # [2, H, W] -> [2, 3, H, W]
    assert batch.shape == (2, 3, 7, 9)
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(2, 7, 9), atol=1e-6, rtol=0)


def test_normals_from_height_sphere_cap_matches_analytic():
    size = 65
    c = torch.linspace(-0.5, 0.5, size, dtype=torch.float64)
    y, x = -c[:, None].expand(size, size), c[None, :].expand(size, size)  # y up = decreasing row
    z = torch.sqrt(1 - x * x - y * y)
    n = normals_from_height(z, spacing=1.0 / (size - 1))
    exact = torch.stack([x, y, z])  # the unit sphere's normal is its position
    err = angular_error(n, exact)[2:-2, 2:-2]  # central differences inside
    assert err.max() < 0.1


# ------------------------------------------------------------------------------------------------ angular_error
def test_angular_error_exact_zero_known_angles_and_degenerate():
    n = _unit_field()
    assert torch.equal(angular_error(n, n), torch.zeros(2, 6, 5, dtype=torch.float64))  # exactly 0, not 1e-6
    assert torch.equal(angular_error(n.float(), n.float()), torch.zeros(2, 6, 5, dtype=torch.float64))
    assert angular_error(3.0 * n, n).abs().max() < 1e-12  # inputs are normalised
    assert angular_error(n, -n).sub(180.0).abs().max() < 1e-9
    for deg in (1e-4, 0.01, 30.0, 90.0, 179.0):
        r = math.radians(deg)
        a = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1)
        b = torch.tensor([math.sin(r), 0.0, math.cos(r)], dtype=torch.float64).view(3, 1, 1)
        assert angular_error(a, b).item() == pytest.approx(deg, rel=1e-9, abs=1e-9)
    zero = torch.zeros(3, 1, 1)
    assert angular_error(zero, a).item() == 90.0 and angular_error(a, zero).item() == 90.0
    assert angular_error(n.movedim(1, -1), flip_normals(n).movedim(1, -1), dim=-1).dtype == torch.float64
    assert isinstance(angular_error(n.numpy(), n.numpy()), torch.Tensor)


def test_angular_error_stats_mask_mean_median():
    a = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2).clone()
    b = a.clone()
    angles = [10.0, 20.0, 40.0, 80.0]
    for k, deg in enumerate(angles):
        r = math.radians(deg)
        b[:, k // 2, k % 2] = torch.tensor([math.sin(r), 0.0, math.cos(r)])
    mean, median = angular_error_stats(b, a)
    assert mean == pytest.approx(37.5, abs=1e-5) and median == pytest.approx(30.0, abs=1e-5)  # numpy's even median
    mask = np.array([[1, 1], [0, 1]], np.float32)
    mean, median = angular_error_stats(b, a, mask)
    assert mean == pytest.approx(110 / 3, abs=1e-5) and median == pytest.approx(20.0, abs=1e-5)
    assert all(math.isnan(v) for v in angular_error_stats(b, a, np.zeros((2, 2))))


def test_callers_share_the_definitions():
    """The old copies are now the shared objects (imports keep working for their users)."""
    import data.lambertian
    import data.sfs_shapes
    import models.sfs.guidance
    from models.diffmotion import metrics
    from models.sfs import analysis

    assert data.lambertian.flip_normals is flip_normals and models.sfs.guidance.flip_normals is flip_normals
    assert data.sfs_shapes.normals_from_height is normals_from_height
    assert models.sfs.guidance.normals_from_height is normals_from_height
    assert metrics.angular_error is angular_error
    n = _unit_field((3, 4, 4))
    assert analysis.angular_error(n, flip_normals(n)) == angular_error_stats(n, flip_normals(n))
    assert torch.equal(analysis.flip(n), flip_normals(n))


# ---------------------------------------------------------------------------------------------------- luminance
def test_luminance_rec709_grey_and_dtypes():
    assert sum(REC709) == pytest.approx(1.0, abs=1e-12)
    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[0, :, 0], rgb[1, :, 1] = 1.0, 1.0
    out = luminance(rgb)
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert out[0, 0] == pytest.approx(0.2126, abs=1e-7) and out[1, 0] == pytest.approx(0.7152, abs=1e-7)
    grey = np.random.default_rng(0).random((4, 5, 1)).repeat(3, axis=-1)
    np.testing.assert_allclose(luminance(grey), grey[..., 0], rtol=0, atol=1e-12)  # R = G = B stays itself
    assert luminance(np.full((1, 3), 255, np.uint8))[0] == pytest.approx(255.0)
    with pytest.raises(ValueError, match="3 channels"):
        luminance(np.zeros((4, 4, 4)))


def test_image_loaders_use_the_shared_luminance(tmp_path):
    from data.io import load_image, write_png
    from data.motion import _grey

    rgb = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(_grey(rgb), luminance(rgb), rtol=0, atol=0)
    write_png(tmp_path / "c.png", rgb, bits=16)
    img, _ = load_image(tmp_path / "c.png", mode="gray", fit=None)
    np.testing.assert_allclose(img, luminance(rgb), atol=2e-5)


# ----------------------------------------------------------------------------------------------- channel layout
def test_diffmotion_channel_layout_is_one_definition():
    import data.motion
    import models.systems.diffmotion as system
    from models.diffmotion import channels, grid, metrics

    assert channels.GROUPS == ("normal", "albedo", "material")
    assert [channels.GROUP_SLICES[g] for g in channels.GROUPS] == [slice(0, 3), slice(3, 6), slice(6, 9)]
    assert data.motion.TARGET_SLICES is channels.TARGET_SLICES
    assert data.motion.foreground_mask is channels.foreground_mask
    tgt = -torch.ones(9, 2, 2)
    tgt[0:3, 0, 0] = torch.tensor([0.0, 0.6, 0.8])  # unit normal: foreground; -1 everywhere else: background
    assert channels.foreground_mask(tgt).tolist() == [[True, False], [False, False]]
    covered = sorted(i for s in channels.TARGET_SLICES.values() for i in range(9)[s])
    assert covered == list(range(9))  # every channel exactly once
    assert [channels.TARGET_SLICES[m] for m in channels.MATERIAL_NAMES] == [slice(6, 7), slice(7, 8), slice(8, 9)]
    assert dict(system.GROUPS) == channels.GROUP_SLICES and metrics.NORMAL == channels.NORMAL
    pred = torch.zeros(2, 9, 4, 4)
    pred[:, 3:6] = 1.0  # albedo white, the rest mid-grey: the grid's middle row is white
    g = grid.prediction_grid(pred)
    assert (g[4:8] == 255).all() and (g[:4] == 127).all() and (g[8:] == 127).all()
