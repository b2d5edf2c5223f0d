"""Image and array I/O shared by every system: reading images (PNG 8/16-bit, JPEG, TIFF, .npy, EXR) as float32.

`read_image` reads a file as stored (scaled by its bit depth). `load_image` is the one loader the entry scripts use
for model inputs: it applies the alpha / greyscale / bit-depth / square-fit rules below and reports what it did, so
every run records its own input handling.

The writers (atomic_write, write_png, write_npy, write_npz, write_text, to_uint) live in models/core/io.py and are
re-exported here, so `from data.io import write_png` keeps working.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.core.color import REC709, luminance as _luminance
from models.core.io import atomic_write, to_uint, write_npy, write_npz, write_png, write_text

__all__ = ["read_image", "read_exr", "load_image", "fit_square", "resize_square", "check_output_path", "REC709", "atomic_write",
           "to_uint", "write_png", "write_npy", "write_npz", "write_text"]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image or array as float32: PNG/JPEG scaled to [0, 1] by their bit depth, .npy and .exr as stored.

    Returns HxW or HxWxC (channels last) for images; .npy arrays are returned with their own shape.
    """
    return _scale(_read_raw(Path(path)), Path(path)).astype(np.float32)


def _read_raw(path: Path) -> np.ndarray:
    """The stored array (uint8/uint16/float/...), unscaled."""
    import imageio.v3 as iio

    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    ext = path.suffix.lower()
    if ext == ".npy":
        arr = np.load(path, allow_pickle=False)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
        return arr
    if ext == ".exr":
        return read_exr(path)
    arr = _read_png_cv2(path) if ext == ".png" else None
    if arr is None:
        try:
            arr = iio.imread(path)
        except Exception as err:
            raise ValueError(f"{path}: not a readable image ({err})") from None
    return np.asarray(arr)


def read_exr(path: str | Path) -> np.ndarray:
    """An OpenEXR file as float32 (HxW or HxWxC, values as stored), read with Mitsuba's bitmap reader: the pip wheels
    of imageio and OpenCV carry no EXR codec, Mitsuba (the `render` extra) does."""
    from models.core.optional import require

    try:
        mi = require("mitsuba", "reading EXR files")
    except ImportError as err:
        raise ValueError(f"{path}: cannot read EXR here ({err}); convert to .npy or 16-bit PNG") from None
    try:
        arr = np.array(mi.Bitmap(str(path)), dtype=np.float32)
    except Exception as err:
        raise ValueError(f"{path}: not a readable EXR file ({str(err).strip().splitlines()[0][:160]})") from None
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def _scale(arr: np.ndarray, path: Path) -> np.ndarray:
    """Images: integers scaled to [0, 1] by their bit depth (float32, as stored before); .npy stays as stored."""
    if path.suffix.lower() == ".npy":
        return arr
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


# ---------------------------------------------------------------------------------------------- the input loader
def load_image(path: str | Path, *, mode: str = "rgb", fit: str | None = "pad", size: int | None = None,
               min_size: int = 1) -> tuple[np.ndarray, dict]:
    """Read a model input and return (float32 array in [0, 1], info); every bad file is one UserError line.

    Rules, in order:
      values    integers (images by their bit depth, integer .npy by their dtype's maximum) are scaled to [0, 1];
                float data must be finite and lie in [0, 1] (1e-3 tolerance, then clipped).
      channels  HxW, HxWx{1,2,3,4} or 1xHxW. Alpha (2 or 4 channels) is composited over black (colour times alpha).
                mode "rgb": greyscale is replicated to 3 channels -> HxWx3.
                mode "gray": colour becomes Rec. 709 luminance 0.2126 R + 0.7152 G + 0.0722 B of the stored values
                (no linearization) -> HxW.
      square    fit "pad": centre-padded with black to max(H, W); "resize": stretched (bilinear) to max(H, W);
                None: left as is.
      size      when given (and fit is not None), the square is resized to size x size: area averaging when shrinking,
                bilinear when enlarging.
    `info` holds source, dtype, bits, original_size, conversion (text), conversions (list), fit, square_size, offset,
    note and, with `size`, resized_to / resample, so the calling script can record what was done.
    """
    from models.core.cli import UserError

    if mode not in ("rgb", "gray"):
        raise ValueError(f"mode must be 'rgb' or 'gray', got {mode!r}")
    if fit not in ("pad", "resize", None):
        raise ValueError(f"fit must be 'pad', 'resize' or None, got {fit!r}")
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if not path.is_file():
        raise UserError(f"input is not a file: {path}")
    try:
        raw = _read_raw(path)
        arr = _scale(raw, path)
    except Exception as err:  # unreadable file, pickled object array, unknown pixel type
        raise UserError(f"{path}: cannot read ({str(err).strip().splitlines()[0][:200]})") from None
    info: dict = {"source": str(path), "dtype": str(raw.dtype),
                  "bits": int(raw.dtype.itemsize * 8) if np.issubdtype(raw.dtype, np.integer) else None}
    arr = _to_unit_range(arr, path)
    conv: list[str] = []
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"{path}: expected an image (H, W), (H, W, 1-4 channels) or (1, H, W), got shape {raw.shape}")
    if arr.shape[2] in (2, 4):  # colour premultiplied by alpha = compositing over black
        arr = arr[..., :-1] * arr[..., -1:]
        conv.append("alpha composited over black")
    if mode == "gray":
        if arr.shape[2] == 3:
            arr = _luminance(arr)
            conv.append("RGB -> Rec.709 luminance")
        else:
            arr = arr[..., 0]
            conv.append("grey")
    else:
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
            conv.append("grey replicated to RGB")
        else:
            conv.append("RGB")
    arr = np.clip(arr, 0.0, 1.0).astype(np.float32)
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise UserError(f"{path}: image is {h}x{w}; at least {min_size} px per side needed")
    if info["bits"]:
        conv.insert(0, f"{info['bits']}-bit integers scaled to [0, 1]")
    info.update(conversions=conv, conversion="; ".join(c for c in conv if not c.endswith("to [0, 1]")))
    if fit is None:
        info.update(original_size=[h, w], fit="none", square_size=None, offset=[0, 0])
        return arr, info
    arr, rec = fit_square(arr, fit)
    info.update(rec)
    if size is not None and arr.shape[0] != size:
        info.update(resized_to=size, resample="area" if arr.shape[0] > size else "bilinear")
        arr = resize_square(arr, size)
    return arr, info


