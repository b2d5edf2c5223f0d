"""DaS tracking videos: colour code (R2), temporal constancy (R3), occlusion (R4), background (R5), footprints (R6),
the vectorised splatter against the per-point loop, and the mesh rasteriser against dense splats (R10)."""
import numpy as np
import pytest
import torch

from models.das import colors as C
from models.das.camera import intrinsics_from_fov, project, rotation, transform, translation
from models.das.meshes import render_mesh, vertex_colors
from models.das.procedural import box
from models.das.raster import box_filter, rasterize
from models.das.sources import camera_control
from models.das.splat import FOOTPRINTS, splat_frame, splat_frame_loop
from models.das.tracks import render_tracks


def _depth(H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H, dtype=torch.float64), torch.linspace(0, 1, W, dtype=torch.float64),
                            indexing="ij")
    return 2.0 + 3.0 * yy + torch.sin(6 * xx) + 0.3 * torch.rand(H, W, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("coords", ["continuous", "index"])
def test_R2_colour_encoding_and_decoding(coords):
    H, W = 48, 72
    depth = _depth(H, W)
    K = intrinsics_from_fov(W, H)
    video, meta = render_tracks(camera_control(depth, K, None, 2), footprint="1", coords=coords)
    frame = video[0].numpy().astype(int)
    row, col = np.mgrid[0:H, 0:W]
    inv = 1.0 / depth.numpy()
    p2, p98 = np.percentile(inv, [2, 98])  # the test's own percentiles (linear interpolation)
    u0, v0 = (col + 0.5, row + 0.5)
    if coords == "index":
        col, row = col + 0.0, row + 0.0
    wd, hd = (W, H) if coords == "continuous" else (W - 1, H - 1)
    uu, vv = (u0, v0) if coords == "continuous" else (col, row)
    want = np.stack([np.floor(255 * uu / wd), np.floor(255 * vv / hd),
                     np.floor(255 * np.clip((inv - p2) / (p98 - p2), 0, 1))], -1)
    assert np.abs(frame - want).max() <= 1  # within one level
    norm = C.Normalization.from_json(meta["normalization"])
    assert norm.inv_lo == pytest.approx(p2, rel=1e-9) and norm.inv_hi == pytest.approx(p98, rel=1e-9)
    dec = C.decode(video[0], norm).numpy()
    assert np.abs(dec[..., 0] - u0).max() <= wd / 255 and np.abs(dec[..., 1] - v0).max() <= hd / 255
    inside = (inv >= p2) & (inv <= p98)
    assert np.abs(dec[..., 2] - inv)[inside].max() <= (p98 - p2) / 255


def test_colour_decoding_bounds_are_half_a_level():
    norm = C.Normalization(720, 480, 0.1, 0.5)
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(5000, 2, generator=g, dtype=torch.float64) * torch.tensor([720.0, 480.0], dtype=torch.float64)
    inv = 0.1 + 0.4 * torch.rand(5000, generator=g, dtype=torch.float64)
    dec = C.decode(C.to_levels(C.encode(uv, inv, norm)), norm)
    assert (dec[:, 0] - uv[:, 0]).abs().max() <= 720 / 510 + 1e-9
    assert (dec[:, 1] - uv[:, 1]).abs().max() <= 480 / 510 + 1e-9
    assert (dec[:, 2] - inv).abs().max() <= 0.4 / 510 + 1e-9


def test_degenerate_depth_range_is_not_a_division_by_zero():
    norm = C.fit_normalization(torch.full((10,), 0.25, dtype=torch.float64), 72, 48)
    assert norm.degenerate
    b = C.encode(torch.zeros(10, 2, dtype=torch.float64), torch.full((10,), 0.25, dtype=torch.float64), norm)[:, 2]
    assert torch.equal(b, torch.full((10,), 0.5, dtype=torch.float64))


def test_R3_colours_are_constant_over_time():
    H, W = 32, 48
    depth = _depth(H, W, 1)
    K = intrinsics_from_fov(W, H)
    tr = camera_control(depth, K, "rot y 8; trans 0.2 0.1 -0.3", 49)
    inv0 = C.inverse_depth(tr.points[0])
    levels = C.to_levels(C.encode(tr.uv0, inv0, C.fit_normalization(inv0, W, H)))
    video, _ = render_tracks(tr, footprint="3x3")
    assert torch.equal(render_tracks(tr, footprint="1")[0][0].reshape(-1, 3), levels)  # frame 0, 1 px splats
    uv, z = project(tr.points, K)
    seen = 0
    for t in range(49):
        img, winner, _ = splat_frame(uv[t], z[t], levels, H, W, "3x3")
        assert torch.equal(img, video[t])
        hit = winner >= 0
        assert torch.equal(img[hit], levels[winner[hit]])  # bitwise the frame-0 colour of the drawn point
        seen += int(hit.sum())
    assert seen > 49 * H * W * 0.5


def test_R4_nearer_point_wins_in_every_trial():
    """10^4 trials: two points on the same pixel ray, random depths, order, footprint and sub-pixel position."""
    g = np.random.default_rng(4)
    cells, wins, trials = 10, 0, 0
    H = W = cells * 8
    for batch in range(100):
        fp = list(FOOTPRINTS)[batch % 4]
        n = cells * cells
        cx = (np.arange(n) % cells) * 8 + 4 + g.uniform(0, 1, n)
        cy = (np.arange(n) // cells) * 8 + 4 + g.uniform(0, 1, n)
        z_a = g.uniform(0.5, 10, n)
        z_b = z_a + g.uniform(1e-6, 5, n) * g.choice([-1, 1], n)
        z_b = np.where(z_b <= 0, z_a + 1, z_b)
        col_a = g.integers(1, 256, (n, 3))
        col_b = (col_a + g.integers(1, 255, (n, 3))) % 256
        col_b[col_b == 0] = 1
        a_first = g.random(n) < 0.5  # which of the pair gets the lower index
        uv = np.concatenate([np.stack([cx, cy], 1)] * 2)
        z = np.where(np.concatenate([a_first, ~a_first]), np.concatenate([z_a, z_a]), np.concatenate([z_b, z_b]))
        z = np.concatenate([np.where(a_first, z_a, z_b), np.where(a_first, z_b, z_a)])
        cols = np.concatenate([np.where(a_first[:, None], col_a, col_b), np.where(a_first[:, None], col_b, col_a)])
        img, _, _ = splat_frame(torch.from_numpy(uv), torch.from_numpy(z), torch.from_numpy(cols.astype(np.uint8)),
                                H, W, fp)
        near = np.where((z_a < z_b)[:, None], col_a, col_b)
        got = img.numpy()[np.floor(cy).astype(int), np.floor(cx).astype(int)]
        wins += int((got == near).all(1).sum())
        trials += n
    assert trials == 10_000 and wins == trials


def test_equal_depth_ties_go_to_the_lowest_index_whatever_the_order():
    uv = torch.tensor([[5.5, 5.5], [5.5, 5.5], [5.2, 5.9]], dtype=torch.float64)
    z = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    lv = torch.tensor([[10, 10, 10], [20, 20, 20], [30, 30, 30]], dtype=torch.uint8)
    img, winner, _ = splat_frame(uv, z, lv, 12, 12, "3x3")
    assert int(winner[5, 5]) == 0
    assert img[5, 5].tolist() == [10, 10, 10] and img[6, 4].tolist() == [10, 10, 10]
    perm = torch.tensor([2, 1, 0])
    img2, winner2, _ = splat_frame(uv[perm], z[perm], lv[perm], 12, 12, "3x3")
    assert int(winner2[5, 5]) == 0 and img2[5, 5].tolist() == [30, 30, 30]


def test_R5_background_is_exactly_zero():
    g = np.random.default_rng(5)
    H, W, n = 60, 90, 300
    uv = np.stack([g.uniform(-5, W + 5, n), g.uniform(-5, H + 5, n)], 1)
    z = g.uniform(-1, 6, n)  # some behind the camera: never drawn
    lv = g.integers(1, 256, (n, 3)).astype(np.uint8)
    for fp, (rx, ry) in FOOTPRINTS.items():
        img = splat_frame(torch.from_numpy(uv), torch.from_numpy(z), torch.from_numpy(lv), H, W, fp)[0].numpy()
        cover = np.zeros((H, W), bool)
        for (u, v), d in zip(uv, z):
            if d > 0 and 0 <= u < W and 0 <= v < H:
                x, y = int(u), int(v)
                cover[max(y - ry, 0):y + ry + 1, max(x - rx, 0):x + rx + 1] = True
        assert (img[~cover] == 0).all() and (img[cover] > 0).any(-1).all()


@pytest.mark.parametrize("fp,count,corner", [("1", 1, 1), ("3x3", 9, 4), ("5x5", 25, 9), ("7x5", 35, 12)])
def test_R6_footprint_pixel_counts(fp, count, corner):
    lv = torch.tensor([[255, 128, 64]], dtype=torch.uint8)
    z = torch.tensor([1.0], dtype=torch.float64)
    img = splat_frame(torch.tensor([[20.5, 15.5]], dtype=torch.float64), z, lv, 30, 40, fp)[0]
    assert int((img.sum(-1) > 0).sum()) == count
    rows, cols = torch.nonzero(img.sum(-1) > 0, as_tuple=True)
    assert (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1) == tuple(2 * r + 1 for r in FOOTPRINTS[fp])
    img = splat_frame(torch.tensor([[0.2, 0.7]], dtype=torch.float64), z, lv, 30, 40, fp)[0]  # clipped at the corner
    assert int((img.sum(-1) > 0).sum()) == corner


@pytest.mark.parametrize("fp", list(FOOTPRINTS))
def test_vectorised_splats_equal_the_per_point_loop(fp):
    g = np.random.default_rng(7)
    n, H, W = 3000, 40, 60
    uv = np.stack([g.uniform(-3, W + 3, n), g.uniform(-3, H + 3, n)], 1)
    z = np.round(g.uniform(-0.5, 5, n), 1)  # rounded: many exact depth ties
    uv[::50] = np.nan
    lv = g.integers(0, 256, (n, 3)).astype(np.uint8)
    vis = g.random(n) < 0.9
    fast = splat_frame(torch.from_numpy(uv), torch.from_numpy(z), torch.from_numpy(lv), H, W, fp,
                       torch.from_numpy(vis))[0].numpy()
    slow = splat_frame_loop(uv, z, lv, H, W, fp, vis)
    assert np.array_equal(fast, slow)


def test_visibility_hides_points():
    """Tracks with visibility flags: a hidden point is not drawn (the original's SpaTracker path drew it)."""
    from models.das.tracks import Tracks

    pts = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]]], dtype=torch.float64).expand(3, 2, 3)
    vis = torch.tensor([[True, True], [False, True], [False, False]])
    video, _ = render_tracks(Tracks(pts, intrinsics_from_fov(10, 10), 10, 10, visibility=vis), footprint="1")
    assert video[0, 5, 5].tolist() != video[1, 5, 5].tolist()  # the near point hid the far one until hidden itself
    assert video[1, 5, 5].sum() > 0 and video[2].sum() == 0


