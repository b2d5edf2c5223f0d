"""DaS tracking videos: projection (R1), camera templates (R7), motion-induced flow (R8), object motion (R9)."""
import math

import numpy as np
import pytest
import torch

from models.core.cli import UserError
from models.das import colors as C
from models.das.camera import intrinsics, intrinsics_from_fov, invert_pose, pixel_grid, project, transform, unproject
from models.das.sources import camera_control, object_manipulation
from models.das.splat import splat_frame
from models.das.templates import camera_motion, object_motion, spiral_poses

F, CX, CY = 691.5, 360.0, 240.0


def test_default_intrinsics_are_55_degrees():
    K = intrinsics_from_fov(720, 480)
    assert K[0, 0].item() == pytest.approx(360 / math.tan(math.radians(27.5)))
    assert K[0, 0].item() == pytest.approx(691.5, abs=0.1)
    assert (K[0, 2].item(), K[1, 2].item()) == (360.0, 240.0)


def test_unproject_project_round_trip():
    K = intrinsics_from_fov(72, 48)
    uv = pixel_grid(48, 72).reshape(-1, 2)
    z = torch.rand(uv.shape[0], dtype=torch.float64) * 9 + 1
    uv2, z2 = project(unproject(uv, z, K), K)
    assert torch.allclose(uv2, uv, atol=1e-9) and torch.equal(z2, z)
    assert torch.equal(torch.floor(uv2), torch.floor(uv))  # pixel centres stay in their pixel


def test_R1_projection_lands_on_the_floor_pixel():
    """10^4 random points (z in [1, 10]), 1 x 1 splats at 480 x 720: every unoccluded point is drawn exactly at
    (floor(u), floor(v)) of the pinhole projection, in its own colour."""
    g = np.random.default_rng(1)
    n = 10_000
    Z = g.uniform(1, 10, n)
    X = (g.uniform(-50, 770, n) - CX) * Z / F  # some points fall outside the image on purpose
    Y = (g.uniform(-50, 530, n) - CY) * Z / F
    u, v = F * X / Z + CX, F * Y / Z + CY  # the test's own pinhole maths
    pts = torch.from_numpy(np.stack([X, Y, Z], 1))
    uv, z = project(pts, intrinsics(F, F, CX, CY))
    levels = torch.from_numpy(g.integers(1, 256, (n, 3), dtype=np.uint8))
    img, winner, _ = splat_frame(uv, z, levels, 480, 720, "1")
    col, row = np.floor(u).astype(int), np.floor(v).astype(int)
    inside = (col >= 0) & (col < 720) & (row >= 0) & (row < 480)
    # unoccluded = nearest among the points that fall on the same pixel (ties: lowest index)
    key = np.where(inside, row * 720 + col, -1 - np.arange(n))  # outside points never share a key
    order = np.lexsort((np.arange(n), Z, key))
    first = np.ones(n, bool)
    first[1:] = key[order][1:] != key[order][:-1]
    unocc = np.zeros(n, bool)
    unocc[order[first]] = True
    unocc &= inside
    ids = np.nonzero(unocc)[0]
    assert len(ids) > 6500
    hit = winner.numpy()[row[ids], col[ids]] == ids
    assert hit.mean() == 1.0  # 0 px error, 100 %
    assert (img.numpy()[row[ids], col[ids]] == levels.numpy()[ids]).all()
    assert int((winner >= 0).sum()) == len(ids)  # nothing else was drawn


# ------------------------------------------------------------------------------------------------- R7 templates
@pytest.mark.parametrize("text", ["trans 0.3 -0.2 0.5", "rot x 20", "rot y -15", "rot z 30", "spiral 2",
                                  "trans 0.1 0 0; rot y 10; spiral 1"])
@pytest.mark.parametrize("spiral", ["orbit", "compat"])
def test_R7_identity_at_frame_0(text, spiral):
    M = camera_motion(text, 49, spiral)
    assert M.shape == (49, 4, 4)
    assert torch.allclose(M[0], torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_R7_translation_ramp():
    M = camera_motion("trans 0.3 -0.2 0.5", 49)
    f = torch.arange(49, dtype=torch.float64)
    want = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64) * (f / 48)[:, None]
    assert (M[:, :3, 3] - want).abs().max() < 1e-6
    assert torch.equal(M[:, :3, :3], torch.eye(3, dtype=torch.float64).expand(49, 3, 3))


