"""Writing files so that no reader ever sees half of one: atomic_write, and PNG (8/16-bit), .npy, .npz, text on top.

Reading images lives in data/io.py, which re-exports these writers; the core never imports `data`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the previous version in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files and some writers (safetensors) recreate the file: shared results must stay readable
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def to_uint(arr: np.ndarray, bits: int = 8) -> np.ndarray:
    """[0, 1] floats -> uint8/uint16 with rounding and clipping."""
    if bits not in (8, 16):
        raise ValueError("bits must be 8 or 16")
    top = 255 if bits == 8 else 65535
    out = np.clip(np.nan_to_num(np.asarray(arr, dtype=np.float64)), 0.0, 1.0) * top
    return np.round(out).astype(np.uint8 if bits == 8 else np.uint16)


def write_png(path: str | Path, arr: np.ndarray, bits: int = 8) -> Path:
    """Write a [0, 1] float (HxW or HxWx3/4) or integer image as PNG, atomically."""
    import imageio.v3 as iio

    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        arr = to_uint(arr, bits)
    with atomic_write(path) as tmp:
        if arr.dtype == np.uint16 and arr.ndim == 3:  # Pillow cannot write 16-bit colour; OpenCV can
            from models.core.optional import require

            cv2 = require("cv2", feature="16-bit colour PNG", extra="analysis")
            code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
            ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code))
            if not ok:
                raise ValueError(f"{path}: could not encode PNG")
            Path(tmp).write_bytes(buf.tobytes())
        else:
            iio.imwrite(tmp, arr, extension=".png")
    return Path(path)


def write_npy(path: str | Path, arr: np.ndarray) -> Path:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(arr), allow_pickle=False)
    return Path(path)


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)
