"""Weight-free features for Structure from Duplicates: SIFT (Lowe 2004) on the eroded instance region and mutual
nearest-neighbour matching with Lowe's ratio test, over all instance pairs.

SIFT is rotation invariant, which is why the in-plane rotation sweep that SfD needs for SuperPoint/SuperGlue (Sec. 3.2)
is not needed here. Descriptors are RootSIFT (Arandjelovic & Zisserman 2012: L1-normalise, square root), which
compares better under Euclidean distance. Keypoints are returned in COLMAP full-image coordinates (pixel centres at
+0.5), since all instances share one camera and SfM must see where each keypoint lies in the real photo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.core.optional import require
from models.sfd.crops import Crop


@dataclass
class Features:
    xy: np.ndarray           # K x 2 float64, COLMAP full-image coordinates
    descriptors: np.ndarray  # K x 128 float32 RootSIFT
    crop_xy: np.ndarray      # K x 2 OpenCV crop coordinates (for drawing)


def _cv2():
    return require("cv2", feature="SIFT features", extra="sfd")


def detect(crop: Crop, *, erode_px: int = 3, max_features: int = 4000, contrast: float = 0.02) -> Features:
    """SIFT inside the instance mask eroded by `erode_px` (keypoints on the silhouette describe the background)."""
    cv2 = _cv2()
    grey = cv2.cvtColor(crop.image, cv2.COLOR_RGB2GRAY)
    mask = crop.mask.astype(np.uint8) * 255
    if erode_px > 0:
        mask = cv2.erode(mask, np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8))
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=contrast)
    kps, desc = sift.detectAndCompute(grey, mask)
    if desc is None or len(kps) == 0:
        empty = np.zeros((0, 2))
        return Features(empty, np.zeros((0, 128), np.float32), empty)
    crop_xy = np.array([k.pt for k in kps], np.float64)
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(1, keepdims=True), 1e-12)
    desc = np.sqrt(desc)
    xy = crop_xy + np.array([crop.x0, crop.y0]) + 0.5  # OpenCV pixel centres are integers, COLMAP's are at +0.5
    return Features(xy, desc, crop_xy)


def _nn2(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row of a: index of the nearest row of b and the ratio d1/d2 of the two smallest distances."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    d2 = np.maximum(d2, 0)
    order = np.argpartition(d2, 1, axis=1)[:, :2]
    first = np.take_along_axis(d2, order, 1)
    swap = first[:, 0] > first[:, 1]
    order[swap] = order[swap][:, ::-1]
    first[swap] = first[swap][:, ::-1]
    ratio = np.sqrt(first[:, 0]) / np.maximum(np.sqrt(first[:, 1]), 1e-12)
    return order[:, 0], ratio


def match_pair(da: np.ndarray, db: np.ndarray, ratio: float = 0.8) -> np.ndarray:
    """Mutual nearest neighbours that pass the ratio test in both directions. Returns M x 2 index pairs."""
    if len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), np.int64)
    ab, rab = _nn2(da, db)
    ba, rba = _nn2(db, da)
    idx = np.arange(len(da))
    ok = (ba[ab] == idx) & (rab < ratio) & (rba[ab] < ratio)
    return np.stack([idx[ok], ab[ok]], 1).astype(np.int64)


def match_all(feats: list[Features], *, ratio: float = 0.8, min_matches: int = 15, progress=None) -> dict:
    """Matches of every unordered pair (i < j) with at least `min_matches`; `progress` is called once per pair."""
    out = {}
    for i in range(len(feats)):
        for j in range(i + 1, len(feats)):
            m = match_pair(feats[i].descriptors, feats[j].descriptors, ratio)
            if len(m) >= min_matches:
                out[(i, j)] = m
            if progress:
                progress()
    return out