@pytest.mark.parametrize("axis,i,j", [("x", 1, 2), ("y", 2, 0), ("z", 0, 1)])
def test_R7_rotation_final_angle(axis, i, j):
    M = camera_motion(f"ROT {axis.upper()} 25", 49)  # case-insensitive
    angle = math.atan2(M[-1, j, i].item(), M[-1, i, i].item())
    assert abs(angle - math.radians(25)) < 1e-5
    mid = math.atan2(M[24, j, i].item(), M[24, i, i].item())
    assert abs(mid - math.radians(12.5)) < 1e-5


def test_R7_signs_match_the_documented_camera_motion():
    p = torch.tensor([[0.0, 0.0, 4.0]], dtype=torch.float64)
    K = intrinsics(F, F, CX, CY)
    u0 = project(p, K)[0][0]
    for text, axis, sign in [("trans 0.2 0 0", 0, 1), ("trans 0 0.2 0", 1, 1), ("rot y 5", 0, 1), ("rot x 5", 1, -1)]:
        uv = project(transform(camera_motion(text, 49)[-1], p), K)[0][0]
        assert sign * (uv[axis] - u0[axis]) > 1, text  # +x right, +y down, rot y right, rot x up
    assert transform(camera_motion("trans 0 0 0.5", 49)[-1], p)[0, 2] > 4  # +z: points move away


def test_R7_composition_is_the_per_frame_product():
    a, b = "rot y 10 5 30", "trans 0.2 0 0.1"
    Ma, Mb, Mab = camera_motion(a, 49), camera_motion(b, 49), camera_motion(f"{a}; {b}", 49)
    assert torch.allclose(Mab, Ma @ Mb, atol=1e-12)
    assert not torch.allclose(Mab, Mb @ Ma, atol=1e-6)  # order matters


def test_R7_start_end_hold_clamp_and_swap():
    M = camera_motion("trans 1 0 0 10 20", 49)
    x = M[:, 0, 3]
    assert torch.equal(x[:11], torch.zeros(11, dtype=torch.float64))
    assert abs(x[15].item() - 0.5) < 1e-12
    assert torch.equal(x[20:], torch.ones(29, dtype=torch.float64))
    assert torch.equal(camera_motion("trans 1 0 0 20 10", 49), M)  # swapped
    assert torch.equal(camera_motion("trans 1 0 0 -5 100", 49), camera_motion("trans 1 0 0", 49))  # clamped


