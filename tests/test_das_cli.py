"""scripts/das_tracking.py: --help, one run per task, and the bad-input corpus (one line, exit 2, nothing written).

Every corpus row runs in-process (fast); a few also run as a real subprocess through tests/cli_corpus.py, and the
rest of the subprocess runs are marked slow.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_corpus import ROOT, assert_user_error, run_cli, snapshot

SCRIPT = "scripts/das_tracking.py"
D = ROOT / "test_data" / "das"
SMALL = ["--size", "24x36", "--frames", "5", "--format", "npz"]


def _cli():
    spec = importlib.util.spec_from_file_location("das_tracking", ROOT / SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Bad input files, made once."""
    import imageio.v3 as iio

    d = tmp_path_factory.mktemp("bad")
    good = np.load(D / "depth.npy").astype(np.float64)
    for name, value in [("nan", np.nan), ("inf", np.inf), ("zero", 0.0), ("negative", -1.0)]:
        arr = good.copy()
        arr[5:7, 9] = value
        np.save(d / f"depth_{name}.npy", arr)
    iio.imwrite(d / "mask_small.png", np.full((20, 30), 255, np.uint8))
    iio.imwrite(d / "mask_empty.png", np.zeros((48, 72), np.uint8))
    (d / "broken.obj").write_text("this is not a mesh\nf 1 2 x\n")
    (d / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\n")
    np.savez(d / "tracks_rank2.npz", tracks=np.zeros((9, 10)))
    np.savez(d / "tracks_rank4.npz", tracks=np.zeros((9, 10, 3, 1)))
    np.savez(d / "tracks_vis.npz", tracks=np.ones((9, 10, 3)), visibility=np.ones((9, 11), bool))
    np.savez(d / "tracks_2d.npz", tracks=np.ones((9, 10, 2)))
    (d / "scene_bad.json").write_text(json.dumps({"objects": [{"kind": "torus"}]}))
    (d / "a_file").write_text("x")
    return d


IMG, DEP, MASK = str(D / "image.png"), str(D / "depth.npy"), str(D / "mask.png")


def _rows(b: Path):
    cam = ["camera", IMG]
    obj = ["object", IMG, DEP]
    return [
        ("depth_nan", cam + [b / "depth_nan.npy"], "NaN"),
        ("depth_inf", cam + [b / "depth_inf.npy"], "NaN or Inf"),
        ("depth_zero", cam + [b / "depth_zero.npy"], "zero or negative"),
        ("depth_negative", cam + [b / "depth_negative.npy"], "zero or negative"),
        ("depth_missing", cam + [b / "nope.npy"], "not found"),
        ("mask_other_size", obj + [b / "mask_small.png", "--object-motion", "up"], "20x30"),
        ("mask_empty", obj + [b / "mask_empty.png", "--object-motion", "up"], "empty"),
        ("template_unknown_kind", cam + [DEP, "--camera-motion", "zoom 2"], "unknown kind"),
        ("template_arg_count", cam + [DEP, "--camera-motion", "trans 1 0"], "takes 3 or 5 arguments"),
        ("template_start_eq_end", cam + [DEP, "--camera-motion", "rot y 10 4 4"], "start == end"),
        ("template_in_composition", cam + [DEP, "--camera-motion", "rot y 5; spiral"], "takes 1 or 3"),
        ("mesh_garbage_obj", ["mesh", b / "broken.obj"], "broken.obj"),
        ("mesh_truncated_ply", ["mesh", b / "broken.ply"], "broken.ply"),
        ("tracks_rank2", ["transfer", b / "tracks_rank2.npz"], "[T, N, 3]"),
        ("tracks_rank4", ["transfer", b / "tracks_rank4.npz"], "[T, N, 3]"),
        ("tracks_visibility_shape", ["transfer", b / "tracks_vis.npz"], "visibility"),
        ("tracks_2d_without_depth", ["transfer", b / "tracks_2d.npz"], "depth"),
        ("scene_unknown_kind", ["procedural", "--scene", b / "scene_bad.json"], "torus"),
        ("odd_size_mp4", cam + [DEP, "--size", "25x36", "--format", "mp4"], "even"),
        ("out_is_a_file", cam + [DEP, "--out", b / "a_file"], "--out"),
        ("bad_size_flag", cam + [DEP, "--size", "480by720"], "--size"),
        ("bad_K", cam + [DEP, "--K", "-5", "5", "10", "10"], "focal"),
    ]


def _args(row, out):
    args = [str(a) for a in row[1]]
    if "--out" not in args:
        args += ["--out", str(out)]
    if "--size" not in args:
        args += SMALL if args[0] != "transfer" else ["--size", "24x36", "--format", "npz"]
    return args


ROW_IDS = [r[0] for r in _rows(Path("."))]
SUBPROCESS = {"depth_nan", "template_start_eq_end"}  # the others: -m slow


@pytest.mark.parametrize("row_id", ROW_IDS)
def test_bad_input_in_process(row_id, bad, tmp_path, capsys):
    from models.core.cli import cli_main

    row = next(r for r in _rows(bad) if r[0] == row_id)
    before = snapshot(tmp_path), snapshot(bad)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(_cli().main, _args(row, tmp_path / "out"))
    assert exit_info.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln.lower()]
    assert len(err) == 1 and row[2].lower() in err[0].lower(), err
    assert (snapshot(tmp_path), snapshot(bad)) == before


