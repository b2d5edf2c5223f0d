"""Structure from Duplicates pose recovery on Mitsuba renders (slow: about 1-2 min of rendering on 2 CPU cores).

P2: 2048^2, N = 8, SIFT, no weights: 8/8 registered, relative rotation median <= 1 deg, max <= 2 deg, focal within
3 %, translation after Sim(3) <= 0.02. P3: the same with the focal fixed. P4: 1024^2 with small blurry instances must
stop with "insufficient matches/registration" and write nothing. A3 for the Mitsuba camera convention.
"""
import json

import numpy as np
import pytest

from tests.cli_corpus import assert_user_error, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.mitsuba]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    pytest.importorskip("mitsuba")
    root = tmp_path_factory.mktemp("sfd_scenes")
    for name, args in (("p2", ["--n", "8", "--res", "2048", "--spp", "32", "--seed", "0"]),
                       ("p4", ["--n", "8", "--res", "1024", "--spp", "16", "--seed", "0", "--atlas-size", "96",
                               "--fill", "0.6"])):
        res = run_cli("scripts/sfd_make_scene.py", "--renderer", "mitsuba", "--out", root / name, *args, timeout=1800)
        assert res.returncode == 0, res.stderr[-2000:]
    return root


@pytest.mark.parametrize("fixed", [False, True], ids=["P2", "P3"])
def test_p2_p3_mitsuba_sift(scenes, tmp_path, fixed):
    args = ["--scene", scenes / "p2", "--out", tmp_path / "out", "--no-progress"] + (["--fix-focal"] if fixed else [])
    res = run_cli("scripts/sfd_preprocess.py", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    ev = json.loads((tmp_path / "out/pose_eval.json").read_text())
    assert ev["registered"] == 8
    assert ev["rel_rot_median_deg"] <= 1.0, ev
    if not fixed:
        assert ev["rel_rot_max_deg"] <= 2.0 and abs(ev["focal_rel_error"]) <= 0.03 and ev["dt_max"] <= 0.02, ev


def test_p4_small_blurry_stops(scenes, tmp_path):
    out = tmp_path / "out"
    assert_user_error("scripts/sfd_preprocess.py", ["--scene", scenes / "p4", "--out", out],
                      watch=tmp_path, mentions="insufficient matches/registration")
    assert not out.exists()


def test_a3_mitsuba_gt_projects_into_masks(scenes):
    from models.sfd.scene_files import read_gt
    from models.sfd.segmentation import load_instances
    from models.sfd import poses as P, scene_layout as L
    from tests.test_sfd_geometry import visible_surface_points

    gt = read_gt(scenes / "p2")
    labels = load_instances(scenes / "p2/raw/000_instance_seg.png").labels
    layout = L.SceneLayout(n=8, width=gt["width"], height=gt["height"], object_to_world=gt["object_to_world"],
                           c2w_gl=gt["c2w"], focal=gt["focal"], seed=0)
    inside = total = 0
    for k, (world, seen) in enumerate(visible_surface_points(layout), start=1):
        col, row = np.floor(P.project(gt["c2w"], gt["focal"], world[seen], gt["width"], gt["height"])).astype(int).T
        inside += int((labels[row, col] == k).sum())
        total += int(seen.sum())
    assert inside / total >= 0.98, inside / total
