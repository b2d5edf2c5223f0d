"""Image and array I/O shared by every system: PNG (8/16-bit), .npy, EXR; atomic writes."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".npy", ".exr", ".tif", ".tiff")


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
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; shared datasets must stay readable
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_image(path: str | Path) -> np.ndarray:
    """Read an image or array as float32: PNG/JPEG scaled to [0, 1] by their bit depth, .npy and .exr as stored.

    Returns HxW or HxWxC (channels last) for images; .npy arrays are returned with their own shape.
    """
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    ext = path.suffix.lower()
    if ext == ".npy":
        arr = np.load(path, allow_pickle=False)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
        return arr.astype(np.float32)
    if ext == ".exr":
        try:
            arr = iio.imread(path)
        except Exception as err:  # imageio needs an EXR-capable plugin (e.g. imageio[freeimage] or opencv)
            raise ValueError(f"{path}: cannot read EXR here ({err}); convert to .npy or 16-bit PNG") from None
        return np.asarray(arr, dtype=np.float32)
    arr = _read_png_cv2(path) if ext == ".png" else None
    if arr is None:
        try:
            arr = iio.imread(path)
        except Exception as err:
            raise ValueError(f"{path}: not a readable image ({err})") from None
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):  # e.g. 32-bit greyscale PNG modes
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    raise ValueError(f"{path}: unsupported pixel type {arr.dtype}")


def _read_png_cv2(path: Path):
    """PNG through OpenCV when installed: unlike Pillow it keeps 16-bit colour. Returns RGB(A) or None."""
    try:
        import cv2
    except ImportError:
        return None
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"{path}: not a readable PNG")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return arr


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