# ---------------------------------------------------------------------------------------------- R10 rasteriser
def _cube_surface_points(n):
    """Dense samples on the unit cube's six faces (cell centres of an n x n grid per face)."""
    g = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    A, B = (x.reshape(-1) for x in torch.meshgrid(g, g, indexing="ij"))
    faces = []
    for axis in range(3):
        for sign in (-0.5, 0.5):
            p = torch.empty(A.numel(), 3, dtype=torch.float64)
            o1, o2 = [k for k in range(3) if k != axis]
            p[:, axis], p[:, o1], p[:, o2] = sign, A, B
            faces.append(p)
    return torch.cat(faces)


def test_R10_mesh_rasteriser_agrees_with_dense_splats():
    """A rotating unit cube at 480 x 720: the rasteriser's tracking frames and dense surface-point splats (1 px,
    z-buffer) agree within 2 levels on >= 95 % of the covered interior pixels. At lower resolutions the reference
    itself is biased: the nearest point inside a pixel of a tilted face is brighter in B than the pixel centre."""
    H, W, T = 480, 720, 2
    K = intrinsics_from_fov(W, H)
    verts, faces, _ = box([1.0, 1.0, 1.0], n=16)
    spin = torch.stack([rotation("y", 40.0 * t / (T - 1)) @ rotation("x", 25.0) for t in range(T)])
    cams = translation(0.0, 0.0, 3.0).expand(T, 4, 4)
    world = transform(spin, verts.expand(T, -1, -1))
    video, meta = render_mesh(world, faces, K, H, W, cams, supersample=2, depth="distance")
    _, norm = vertex_colors(transform(cams[0], world[0]), K, H, W, "distance")
    dense = _cube_surface_points(340)  # 0.003 apart: about 0.7 px at this distance
    cam_d = transform(cams[:, None] @ spin[:, None], dense.expand(T, 1, -1, -1))[:, 0]
    uv0, _ = project(cam_d[0], K)
    levels = C.to_levels(C.encode(uv0, C.inverse_depth(cam_d[0], "distance"), norm))
    uv, z = project(cam_d, K)
    fractions = []
    for t in range(T):
        ref = splat_frame(uv[t], z[t], levels, H, W, "1")[0]
        cover = (rasterize(transform(cams[t], world[t]), faces, K, H, W, supersample=2)["face"] >= 0)
        full = cover.reshape(H, 2, W, 2).all(3).all(1)  # every sub-sample on the cube: not an edge pixel
        interior = full.clone()
        interior[1:-1, 1:-1] &= full[:-2, 1:-1] & full[2:, 1:-1] & full[1:-1, :-2] & full[1:-1, 2:]
        interior &= (ref.sum(-1) > 0)
        diff = (video[t].int() - ref.int()).abs().amax(-1)[interior]
        assert interior.sum() > 50_000
        fractions.append((diff <= 2).double().mean().item())
        assert (video[t][~cover.reshape(H, 2, W, 2).any(3).any(1)] == 0).all()  # background exactly black
    assert min(fractions) >= 0.95, fractions


