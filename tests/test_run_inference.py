"""run_inference.py: input handling, grid layout, outputs of a tiny exported checkpoint, one-line errors (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import run_inference as ri
from models.core.cli import UserError, cli_main
from models.diffmotion.grid import prediction_grid, write_grid

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "diffmotion" / "tiny.json"


def test_grid_layout_768():
    """Row r / column f of the 3x3 grid holds group r (normal, albedo, material) of frame f (spec §6.4)."""
    pred = np.zeros((3, 9, 256, 256), np.float32)
    for f in range(3):
        for c in range(9):
            pred[f, c] = -1.0 + 0.1 * f + 0.02 * c  # unique value per (frame, channel)
    grid = prediction_grid(pred)
    assert grid.shape == (768, 768, 3) and grid.dtype == np.uint8
    for r in range(3):
        for f in range(3):
            block = grid[256 * r:256 * (r + 1), 256 * f:256 * (f + 1)]
            expect = ((pred[f, 3 * r:3 * r + 3, 0, 0] + 1) / 2 * 255).astype(np.uint8)
            assert (block == expect).all(), (r, f)
    # materials row: R = metallic (ch 6), G = specular (ch 7), B = roughness (ch 8); values clip to [0, 255]
    pred[1, 6], pred[1, 7], pred[1, 8] = 1.0, -1.0, 3.0
    grid = prediction_grid(torch.from_numpy(pred))
    assert tuple(grid[600, 300]) == (255, 0, 255)


def test_write_grid_png(tmp_path):
    path = write_grid(tmp_path / "g.png", torch.zeros(3, 9, 32, 32))
    img = iio.imread(path)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and (img == 127).all()


def test_load_clip_alpha_grey_16bit_and_padding(tmp_path):
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0  # left half transparent -> black
    iio.imwrite(tmp_path / "a.png", rgba)
    grey16 = np.full((10, 20), 65535, np.uint16)
    iio.imwrite(tmp_path / "b.png", grey16)
    clip = ri.load_clip([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "a.png"], 32)
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == np.float32
    assert clip.min() >= -1 and clip.max() <= 1
    # 20x10 is centre-padded to 20x20 (rows 5-14 hold the image, rows 8-23 after the bilinear enlargement to 32);
    # rows 0-5 and 26-31 are pure black padding (-1) even with the bilinear blend at the edge
    assert (clip[:, :, :6] == -1).all() and (clip[:, :, 26:] == -1).all()
    assert np.allclose(clip[1, :, 16, 4], 1.0)  # 16-bit white greyscale, replicated to RGB
    assert np.allclose(clip[0, :, 16, 4], -1.0)  # transparent over black
    assert np.allclose(clip[0, :, 16, 28], [200 / 255 * 2 - 1, -1, -1], atol=1e-6)
    single = ri.load_clip([tmp_path / "b.png"], 32)  # a static scene: the one image three times
    assert (single[0] == single[1]).all() and (single[1] == single[2]).all()


def test_load_clip_errors(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(UserError, match="exactly 3 frames"):
        ri.load_clip([tmp_path / "a.png"] * 2, 32)
    with pytest.raises(UserError, match="differ in size"):
        ri.load_clip([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "a.png"], 32)
    with pytest.raises(UserError, match="missing input file"):
        ri.load_clip([tmp_path / "a.png", tmp_path / "nope.png", tmp_path / "a.png"], 32)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from models import build_system
    from models.core.checkpoint import export_checkpoint
    from models.core.config import load_config, to_dict

    cfg = load_config(TINY)
    torch.manual_seed(0)
    system = build_system(cfg)
    with torch.no_grad():  # non-zero head and residual branches, so samples depend on the input
        for p in system.net.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    export_checkpoint(path, system="diffmotion", config=to_dict(cfg), state_dict=system.net.state_dict(), step=7)
    return path


def _clip_dir(root: Path, name: str, shape=(40, 48, 4)) -> Path:
    d = root / name
    d.mkdir()
    rng = np.random.default_rng(0)
    for f in range(3):
        iio.imwrite(d / f"frame_{f}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    return d


def test_cli_end_to_end(tmp_path, tiny_ckpt):
    clip = _clip_dir(tmp_path, "duck")
    iio.imwrite(tmp_path / "mould.png", np.full((30, 30), 30000, np.uint16))
    other = _clip_dir(tmp_path, "extra", shape=(32, 32, 3))
    cmd = [sys.executable, str(ROOT / "run_inference.py"), str(clip), str(tmp_path / "mould.png"),
           "--clip", *sorted(str(p) for p in other.iterdir()), "--ckpt", str(tiny_ckpt), "--seeds", "0-1",
           "--steps", "2", "--batch", "6", "--device", "cpu", "--out-dir", str(tmp_path / "evals"), "--name", "t"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = (tmp_path / "evals").iterdir()
    assert run_dir.name.endswith("_t") and len(run_dir.name) == len("YYYY-MM-DD_t")
    assert json.loads((run_dir / "COMPLETE.json").read_text())["samples"] == 6  # the marker, written last
    index = json.loads((run_dir / "index.json").read_text())
    handling = index["clips"]["mould_static"]["input_handling"][0]
    assert handling["bits"] == 16 and "grey replicated to RGB" in handling["conversion"]
    assert set(index["clips"]) == {"duck", "mould_static", "frame_0"} and index["seeds"] == [0, 1]
    assert index["steps"] == 2 and index["step"] == 7
    for name in index["clips"]:
        assert iio.imread(run_dir / f"{name}_input.png").shape == (32, 96, 3)
        for seed in (0, 1):
            grid = iio.imread(run_dir / f"{name}_seed{seed}.png")
            raw = np.load(run_dir / f"{name}_seed{seed}.npy")
            assert grid.shape == (96, 96, 3) and grid.dtype == np.uint8
            assert raw.shape == (3, 9, 32, 32) and raw.dtype == np.float16
            diff = grid.astype(int) - prediction_grid(raw.astype(np.float32))  # raw is float16-rounded
            assert np.abs(diff).max() <= 1
    a, b = np.load(run_dir / "duck_seed0.npy"), np.load(run_dir / "duck_seed1.npy")
    assert np.abs(a.astype(np.float32) - b).max() > 1e-3  # seeds give different samples


def _main_err(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(ri.main, argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_second_run_gets_its_own_folder(tmp_path, tiny_ckpt, capsys):
    """Two runs with the same name on the same day never share a folder; each ends with its completion marker."""
    clip = _clip_dir(tmp_path, "c", shape=(32, 32, 3))
    argv = [str(clip), "--ckpt", str(tiny_ckpt), "--seeds", "0", "--steps", "1", "--device", "cpu",
            "--out-dir", str(tmp_path / "evals"), "--name", "same"]
    first, second = ri.run(ri.build_parser().parse_args(argv)), ri.run(ri.build_parser().parse_args(argv))
    assert first != second and second.name == first.name + "-2"
    assert (first / "COMPLETE.json").is_file() and (second / "COMPLETE.json").is_file()


def test_cli_errors_exit_2_with_one_line(tmp_path, tiny_ckpt, capsys):
    from models.core.checkpoint import export_checkpoint

    clip = _clip_dir(tmp_path, "c")
    base = ["--out-dir", str(tmp_path / "evals"), "--device", "cpu", "--steps", "1", "--seeds", "0"]
    assert "checkpoint not found" in _main_err([str(clip), "--ckpt", str(tmp_path / "none.safetensors")] + base,
                                               capsys)
    err = _main_err(["--clip", str(clip / "frame_0.png"), str(clip / "frame_1.png"), "--ckpt", str(tiny_ckpt)] + base,
                    capsys)
    assert "exactly 3 frames" in err
    iio.imwrite(tmp_path / "big.png", np.zeros((64, 64, 3), np.uint8))
    err = _main_err(["--clip", str(clip / "frame_0.png"), str(clip / "frame_1.png"), str(tmp_path / "big.png"),
                     "--ckpt", str(tiny_ckpt)] + base, capsys)
    assert "differ in size" in err
    assert "missing input file" in _main_err(["--clip", "a.png", "b.png", "c.png", "--ckpt", str(tiny_ckpt)] + base,
                                             capsys)
    assert "no such file or folder" in _main_err([str(tmp_path / "nope"), "--ckpt", str(tiny_ckpt)] + base, capsys)
    sfs = export_checkpoint(tmp_path / "sfs.safetensors", system="sfs", config={}, state_dict={"w": torch.zeros(1)})
    assert "multiscale.py" in _main_err([str(clip), "--ckpt", str(sfs)] + base, capsys)
    toy = export_checkpoint(tmp_path / "toy.safetensors", system="toy", config={}, state_dict={"w": torch.zeros(1)})
    assert "'diffmotion' one is needed" in _main_err([str(clip), "--ckpt", str(toy)] + base, capsys)
    assert "bad seed list" in _main_err([str(clip), "--ckpt", str(tiny_ckpt)] + base + ["--seeds", "x"], capsys)
    assert not (tmp_path / "evals").exists()  # nothing written on errors


def test_collect_clips_default_index_and_folders(tmp_path):
    """No inputs -> the clips listed in test_data/diffmotion/clips.json; loose images are static scenes."""
    listed = json.loads((ri.DEFAULT_INPUTS / "clips.json").read_text())
    clips = ri.collect_clips([], None)
    assert [n for n, _ in clips] == [e["name"] for e in listed]
    assert all(len(paths) in (1, 3) and all(p.is_file() for p in paths) for _, paths in clips)
    folder = _clip_dir(tmp_path, "x y")
    (tmp_path / "single.png").write_bytes((folder / "frame_0.png").read_bytes())
    got = ri.collect_clips([str(folder), str(tmp_path / "single.png"), str(folder)], [["a.png", "b.png", "c.png"]])
    assert [n for n, _ in got] == ["x_y", "single_static", "x_y_2", "a"]
    (folder / "extra.png").write_bytes(b"")
    with pytest.raises(UserError, match="exactly 3 image files"):
        ri.collect_clips([str(folder)], None)
