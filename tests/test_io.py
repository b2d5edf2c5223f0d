"""Shared image I/O: bit depths survive a round trip; writes are atomic; the one input loader's rules."""
import os

import numpy as np
import pytest

from data.io import atomic_write, check_output_path, load_image, read_image, write_npy, write_png
from models.core.cli import UserError


@pytest.mark.parametrize("bits, shape", [(8, (5, 7)), (8, (5, 7, 3)), (16, (5, 7)), (16, (5, 7, 3)), (8, (4, 4, 4))])
def test_png_round_trip(tmp_path, bits, shape):
    arr = np.random.default_rng(0).random(shape).astype(np.float32)
    write_png(tmp_path / "a.png", arr, bits=bits)
    back = read_image(tmp_path / "a.png")
    assert back.shape == shape
    assert np.abs(back - arr).max() <= 0.5 / (255 if bits == 8 else 65535) + 1e-6


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "x.npy"
    write_npy(target, np.ones(3))
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert np.array_equal(np.load(target), np.ones(3))
    assert os.listdir(tmp_path) == ["x.npy"]
    assert (target.stat().st_mode & 0o044) == 0o044  # readable by others (mkstemp would give 0600)


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError):
        read_image(tmp_path / "bad.png")


# ------------------------------------------------------------------------------------ load_image: the input loader


def test_load_image_alpha_over_black_and_8bit(tmp_path):
    import imageio.v3 as iio

    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 255
    rgba[:, :3, 3] = 0  # left half transparent
    rgba[0, 5, 3] = 51  # one pixel 20 % opaque
    iio.imwrite(tmp_path / "a.png", rgba)
    img, info = load_image(tmp_path / "a.png", mode="rgb")
    assert img.shape == (6, 6, 3) and img.dtype == np.float32
    assert (img[:, :3] == 0).all()
    assert np.allclose(img[3, 4], np.array([200, 100, 50]) / 255, atol=1e-6)
    assert np.allclose(img[0, 5], np.array([200, 100, 50]) / 255 * 0.2, atol=1e-6)
    assert info["bits"] == 8 and "alpha composited over black" in info["conversion"] and info["fit"] == "none"
    grey, info = load_image(tmp_path / "a.png", mode="gray")
    assert grey.shape == (6, 6)
    assert grey[3, 4] == pytest.approx((0.2126 * 200 + 0.7152 * 100 + 0.0722 * 50) / 255, abs=1e-6)
    assert info["conversion"] == "alpha composited over black; RGB -> Rec.709 luminance"


def test_load_image_16bit_grey_replicated(tmp_path):
    import imageio.v3 as iio

    g16 = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    iio.imwrite(tmp_path / "g.png", g16)
    img, info = load_image(tmp_path / "g.png", mode="rgb")
    assert info["bits"] == 16 and "grey replicated to RGB" in info["conversion"]
    assert img.shape == (8, 8, 3) and (img[..., 0] == img[..., 2]).all()
    assert np.allclose(img[..., 1], g16 / 65535, atol=1e-7)  # 16 bits kept, not cut to 8
    gray, _ = load_image(tmp_path / "g.png", mode="gray")
    assert np.allclose(gray, g16 / 65535, atol=1e-7)


def test_load_image_npy_rules(tmp_path):
    np.save(tmp_path / "u16.npy", np.full((1, 4, 5), 65535, np.uint16))  # integer arrays: / dtype max; 1xHxW ok
    img, info = load_image(tmp_path / "u16.npy", mode="gray", fit=None)
    assert img.shape == (4, 5) and (img == 1).all() and info["dtype"] == "uint16"
    cases = {"nan": np.full((4, 4), np.nan, np.float32), "range": np.full((4, 4), 2.0),
             "bool": np.ones((4, 4), bool), "shape": np.zeros((4, 4, 5), np.float32)}
    for name, arr in cases.items():
        np.save(tmp_path / f"{name}.npy", arr)
        with pytest.raises(UserError, match=f"{name}.npy"):
            load_image(tmp_path / f"{name}.npy")
    with pytest.raises(UserError, match="at least 16 px"):
        load_image(tmp_path / "u16.npy", min_size=16)
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read"):
        load_image(tmp_path / "bad.png")


def test_load_image_fit_pad_resize_and_size(tmp_path):
    wide = np.random.default_rng(0).random((10, 20)).astype(np.float32) * 0.5 + 0.25
    np.save(tmp_path / "w.npy", wide)
    pad, info = load_image(tmp_path / "w.npy", mode="gray", fit="pad")
    assert pad.shape == (20, 20) and info["offset"] == [5, 0] and info["square_size"] == 20
    assert np.array_equal(pad[5:15], wide) and (pad[:5] == 0).all() and (pad[15:] == 0).all()
    assert info["fit"] == "pad" and info["original_size"] == [10, 20]
    stretched, info = load_image(tmp_path / "w.npy", mode="gray", fit="resize")
    assert stretched.shape == (20, 20) and info["fit"] == "resize" and stretched.min() > 0.2  # no black border
    np.save(tmp_path / "c.npy", np.full((10, 20), 0.5, np.float32))
    assert np.allclose(load_image(tmp_path / "c.npy", mode="gray", fit="resize")[0], 0.5)
    small, info = load_image(tmp_path / "w.npy", mode="rgb", fit="pad", size=10)  # shrink: area = 2x2 block means
    assert small.shape == (10, 10, 3) and info["resample"] == "area" and info["resized_to"] == 10
    assert np.allclose(small[..., 0], pad.reshape(10, 2, 10, 2).mean((1, 3)), atol=1e-6)
    big, info = load_image(tmp_path / "w.npy", mode="rgb", fit="pad", size=40)
    assert big.shape == (40, 40, 3) and info["resample"] == "bilinear" and (big[:8] == 0).all()


def test_check_output_path(tmp_path):
    (tmp_path / "f").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    with pytest.raises(UserError, match="--out .*exists and is not a folder"):
        check_output_path(tmp_path / "f", "--out")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f" / "sub", "--out")
    with pytest.raises(UserError, match="is a folder"):
        check_output_path(tmp_path, "--out", folder=False)


@pytest.mark.mitsuba
def test_exr_read_as_stored(tmp_path):
    """EXR depth and normal maps (the renderers' float outputs) read back exactly, through both readers."""
    import mitsuba as mi

    from models.das.sources import load_depth

    rng = np.random.default_rng(0)
    depth = (1 + 4 * rng.random((6, 9))).astype(np.float32)
    normals = (rng.random((6, 9, 3)) * 2 - 1).astype(np.float32)
    mi.Bitmap(depth).write(str(tmp_path / "d.exr"))
    mi.Bitmap(normals).write(str(tmp_path / "n.exr"))
    np.testing.assert_array_equal(read_image(tmp_path / "d.exr"), depth)
    np.testing.assert_array_equal(read_image(tmp_path / "n.exr"), normals)
    np.testing.assert_array_equal(load_depth(tmp_path / "d.exr"), depth.astype(np.float64))
    (tmp_path / "bad.exr").write_bytes(b"not an exr")
    with pytest.raises(ValueError, match="bad.exr: not a readable EXR"):
        read_image(tmp_path / "bad.exr")
    with pytest.raises(UserError, match="bad.exr"):
        load_depth(tmp_path / "bad.exr")