def test_raster_zbuffer_nearer_triangle_wins_in_any_order():
    K = intrinsics_from_fov(40, 30)
    tri = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    near, far = tri + torch.tensor([0.0, 0.0, 3.0]), tri * 2.5 + torch.tensor([0.1, 0.0, 5.0])
    attrs = torch.tensor([[1.0]] * 3 + [[2.0]] * 3, dtype=torch.float64)
    for order in ([0, 1], [1, 0]):
        verts = torch.cat([[near, far][i] for i in order])
        a = attrs if order == [0, 1] else attrs.flip(0)
        out = rasterize(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), K, 30, 40, a)
        assert out["attrs"][15, 20, 0].item() == pytest.approx(1.0)  # the centre: the nearer triangle
        assert ((out["attrs"][..., 0] - 2.0).abs() < 1e-9).any()  # the far one peeks out around it


def test_raster_interpolation_is_perspective_correct():
    """A plane seen at an angle: interpolated camera x equals the exact ray-plane intersection."""
    K = intrinsics_from_fov(64, 48)
    V = torch.tensor([[-2.0, -1.5, 2.0], [2.0, -1.5, 6.0], [2.0, 1.5, 6.0], [-2.0, 1.5, 2.0]], dtype=torch.float64)
    out = rasterize(V, torch.tensor([[0, 1, 2], [0, 2, 3]]), K, 48, 64, V)
    hit = out["face"] >= 0
    p = out["attrs"][hit]
    assert (p[:, 2] - out["depth"][hit]).abs().max() < 1e-9  # attribute z == z-buffer z
    assert (p[:, 2] - (4.0 + p[:, 0])).abs().max() < 1e-9  # on the plane z = 4 + x
    uv, _ = project(p, K)
    rows, cols = torch.nonzero(hit, as_tuple=True)
    assert (uv[:, 0] - (cols + 0.5)).abs().max() < 1e-6  # and on each pixel's own ray
    assert box_filter(torch.ones(4, 6, 1), 2).shape == (2, 3, 1)
