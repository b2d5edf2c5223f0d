"""The two test-scene renderers: same layout, same ids; Mitsuba conventions (camera, AOV ids, env-map frame);
the generator CLI writes the documented folder deterministically."""
import json

import numpy as np
import pytest

from models.sfd import poses as P, scene_layout as L


def test_mesh_is_watertight_and_matches_the_sdf():
    trimesh = pytest.importorskip("trimesh")
    import torch

    from models.sfd.scene_analytic import object_sdf

    v, uv, f = L.mesh_arrays()
    mesh = trimesh.Trimesh(v, f, process=True)
    assert mesh.is_watertight and abs(mesh.volume - 0.288) < 1e-9  # 0.72 (L profile area) * 0.4 (depth)
    pts, normals = L.surface_samples(2000, np.random.default_rng(0))
    d = object_sdf(torch.as_tensor(pts)).numpy()
    assert np.abs(d).max() < 1e-9
    outside = object_sdf(torch.as_tensor(pts + 1e-3 * normals)).numpy()
    assert (outside > 0).all()  # normals point outwards
    assert ((0 <= uv) & (uv <= 1)).all()


def test_layout_is_deterministic_and_non_overlapping():
    a, b = L.make_layout(10, 256, 7), L.make_layout(10, 256, 7)
    np.testing.assert_array_equal(a.object_to_world, b.object_to_world)
    c = a.object_to_world[:, :3, 3]
    gaps = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(10) * 99
    assert gaps.min() >= 2 * L.bounding_radius()  # bounding spheres never intersect
    for p in a.object_to_world:
        np.testing.assert_allclose(p[:3, :3].T @ p[:3, :3], np.eye(3), atol=1e-12)
    uv = P.project(a.c2w_gl, a.focal, c, 256, 256)
    assert ((uv > 0) & (uv < 256)).all()


def test_make_scene_cli_analytic(tmp_path):
    from models.core.cli import UserError
    from scripts.sfd_make_scene import main

    out = tmp_path / "s"
    assert main(["--out", str(out), "--renderer", "analytic", "--n", "3", "--res", "48", "--ss", "1",
                 "--seed", "4"]) == 0
    for name in ("raw/000_rgb.png", "raw/000_instance_seg.png", "gt/camera.json", "gt/object_poses.json",
                 "gt/object.obj", "gt/normal.png", "gt/albedo.png", "gt/depth.npy", "gt/envmap.npy", "scene.json"):
        assert (out / name).is_file(), name
    from models.sfd.segmentation import load_instances

    assert load_instances(out / "raw/000_instance_seg.png", expect_n=3).n == 3
    poses = json.loads((out / "gt/object_poses.json").read_text())["instances"]
    np.testing.assert_allclose(poses[1]["object_to_world"], L.make_layout(3, 48, 4).object_to_world[1])
    with pytest.raises(UserError, match="exists"):
        main(["--out", str(out), "--n", "3"])


@pytest.fixture(scope="module")
def mitsuba_pair():
    pytest.importorskip("mitsuba")
    from models.sfd import scene_analytic, scene_mitsuba

    layout = L.make_layout(4, 96, 3)
    layout.light = L.default_light(3)
    return layout, scene_mitsuba.render(layout, spp=16, atlas_size=128), scene_analytic.render(
        layout, atlas_size=128, supersample=1)


@pytest.mark.mitsuba
def test_mitsuba_ids_camera_and_analytic_agree(mitsuba_pair):
    layout, mi_out, an_out = mitsuba_pair
    assert set(np.unique(mi_out["ids"])) == set(range(5))  # optimize=False keeps the copies apart, 0 = background
    agree = (mi_out["ids"] == an_out["ids"]).mean()
    assert agree > 0.98, agree  # same camera convention, same poses, same mesh/SDF
    hit = (mi_out["ids"] > 0) & (an_out["ids"] > 0)
    rel = np.abs(mi_out["depth"][hit] / an_out["depth"][hit] - 1)
    assert np.median(rel) < 5e-3, np.median(rel)  # both Euclidean; Mitsuba's 1 spp sample is jittered in the pixel


@pytest.mark.mitsuba
def test_mitsuba_envmap_frame_matches_sg_light(mitsuba_pair):
    layout, mi_out, _ = mitsuba_pair
    _, d = P.pixel_rays(layout.c2w_gl, layout.focal, P.pixel_centres(96, 96), 96, 96)
    ref = L.eval_light(layout.light, d)
    bg = mi_out["ids"] == 0
    rel = np.abs(mi_out["rgb"][bg] - ref[bg]) / ref[bg]
    assert np.median(rel) < 0.02, np.median(rel)
