"""Image and array I/O shared by every system: reading images (PNG 8/16-bit, JPEG, TIFF, .npy, EXR) as float32.

The writers (atomic_write, write_png, write_npy, write_npz, write_text, to_uint) live in models/core/io.py and are
re-exported here, so `from data.io import write_png` keeps working.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.core.io import atomic_write, to_uint, write_npy, write_npz, write_png, write_text

__all__ = ["read_image", "atomic_write", "to_uint", "write_png", "write_npy", "write_npz", "write_text"]


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