def _to_unit_range(arr: np.ndarray, path: Path) -> np.ndarray:
    """Integer arrays / dtype max; floats checked finite and in [0, 1]. float64 (the later maths runs in it)."""
    from models.core.cli import UserError

    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UserError(f"{path}: unsupported array dtype {arr.dtype} (need float in [0, 1] or integer)")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise UserError(f"{path}: empty array {arr.shape}")
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: contains NaN or infinite values")
    if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise UserError(f"{path}: float values must lie in [0, 1] (got {arr.min():.4g}..{arr.max():.4g}); rescale it")
    return np.clip(arr, 0.0, 1.0)


def fit_square(arr: np.ndarray, fit: str) -> tuple[np.ndarray, dict]:
    """HxW or HxWxC -> square: "pad" centre-pads with zeros (black), "resize" stretches bilinearly to max(H, W).

    Returns (array, record) with original_size, fit ("none" when already square), square_size, offset [top, left]
    and a note; apply it to a mask of the same size to keep the two aligned.
    """
    h, w = arr.shape[:2]
    side = max(h, w)
    rec = {"original_size": [h, w], "fit": "none" if h == w else fit, "square_size": side, "offset": [0, 0]}
    if h == w:
        return arr, rec
    if fit == "resize":
        import torch

        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[0]
        rec["note"] = f"stretched {h}x{w} -> {side}x{side} (anisotropic)"
        return (x[0] if arr.ndim == 2 else x.permute(1, 2, 0)).numpy(), rec
    if fit != "pad":
        raise ValueError(f"fit must be 'pad' or 'resize', got {fit!r}")
    top, left = (side - h) // 2, (side - w) // 2
    canvas = np.zeros((side, side) + arr.shape[2:], np.float32)
    canvas[top:top + h, left:left + w] = arr
    rec.update(offset=[top, left], note=f"centre-padded {h}x{w} -> {side}x{side} with black")
    return canvas, rec


def resize_square(arr: np.ndarray, size: int) -> np.ndarray:
    """Square HxW(xC) -> size x size: area averaging when shrinking, bilinear when enlarging; clamped to [0, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    mode = {"mode": "area"} if arr.shape[0] > size else {"mode": "bilinear", "align_corners": False}
    x = F.interpolate(x, size=(size, size), **mode)[0].clamp(0, 1)
    return (x[0] if arr.ndim == 2 else x.permute(1, 2, 0)).numpy()


# ------------------------------------------------------------------------------------------------ output paths
def check_output_path(path: str | Path, flag: str, *, folder: bool = True) -> Path:
    """UserError unless `path` can be written as a folder (or, folder=False, a file): checked before any work.

    The path itself must not be a file (a folder), or a folder (a file); its nearest existing ancestor must be a
    writable folder (a file on the way, e.g. out.png/sub, would otherwise fail with a traceback at the end).
    """
    from models.core.cli import UserError

    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name")
    for anc in ([path] if folder and path.is_dir() else []) + list(path.parents):
        if anc.exists():
            if not anc.is_dir():
                raise UserError(f"{flag} {path}: {anc} is a file, not a folder")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise UserError(f"{flag} {path}: {anc} is not writable")
            break
    return path
