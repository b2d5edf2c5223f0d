"""DiffMotion dataset: 3-frame clips of RGB + 9-channel ground truth, in the layout of the reference code
xrhan/diffmotion (Han, Nishino & Zickler, NeurIPS 2025).

On disk: <root>/<object>/<i>_motion_<f>_{rgb,normal,albedo,metallic,specular,roughness}.png for f = 0..4,
plus <root>/<pointer> listing two clips per sequence, frames [0, 1, 2] and [2, 3, 4]. Everything is 8-bit and maps
linearly to [-1, 1] as v/255*2 - 1. Target channels: normal(3), albedo(3), metallic, specular, roughness.
Render data with scripts/render_motion.py (data/motion_render.py); its layout helpers are reused here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.io import read_image
from data.motion_render import MODALITIES, build_pointer, scan_sequences  # noqa: F401  (re-exported)
from models.core.cli import MissingInputError
from models.core.color import luminance
from models.diffmotion.channels import TARGET_SLICES, foreground_mask  # noqa: F401  (re-exported)

TARGET_KEYS = tuple(TARGET_SLICES)
HELD_OUT_SPLITS = ("held_out", "val", "test")


@dataclass
class MotionDataConfig:
    """Where the clips live and how they are augmented (as the reference: static p=0.2, then reverse p=0.5)."""

    root: str = "data/diffmotion/train"
    pointer: str = "clips.json"  # relative to root
    resolution: int = 256  # every PNG must be resolution x resolution (no resizing, as in the original loader)
    held_out_root: str = "data/diffmotion/held_out"  # used for split in HELD_OUT_SPLITS
    held_out_pointer: str = "clips.json"
    aug_static: float = 0.2  # repeat one random frame 3x in every modality
    aug_reverse: float = 0.5  # reverse the frame order of every modality (after the static augmentation)
    augment_held_out: bool = False  # held-out splits are read as rendered unless this is set
    verify: bool = True  # at start-up, check that every listed file exists (catches half-rendered sequences)


# -------------------------------------------------------------------------------------------------------- encoding
def _unit(img: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> [0, 1] float32; floats are taken as already in [0, 1]."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return img.astype(np.float32)


def _grey(img: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 or HxWx3/4 -> HxW; colour is reduced by models.core.color.luminance (alpha ignored)."""
    if img.ndim == 2:
        return img
    if img.shape[-1] == 1:
        return img[..., 0]
    return luminance(img[..., :3])


def _rgb(img: np.ndarray) -> np.ndarray:
    """HxW (grey, replicated) or HxWxC -> HxWx3; alpha is dropped without compositing, as the reference's PIL
    convert("RGB") does."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, -1)
    return np.repeat(img, 3, -1) if img.shape[-1] == 1 else img[..., :3]


def decode_rgb(img: np.ndarray) -> torch.Tensor:
    """One RGB frame (uint8 HxWx3 or [0,1] floats) -> float32 [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(_rgb(_unit(img)).transpose(2, 0, 1)) * 2 - 1)


def decode_target_maps(maps: Mapping[str, np.ndarray]) -> torch.Tensor:
    """GT maps of one frame {normal, albedo, metallic, specular, roughness} (PNG values or [0,1] floats) ->
    float32 [9, H, W] in [-1, 1], channel order normal(3), albedo(3), metallic, specular, roughness."""
    missing = [k for k in TARGET_KEYS if k not in maps]
    if missing:
        raise KeyError(f"target maps missing {missing}; need {list(TARGET_KEYS)}")
    parts = [_rgb(_unit(maps["normal"])), _rgb(_unit(maps["albedo"]))]
    parts += [_grey(_unit(maps[k]))[..., None] for k in ("metallic", "specular", "roughness")]
    shapes = {p.shape[:2] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"target maps have different sizes: {sorted(shapes)}")
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts, -1).transpose(2, 0, 1)) * 2 - 1)


def encode_target_maps(target: torch.Tensor | np.ndarray, truncate: bool = False) -> dict[str, np.ndarray]:
    """[..., 9, H, W] in [-1, 1] -> uint8 PNG arrays {normal, albedo: [..., H, W, 3]; metallic, specular, roughness:
    [..., H, W]} via (x+1)/2 clipped to [0, 1]. Rounds by default; truncate=True reproduces the original display code
    Normals are not renormalised."""
    t = target.detach().float().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target, np.float32)
    if t.ndim < 3 or t.shape[-3] != 9:
        raise ValueError(f"expected [..., 9, H, W], got {tuple(t.shape)}")
    x = np.clip((np.moveaxis(t, -3, -1) + 1) / 2, 0, 1) * 255
    x = (np.floor(x) if truncate else np.round(x)).astype(np.uint8)
    return {k: (x[..., s] if s.stop - s.start == 3 else x[..., s.start]) for k, s in TARGET_SLICES.items()}