def test_R7_any_length():
    M = camera_motion("trans 1 0 0", 9)
    assert torch.allclose(M[:, 0, 3], torch.linspace(0, 1, 9, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("mode", ["orbit", "compat"])
def test_R7_spiral(mode):
    R = 2.0
    M = camera_motion(f"spiral {R}", 49, mode)
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(M[0], eye, atol=1e-12) and torch.allclose(M[48], eye, atol=1e-12)
    pose = M[24] if mode == "compat" else invert_pose(M[24])  # camera centre of the orbit = the spiral position
    r = 0.1 * R
    want = torch.tensor([r * math.sin(math.pi), 0.3 * r * math.cos(math.pi), -0.5 * r], dtype=torch.float64)
    assert (pose[:3, 3] - want).abs().max() < 1e-9
    r_k = -2 * spiral_poses(R, 49, "compat")[:, 2, 3]  # camera z = -0.5 r_k
    assert int(torch.argmax(r_k)) == 24 and abs(r_k.max().item() - 0.1 * R) < 1e-12
    rot = M[:, :3, :3]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(49, 3, 3), atol=1e-9)


def test_R7_orbit_looks_at_the_target():
    """The default spiral is a real orbit: the target (0, 0, 0.5 R) stays on the optical axis in every frame."""
    R = 4.0
    M = camera_motion(f"spiral {R}", 49, "orbit")
    target = torch.tensor([[0.0, 0.0, 0.5 * R]], dtype=torch.float64)
    cam = transform(M, target.expand(49, 1, 3))[:, 0]
    assert cam[:, :2].abs().max() < 1e-9 and (cam[:, 2] > 0).all()
    compat = transform(camera_motion(f"spiral {R}", 49, "compat"), target.expand(49, 1, 3))[:, 0]
    assert compat[:, :2].abs().max() > 1e-3  # the original's matrix does not keep it centred


@pytest.mark.parametrize("text,msg", [("zoom 1", "unknown kind"), ("trans 1 2", "takes 3 or 5"),
                                      ("rot y", "takes 2 or 4"), ("spiral", "takes 1 or 3"),
                                      ("rot y 10 5 5", "start == end"), ("trans 1 0 0 7 7", "start == end"),
                                      ("rot w 10", "axis"), ("trans a 0 0", "number"), ("trans 1 0 0;", "empty"),
                                      ("rot y nan", "finite"), ("trans 1 0 0 2.5 9", "whole")])
def test_R7_malformed_templates_are_clear_errors(text, msg):
    with pytest.raises(UserError, match=msg):
        camera_motion(text, 49)


# ----------------------------------------------------------------------------------------------------- R8 flow
def test_R8_motion_induced_flow():
    """Fronto-parallel plane at depth Z, `trans dx 0 0`: every drawn point moved by f dx / Z px at frame 48."""
    H, W, Z, dx = 96, 144, 4.0, 0.25
    K = intrinsics_from_fov(W, H)
    f = K[0, 0].item()
    tr = camera_control(torch.full((H, W), Z, dtype=torch.float64), K, f"trans {dx} 0 0", 49)
    uv, z = project(tr.points[48], K)
    shift = f * dx / Z
    assert (uv[:, 0] - tr.uv0[:, 0] - shift).abs().max() < 1e-9
    levels = C.to_levels(C.encode(tr.uv0, 1 / z, C.fit_normalization(1 / z, W, H)))
    img, winner, _ = splat_frame(uv, z, levels, H, W, "1")
    rows, cols = torch.nonzero(winner >= 0, as_tuple=True)
    src = winner[rows, cols]
    measured = (cols.double() + 0.5) - tr.uv0[src, 0]
    err = (measured - shift).abs().max().item()
    assert err <= 0.5 + 1e-9  # the integer truncation only
    decoded = C.decode(img[rows, cols], C.fit_normalization(1 / z, W, H))
    assert ((cols.double() + 0.5 - decoded[:, 0]) - shift).abs().max() <= 0.5 + W / 510 + 1e-9


# ------------------------------------------------------------------------------------------------ R9 object motion
def _blob_scene(H=48, W=72):
    depth = torch.full((H, W), 6.0, dtype=torch.float64)
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[12:30, 20:44] = True
    depth[mask] = 3.0 + torch.rand(int(mask.sum()), dtype=torch.float64)
    return depth, mask, intrinsics_from_fov(W, H)


@pytest.mark.parametrize("kind,axis,sign", [("up", 1, -1), ("down", 1, 1), ("left", 0, -1), ("right", 0, 1),
                                            ("front", 2, 1), ("back", 2, -1)])
def test_R9_translation_templates(kind, axis, sign):
    depth, mask, K = _blob_scene()
    d = 0.3
    tr = object_manipulation(depth, K, mask, kind, 49, distance=d, units="scene")
    inside = mask.reshape(-1)
    p0 = tr.points[0]
    assert torch.equal(tr.points[:, ~inside], p0[~inside].expand(49, -1, -1))  # untouched, bitwise
    step = torch.zeros(3, dtype=torch.float64)
    step[axis] = sign * d
    for f in (0, 12, 48):
        assert (tr.points[f, inside] - p0[inside] - step * f / 48).abs().max() < 1e-9


def test_R9_pixel_units_move_the_centroid_by_that_many_pixels():
    depth, mask, K = _blob_scene()
    tr = object_manipulation(depth, K, mask, "up", 49, distance=50, units="pixels")
    c0 = tr.points[0, mask.reshape(-1)].mean(0)
    c48 = tr.points[48, mask.reshape(-1)].mean(0)
    (uv0, _), (uv48, _) = project(c0[None], K), project(c48[None], K)
    assert abs((uv0[0, 1] - uv48[0, 1]).item() - 50) < 1e-6 and abs((uv0[0, 0] - uv48[0, 0]).item()) < 1e-9


def test_R9_rotation_pivot_is_the_centroid():
    depth, mask, K = _blob_scene()
    tr = object_manipulation(depth, K, mask, "rot", 49, distance=50)
    inside = mask.reshape(-1)
    c = tr.points[0, inside].mean(0)
    O = object_motion("rot", c, 49, 50)
    assert (transform(O, c[None].expand(49, 1, 3))[:, 0] - c).abs().max() < 1e-5  # the pivot stays put
    dist0 = (tr.points[0, inside] - c).norm(dim=1)
    for f in (24, 48):
        assert torch.allclose((tr.points[f, inside] - c).norm(dim=1), dist0, atol=1e-9)  # rigid
        assert (tr.points[f, inside].mean(0) - c).abs().max() < 1e-9
    R = O[48, :3, :3]
    assert abs(math.degrees(math.atan2(R[0, 2].item(), R[0, 0].item())) - 50) < 1e-6
    assert torch.equal(tr.points[:, ~inside], tr.points[0, ~inside].expand(49, -1, -1))


def test_R9_compat_mode_reproduces_the_shifted_pivot():
    """The original divided the whole translation column by W and H, so the rotation pivot drifts (its issue #15)."""
    c = torch.tensor([0.5, -0.2, 3.0], dtype=torch.float64)
    O = object_motion("rot", c, 49, 50, mode="compat", size=(480, 720))
    assert (transform(O[48], c[None])[0] - c).norm() > 0.1
    up = object_motion("up", c, 49, 50, mode="compat", size=(480, 720))
    assert abs(up[48, 1, 3].item() + 50 / 480) < 1e-12  # 50 "pixels" / H in point-cloud units


def test_object_motion_errors():
    depth, mask, K = _blob_scene()
    with pytest.raises(UserError, match="empty"):
        object_manipulation(depth, K, torch.zeros_like(mask), "up", 49)
    with pytest.raises(UserError, match="expected one of"):
        object_motion("spin", torch.zeros(3), 49)


def test_2d_tracks_are_lifted_by_the_depth_at_their_pixel(tmp_path):
    from models.das.sources import load_tracks

    T, H, W = 3, 12, 16
    depth = np.arange(T * H * W, dtype=np.float64).reshape(T, H, W) / 10 + 1
    tr2 = np.array([[[3.7, 2.2], [15.9, 11.5], [20.0, 5.0]]] * T)
    np.savez(tmp_path / "t.npz", tracks=tr2, depth=depth)
    K = intrinsics_from_fov(W, H)
    tracks = load_tracks(tmp_path / "t.npz", H, W, K)
    uv, z = project(tracks.points, K)
    assert torch.allclose(uv, torch.from_numpy(tr2), atol=1e-9)
    assert torch.allclose(z[:, 0], torch.from_numpy(depth[:, 2, 3])) and torch.allclose(z[:, 1],
                                                                                      torch.from_numpy(depth[:, 11, 15]))
    assert tracks.visibility[:, :2].all() and not tracks.visibility[:, 2].any()  # off-image: not drawn


def test_resize_and_crop_keep_the_geometry():
    """An aspect-preserving resize + centre crop, with K following it, projects scene points to the same place."""
    from models.das.sources import apply_plan, fit_plan, plan_intrinsics

    plan = fit_plan((60, 60), (48, 72))
    assert plan["resized"] == [72, 72] and plan["crop_offset"] == [12, 0]
    K = intrinsics_from_fov(60, 60)
    K2 = plan_intrinsics(K, plan)
    p = torch.tensor([[0.3, -0.2, 3.0]], dtype=torch.float64)
    (uv, _), (uv2, _) = project(p, K), project(p, K2)
    assert torch.allclose(uv2, uv * 1.2 - torch.tensor([0.0, 12.0], dtype=torch.float64), atol=1e-9)
    img = np.arange(3600, dtype=np.float64).reshape(60, 60)
    out = apply_plan(img, plan, "nearest")
    assert out.shape == (48, 72) and out[0, 0] == img[10, 0]  # output row 0 = resized row 12 = source row 10
