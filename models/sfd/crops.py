"""Per-instance crops of the high-resolution photo (stage 0 of SfD preprocessing): everything outside the instance's
mask is zeroed and a square window of one common size is cut around the instance's bounding-box centre. The window is
a pure shift of the full image (no resampling), so crop pixel (x, y) is full-image pixel (x + x0, y + y0) exactly."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.core.cli import UserError


@dataclass
class Crop:
    label: int           # 1-based instance label
    x0: int              # full-image column of the crop's left edge (may be negative: black padding)
    y0: int
    image: np.ndarray    # size x size x 3 uint8, zero outside the mask
    mask: np.ndarray     # size x size bool
    bbox: tuple[int, int, int, int]  # (x_min, y_min, x_max, y_max) inclusive, full-image pixels

    @property
    def centre(self) -> tuple[float, float]:
        """Bounding-box centre (row, column) in full-image pixels."""
        x_min, y_min, x_max, y_max = self.bbox
        return (0.5 * (y_min + y_max), 0.5 * (x_min + x_max))


def bboxes(labels: np.ndarray, n: int) -> list[tuple[int, int, int, int]]:
    out = []
    for k in range(1, n + 1):
        ys, xs = np.nonzero(labels == k)
        if len(xs) == 0:
            raise UserError(f"segmentation: instance {k} has no pixels")
        out.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    return out


def auto_crop_size(boxes, fill: float = 0.75, multiple: int = 64) -> int:
    """The crop-size rule of the SfD authors: the largest bounding box fills `fill` of the crop, rounded up to 64."""
    side = max(max(x1 - x0 + 1, y1 - y0 + 1) for x0, y0, x1, y1 in boxes)
    return int(math.ceil(side / fill / multiple) * multiple)


def crop_instances(rgb: np.ndarray, labels: np.ndarray, n: int, crop_size: int | None = None) -> tuple[list[Crop], int]:
    """Masked square crops of every instance; UserError when a given `crop_size` is smaller than an instance."""
    boxes = bboxes(labels, n)
    size = crop_size or auto_crop_size(boxes)
    h, w = labels.shape
    crops = []
    for k, (x_min, y_min, x_max, y_max) in enumerate(boxes, start=1):
        if max(x_max - x_min + 1, y_max - y_min + 1) > size:
            raise UserError(f"--crop-size {size}: instance {k} spans {x_max - x_min + 1}x{y_max - y_min + 1} px and "
                            f"does not fit (use a larger crop or leave it automatic)")
        x0 = (x_min + x_max + 1) // 2 - size // 2
        y0 = (y_min + y_max + 1) // 2 - size // 2
        img = np.zeros((size, size, 3), np.uint8)
        msk = np.zeros((size, size), bool)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, w), min(y0 + size, h)
        m = labels[sy0:sy1, sx0:sx1] == k
        msk[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = m
        img[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = np.where(m[..., None], rgb[sy0:sy1, sx0:sx1], 0)
        crops.append(Crop(label=k, x0=x0, y0=y0, image=img, mask=msk, bbox=(x_min, y_min, x_max, y_max)))
    return crops, size
