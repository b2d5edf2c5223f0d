"""Shared image I/O: bit depths survive a round trip; writes are atomic."""
import os

import numpy as np
import pytest

from data.io import atomic_write, read_image, write_npy, write_png


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
