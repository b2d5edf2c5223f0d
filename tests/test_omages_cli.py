"""The omage CLIs end to end (dataset generation: deterministic and resumable; the viewer) and the bad-input corpus:
one line, exit 2, nothing written."""
import json

import numpy as np
import pytest

from cli_corpus import assert_user_error, run_cli

trimesh = pytest.importorskip("trimesh")


def _bad_inputs(tmp):
    (tmp / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    (tmp / "empty.obj").write_text("v 0 0 0\nv 1 0 0\n")
    (tmp / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n")
    cubes = trimesh.util.concatenate([trimesh.creation.box(extents=[0.3] * 3, transform=trimesh.transformations
                                      .translation_matrix([i, j, k])) for i in range(5) for j in range(5)
                                      for k in range(5)])
    cubes.export(tmp / "cubes.ply")
    np.savez(tmp / "four.npz", arr_0=np.zeros((64, 64, 4), np.uint16))
    np.savez(tmp / "oblong.npz", arr_0=np.zeros((64, 32, 12), np.uint16))
    np.save(tmp / "range.npy", np.full((64, 64, 12), 1.5, np.float32))


FAST = {"four.npz", "range.npy", "broken.glb"}  # one row per kind runs by default; the rest with -m slow
CORPUS = [  # (script, args, the word the one error line must contain)
    ("scripts/omages_view.py", ["{in}/broken.glb"], "broken.glb"),
    ("scripts/omages_view.py", ["{in}/empty.obj"], "empty"),
    ("scripts/omages_view.py", ["{in}/cubes.ply"], "more than the maximum 64"),
    ("scripts/omages_view.py", ["{in}/nan.obj"], "nan"),
    ("scripts/omages_view.py", ["{in}/four.npz"], "(H, W, 12)"),
    ("scripts/omages_view.py", ["{in}/oblong.npz"], "square"),
    ("scripts/omages_view.py", ["{in}/range.npy"], "[0, 1]"),
    ("scripts/omages_view.py", ["{in}/missing.npz"], "not found"),
    ("scripts/omages_dataset.py", ["--families", "chair,teapot"], "teapot"),
    ("scripts/omages_pointnet.py", ["--data", "{in}"], "train_omages64.npy"),
]
ROWS = [pytest.param(*row, id=f"{row[0].split('/')[-1]}:{row[1][-1].split('/')[-1]}",
                     marks=() if row[1][-1].split("/")[-1] in FAST else pytest.mark.slow) for row in CORPUS]


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _bad_inputs(d)
    return d


@pytest.mark.parametrize("script, args, mentions", ROWS)
def test_bad_input(tmp_path, bad_dir, script, args, mentions):
    out = tmp_path / "out"
    args = [a.replace("{in}", str(bad_dir)) for a in args]
    extra = {"scripts/omages_view.py": ["--out", str(out)], "scripts/omages_dataset.py": ["--out", str(out)],
             "scripts/omages_pointnet.py": ["--out", str(out / "x.safetensors")]}[script]
    assert_user_error(script, args + extra, watch=tmp_path, mentions=mentions)


@pytest.mark.slow
def test_dataset_cli_is_deterministic_and_resumable(tmp_path):
    args = ["--families", "vase,mug", "--train-per-class", "1", "--test-per-class", "1", "--workers", "1"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("scripts/omages_dataset.py", "--out", a, *args).returncode == 0
    packed = np.load(a / "train_omages64.npy")
    recs = json.loads((a / "train_omages64.json").read_text())["records"]
    assert packed.shape == (2, 64, 64, 12) and packed.dtype == np.uint16
    assert [r["class"] for r in recs] == ["vase", "mug"] and all(r["success"] for r in recs)
    assert (a / "COMPLETE.json").is_file() and (a / "test_omages64.npy").is_file()
    # interrupted run: one shape missing -> a rerun regenerates exactly it, byte-identical
    (b / "shapes").mkdir(parents=True)
    assert run_cli("scripts/omages_dataset.py", "--out", b, *args).returncode == 0
    victim = b / "shapes" / "train_mug_00000.json"
    victim.unlink()
    keep = (b / "shapes" / "train_vase_00000.json").stat().st_mtime_ns
    assert run_cli("scripts/omages_dataset.py", "--out", b, *args).returncode == 0
    assert victim.is_file() and (b / "shapes" / "train_vase_00000.json").stat().st_mtime_ns == keep
    assert np.array_equal(np.load(b / "train_omages64.npy"), packed)
    bad = run_cli("scripts/omages_dataset.py", "--out", b, *args[:-2], "--seed", "3")
    assert bad.returncode == 2 and "other settings" in bad.stderr


@pytest.mark.slow
def test_view_cli_writes_pictures_and_exports(tmp_path):
    out = tmp_path / "v"
    res = run_cli("scripts/omages_view.py", "test_data/omages/vase_0.npz", "--out", out, "--glb", "--points", "500")
    assert res.returncode == 0, res.stderr[-2000:]
    from data.io import read_image

    sheet = read_image(out / "vase_0_sheet.png")
    assert sheet.ndim == 3 and sheet.shape[0] > 200 and sheet.std() > 0.05
    assert (out / "vase_0.glb").read_bytes()[:4] == b"glTF" and (out / "vase_0_points.ply").is_file()
    assert (out / "COMPLETE.json").is_file()
