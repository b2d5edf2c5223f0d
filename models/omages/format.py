"""The omage format: a square image with 12 channels laid out on a UV atlas (Yan et al. 2024, Sec. 3.1).

File space (what is stored) is [0, 1] in every channel; model space (what a diffusion model sees) is file * 2 - 1.

    0-2  position   (p + 1) / 2, p in [-1, 1]^3 (mesh normalised to largest extent 1.9999)
    3    occupancy  1 inside a chart (plus a 1-px ring), else 0
    4-6  normal     (n + 1) / 2, object-space unit normal
    7-9  albedo     linear base colour
    10   metallic
    11   roughness

Unoccupied pixels are 0 in all channels in file space, i.e. -1 in model space. Per-shape files are `.npz` with one
uint16 array `arr_0` (H, W, 12) = round(value * 65535); sets are one packed (N, 64, 64, 12) uint16 `.npy` plus a JSON
list of per-shape records.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.core.cli import UserError
from models.core.io import write_npy, write_npz, write_text

N_CHANNELS = 12
POS = slice(0, 3)
OCC = 3
NRM = slice(4, 7)
ALB = slice(7, 10)
MET = 10
RGH = 11
GEOMETRY = slice(0, 4)       # xyz + occupancy: what a geometry generator models
MATERIAL = slice(7, 12)      # albedo, metallic, roughness: what a material generator models
CHANNEL_NAMES = ("x", "y", "z", "occupancy", "nx", "ny", "nz", "r", "g", "b", "metallic", "roughness")
UINT16_MAX = 65535


class OmageError(UserError, ValueError):
    """An array or file that is not a valid omage (one-line message naming it)."""


def to_model(file_space: np.ndarray) -> np.ndarray:
    """[0, 1] file values -> [-1, 1] model values."""
    return np.asarray(file_space, dtype=np.float32) * 2.0 - 1.0


def to_file(model_space: np.ndarray) -> np.ndarray:
    """[-1, 1] model values -> [0, 1] file values (no clipping: validate or `clean` afterwards)."""
    return (np.asarray(model_space, dtype=np.float32) + 1.0) * 0.5


def occupancy(omage: np.ndarray) -> np.ndarray:
    """Boolean (H, W) chart mask of a file-space omage."""
    return np.asarray(omage)[..., OCC] >= 0.5


def clean(omage: np.ndarray) -> np.ndarray:
    """Binarise occupancy and zero every channel outside it (what every loader does before use)."""
    out = np.array(omage, dtype=np.float32, copy=True)
    occ = out[..., OCC] >= 0.5
    out[~occ] = 0.0
    out[occ, OCC] = 1.0
    return out


def validate(omage: np.ndarray, where: str = "omage", square: bool = True) -> np.ndarray:
    """Check shape (H, W, 12), finiteness and the [0, 1] range; return float32. OmageError otherwise."""
    a = np.asarray(omage)
    if a.ndim != 3 or a.shape[-1] != N_CHANNELS:
        raise OmageError(f"{where}: expected an (H, W, {N_CHANNELS}) omage, got shape {tuple(a.shape)}")
    if a.shape[0] < 2 or a.shape[1] < 2 or (square and a.shape[0] != a.shape[1]):
        raise OmageError(f"{where}: expected a square image of at least 2x2 pixels, got {a.shape[0]}x{a.shape[1]}")
    if a.dtype == np.uint16:
        return a.astype(np.float32) / UINT16_MAX
    if not np.issubdtype(a.dtype, np.floating):
        raise OmageError(f"{where}: expected uint16 or float values, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise OmageError(f"{where}: {int((~np.isfinite(a)).sum())} values are NaN or Inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        raise OmageError(f"{where}: file-space values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return a.astype(np.float32)


def quantize(omage: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (round to nearest, so the round-trip error is <= 0.5 / 65535)."""
    return np.round(np.clip(np.asarray(omage, dtype=np.float64), 0.0, 1.0) * UINT16_MAX).astype(np.uint16)


def save_omage(path: str | Path, omage: np.ndarray) -> Path:
    """Write one omage as `.npz` with uint16 `arr_0` (atomically)."""
    return write_npz(path, arr_0=quantize(validate(omage, str(path))))


def load_omage(path: str | Path) -> np.ndarray:
    """Read `.npz` (`arr_0`) or `.npy`, uint16 or float, into a validated float32 file-space (H, W, 12) array."""
    path = Path(path)
    if not path.is_file():
        raise OmageError(f"omage not found: {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "arr_0" not in z.files:
                    raise OmageError(f"{path}: no 'arr_0' array (found {', '.join(z.files) or 'none'})")
                arr = z["arr_0"]
        elif path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            raise OmageError(f"{path}: expected an omage .npz or .npy file")
    except OmageError:
        raise
    except Exception as err:  # truncated zip, pickled object arrays, garbage bytes
        raise OmageError(f"{path}: not a readable omage file ({type(err).__name__}: {err})") from None
    return validate(arr, str(path))


def save_packed(array_path: str | Path, omages: np.ndarray, records: list[dict]) -> tuple[Path, Path]:
    """Write a set: (N, R, R, 12) uint16 `.npy` and `<stem>.json` with one record per row (id, class, ...)."""
    omages = np.asarray(omages)
    if omages.dtype != np.uint16 or omages.ndim != 4 or omages.shape[-1] != N_CHANNELS:
        raise ValueError(f"packed omages must be uint16 (N, R, R, 12), got {omages.dtype} {omages.shape}")
    if len(records) != omages.shape[0]:
        raise ValueError(f"{len(records)} records for {omages.shape[0]} omages")
    array_path = Path(array_path)
    meta_path = array_path.with_suffix(".json")
    write_npy(array_path, omages)
    write_text(meta_path, json.dumps({"format": "omages/1", "channels": list(CHANNEL_NAMES),
                                      "resolution": int(omages.shape[1]), "records": records}, indent=1) + "\n")
    return array_path, meta_path


def load_packed(array_path: str | Path, mmap: bool = True) -> tuple[np.ndarray, list[dict]]:
    """(uint16 (N, R, R, 12) array, records) of a packed set; OmageError for a broken or mismatched pair."""
    array_path = Path(array_path)
    meta_path = array_path.with_suffix(".json")
    for p in (array_path, meta_path):
        if not p.is_file():
            raise OmageError(f"packed omage set incomplete, missing: {p}")
    try:
        arr = np.load(array_path, mmap_mode="r" if mmap else None, allow_pickle=False)
        meta = json.loads(meta_path.read_text())
        records = meta["records"]
    except Exception as err:
        raise OmageError(f"{array_path}: not a readable packed omage set ({type(err).__name__}: {err})") from None
    if arr.dtype != np.uint16 or arr.ndim != 4 or arr.shape[-1] != N_CHANNELS or arr.shape[1] != arr.shape[2]:
        raise OmageError(f"{array_path}: expected uint16 (N, R, R, {N_CHANNELS}), got {arr.dtype} {arr.shape}")
    if len(records) != arr.shape[0]:
        raise OmageError(f"{meta_path}: {len(records)} records for {arr.shape[0]} omages")
    return arr, records