@pytest.mark.parametrize("row_id", [pytest.param(r, marks=[] if r in SUBPROCESS else [pytest.mark.slow])
                                    for r in ROW_IDS])
def test_bad_input_subprocess(row_id, bad, tmp_path):
    row = next(r for r in _rows(bad) if r[0] == row_id)
    assert_user_error(SCRIPT, _args(row, tmp_path / "out"), watch=tmp_path, mentions=row[2])


def test_help_lists_every_task(capsys):
    with pytest.raises(SystemExit) as e:
        _cli().main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for task in ("transfer", "camera", "object", "mesh", "procedural", "trans dx dy dz"):
        assert task in out


@pytest.mark.slow
def test_help_as_a_subprocess():
    res = run_cli(SCRIPT, "--help")
    assert res.returncode == 0 and "procedural" in res.stdout


def test_subcommand_help(capsys):
    with pytest.raises(SystemExit) as e:
        _cli().main(["object", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--object-motion" in out and "--units" in out and "--footprint" in out


def test_camera_task_writes_video_sidecar_preview(tmp_path):
    out = tmp_path / "cam"
    _cli().main(["camera", IMG, DEP, "--size", "24x36", "--frames", "5", "--format", "mp4", "npz",
                 "--camera-motion", "spiral 2", "--out", str(out)])
    names = {p.name for p in out.iterdir()}
    assert {"tracking.mp4", "tracking.npz", "tracking.json", "tracking_preview.png", "first_frame.png",
            "COMPLETE.json"} <= names
    side = json.loads((out / "tracking.json").read_text())
    assert side["height"] == 24 and side["width"] == 36 and side["source"]["fit"]["crop_offset"] == [0, 0]
    with pytest.raises(Exception):  # a second run into the same folder is refused
        _cli().main(["camera", IMG, DEP, *SMALL, "--out", str(out)])


def test_mesh_task_with_rigid_transforms(tmp_path):
    """Identity transforms: every frame equals the first; the sidecar records the mesh source."""
    np.savez(tmp_path / "m.npz", transforms=np.tile(np.eye(4), (4, 1, 1)))
    out = tmp_path / "mesh"
    _cli().main(["mesh", str(D / "icosphere.obj"), "--transforms", str(tmp_path / "m.npz"), "--size", "24x36",
                 "--format", "npz", "--out", str(out)])
    with np.load(out / "tracking.npz") as f:
        video = f["video"]
    assert video.shape == (4, 24, 36, 3) and (video == video[:1]).all() and video[0].max() > 0
    assert video[0, 0, 0].tolist() == [0, 0, 0]  # corner: background
    assert json.loads((out / "tracking.json").read_text())["source"]["kind"] == "mesh"