# --------------------------------------------------------------------------------------------------------- dataset
def load_pointer(root: str | Path, pointer: str = "clips.json") -> list[dict]:
    """Read the pointer JSON of a dataset root, with a clear error when it is missing."""
    path = Path(root) / pointer
    if not path.is_file():
        hint = "" if not Path(root).is_dir() else f" (rebuild it: python scripts/render_motion.py --out {root} --reindex)"
        raise MissingInputError(f"DiffMotion pointer file not found: {path}{hint}")
    entries = json.loads(path.read_text())
    if not isinstance(entries, list) or not all(isinstance(e, dict) and len(e.get("paths", ())) == 3 for e in entries):
        raise ValueError(f"{path}: expected a list of clip entries with 3 'paths' each")
    return entries


class MotionDataset(torch.utils.data.Dataset):
    """Clips keyed by (index, seed): the seed drives all augmentations, so items do not depend on workers/order.

    Item: {"frames": float32 [3, 3, H, W], "target": float32 [3, 9, H, W]}, both in [-1, 1]. A plain int key means
    (index, 0).
    """

    def __init__(self, cfg: MotionDataConfig | None = None, split: str = "train", root: str | Path | None = None):
        self.cfg = cfg = cfg or MotionDataConfig()
        held = split in HELD_OUT_SPLITS
        if split != "train" and not held:
            raise ValueError(f"unknown split {split!r}; use 'train' or one of {HELD_OUT_SPLITS}")
        self.root = Path(root or (cfg.held_out_root if held else cfg.root))
        self.entries = load_pointer(self.root, cfg.held_out_pointer if held else cfg.pointer)
        if not self.entries:
            raise ValueError(f"{self.root}: the pointer lists no clips")
        augment = not held or cfg.augment_held_out
        self.p_static, self.p_reverse = (cfg.aug_static, cfg.aug_reverse) if augment else (0.0, 0.0)
        if cfg.verify:
            self._verify()

    def _verify(self) -> None:
        bad: dict[str, list[str]] = {}
        for e in self.entries:
            for p in e["paths"]:
                for m in MODALITIES:
                    if not (self.root / p[m]).is_file():
                        bad.setdefault(f"{e.get('folder', '?')}/{e.get('sequence', '?')}", []).append(p[m])
        if bad:
            seqs = ", ".join(f"{k} ({len(v)} files missing, e.g. {v[0]})" for k, v in list(bad.items())[:5])
            raise MissingInputError(
                f"{self.root}: {len(bad)} half-rendered or missing sequence(s): {seqs}. Finish them with "
                f"python scripts/render_motion.py --out {self.root} ... (same flags; it resumes) or --reindex")

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, rel: str, channels: int) -> np.ndarray:
        path = self.root / rel
        if not path.is_file():
            e = rel.split("/")
            raise MissingInputError(f"missing {path}: sequence {e[0]}/{e[-1].split('_')[0]} is half-rendered or deleted")
        img = read_image(path)
        res = self.cfg.resolution
        if img.shape[:2] != (res, res):
            raise ValueError(f"{path}: size {img.shape[1]}x{img.shape[0]}, expected {res}x{res} (MotionDataConfig.resolution)")
        return img if channels == 3 else _grey(img)

    def load_frame(self, paths: Mapping[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame's files -> (rgb [3, H, W], target [9, H, W]) in [-1, 1]."""
        rgb = decode_rgb(self._read(paths["rgb"], 3))
        maps = {k: self._read(paths[k], 3 if k in ("normal", "albedo") else 1) for k in TARGET_KEYS}
        return rgb, decode_target_maps(maps)

    def augmentation(self, index: int, seed: int) -> tuple[list[int], bool, bool]:
        """Frame order for key (index, seed): (frame indices into the clip, static?, reversed?)."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
        u_static, pick, u_rev = rng.random(), int(rng.integers(3)), rng.random()  # fixed draw count
        static, rev = bool(u_static < self.p_static), bool(u_rev < self.p_reverse)
        order = [pick] * 3 if static else [0, 1, 2]
        return (order[::-1] if rev else order), static, rev

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, seed = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (int(key), 0)
        if not 0 <= index < len(self.entries):
            raise IndexError(f"clip index {index} out of range [0, {len(self.entries)})")
        order, _, _ = self.augmentation(index, seed)
        loaded = {k: self.load_frame(self.entries[index]["paths"][k]) for k in set(order)}  # static: read one frame
        return {"frames": torch.stack([loaded[k][0] for k in order]), "target": torch.stack([loaded[k][1] for k in order])}
