"""Instance segmentation <-> instance-id map.

The input label image of Structure from Duplicates stores background as 0 and instance k (k = 1..N) as the grey value
floor(k * 255 / N) in one uint8 channel; a decoder reads N = (#distinct values) - 1 and k = round(v / 255 * N). The
encoding is unambiguous up to N = 127. We also accept a plain integer label image (uint8 with values exactly 0..N,
or a 16-bit PNG / .npy with any non-negative integer ids), mapped in increasing order to 1..N.

Everything downstream works on the `InstanceMap`: label k -> the original value, so dropping an instance later (SfM
could not register it) is a relabelling, never a silent change of N.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.core.cli import UserError

MAX_ENCODED = 127  # above this, k/N*255 steps collide


def encode_value(k, n: int):
    """Grey value of label k among n instances: floor(k * 255 / n) (integer arithmetic, the original truncates)."""
    return (np.asarray(k, np.int64) * 255) // n


def encode_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """HxW integer labels 0..n -> uint8 k/N*255 image."""
    labels = np.asarray(labels)
    if n < 1 or n > MAX_ENCODED:
        raise ValueError(f"k/N*255 encoding supports 1..{MAX_ENCODED} instances, got {n}")
    if labels.min() < 0 or labels.max() > n:
        raise ValueError(f"labels must lie in 0..{n}")
    return encode_value(labels, n).astype(np.uint8)


@dataclass
class InstanceMap:
    """labels: HxW int32 with 0 = background and 1..N; source_values[k-1] = the value of label k in the input file."""
    labels: np.ndarray
    source_values: list[int]
    encoding: str  # "k/N*255" or "integer"

    @property
    def n(self) -> int:
        return len(self.source_values)

    def pixel_counts(self) -> np.ndarray:
        return np.bincount(self.labels.ravel(), minlength=self.n + 1)[1:]

    def keep(self, keep_labels: list[int]) -> "InstanceMap":
        """Keep only `keep_labels` (1-based), renumbered 1..len in that order; all others become background."""
        lut = np.zeros(self.n + 1, np.int32)
        for new, old in enumerate(keep_labels, start=1):
            lut[old] = new
        return InstanceMap(lut[self.labels], [self.source_values[k - 1] for k in keep_labels], self.encoding)


def decode_labels(values: np.ndarray, *, what: str = "segmentation") -> InstanceMap:
    """Decode a single-channel label image. UserError when it is neither k/N*255 steps nor integer labels."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise UserError(f"{what}: expected a single-channel label image, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise UserError(f"{what}: labels must be integers, got non-integer values")
        values = values.astype(np.int64)
    if values.min() < 0:
        raise UserError(f"{what}: negative labels")
    distinct = np.unique(values)
    if distinct[0] != 0:
        raise UserError(f"{what}: no background (value 0) pixels")
    fg = distinct[1:]
    if len(fg) == 0:
        raise UserError(f"{what}: no instance pixels (only background)")
    n = len(fg)
    if values.dtype == np.uint8 and fg[-1] == 255 and n <= MAX_ENCODED:
        expected = encode_value(np.arange(1, n + 1), n)
        decoded = np.rint(fg / 255.0 * n).astype(np.int64)
        if np.array_equal(decoded, np.arange(1, n + 1)) and np.all(np.abs(fg - expected) <= 1):
            lut = np.zeros(256, np.int32)
            lut[fg] = decoded
            return InstanceMap(lut[values], [int(v) for v in fg], "k/N*255")
    if np.array_equal(fg, np.arange(1, n + 1)) and (values.dtype != np.uint8 or fg[-1] < 255):
        return InstanceMap(values.astype(np.int32), [int(v) for v in fg], "integer")
    if values.dtype != np.uint8:  # 16-bit / npy: arbitrary ids, mapped in increasing order
        ranks = np.searchsorted(distinct, values).astype(np.int32)
        return InstanceMap(ranks, [int(v) for v in fg], "integer")
    shown = ", ".join(str(int(v)) for v in fg[:8]) + (" ..." if n > 8 else "")
    raise UserError(f"{what}: labels are not k/N*255 steps for N = {n} (values {shown}; expected "
                    f"{', '.join(str(int(v)) for v in encode_value(np.arange(1, min(n, 8) + 1), n))}"
                    f"{' ...' if n > 8 else ''}) nor consecutive integers 0..N")


def read_label_image(path: str | Path) -> np.ndarray:
    """Raw label values of a PNG (8/16-bit, grey or identical RGB channels) or an integer .npy."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"segmentation {path}: not a readable .npy ({err})") from None
    else:
        import cv2

        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise UserError(f"segmentation {path}: not a readable image")
        if arr.ndim == 3:
            if arr.shape[2] == 4:
                arr = arr[..., :3]
            if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[2])):
                raise UserError(f"segmentation {path}: colour label image; expected one channel of label values")
            arr = arr[..., 0]
    return arr


def load_instances(path: str | Path, *, expect_n: int | None = None, min_n: int = 2) -> InstanceMap:
    """Read and decode a label image, check N against the caller's value and the minimum SfM needs."""
    inst = decode_labels(read_label_image(path), what=f"segmentation {path}")
    if expect_n is not None and inst.n != expect_n:
        raise UserError(f"segmentation {path}: holds {inst.n} instances but --instances {expect_n} was given "
                        f"(an instance without pixels changes N)")
    if inst.n < min_n:
        raise UserError(f"segmentation {path}: only {inst.n} instance(s); Structure from Duplicates needs at least "
                        f"{min_n} copies of the object")
    return inst


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize (HxW or HxWxC) to size x size that samples each target pixel centre:
    src = floor((dst + 0.5) * H / size)."""
    h, w = labels.shape[:2]
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return labels[rows][:, cols]
