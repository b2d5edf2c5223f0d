"""Tracking-video files: MP4 (libx264, yuv420p, CRF 18, as the model's training files), lossless NPZ / PNG frames,
the JSON sidecar and a first / middle / last preview strip. Every file is written atomically.

Part 2 (the video model) reads `load_tracking(path)` -> (float32 [T, H, W, 3] in [0, 1], sidecar dict or None).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.core.io import atomic_write, write_npz, write_png, write_text

FORMATS = ("mp4", "npz", "png")


def check_video(video) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"expected a uint8 video [T, H, W, 3], got {video.dtype} {video.shape}")
    return video


def write_mp4(path: str | Path, video, fps: float = 8.0, crf: int = 18) -> Path:
    """H.264 MP4 through imageio-ffmpeg. yuv420p needs even sizes: odd ones are refused (use NPZ / PNG)."""
    from models.core.optional import require

    ffmpeg = require("imageio_ffmpeg", feature="MP4 tracking videos", extra="das")
    video = check_video(video)
    t, h, w, _ = video.shape
    if h % 2 or w % 2:
        raise ValueError(f"MP4 (yuv420p) needs an even width and height, got {h}x{w}; write npz or png instead")
    with atomic_write(path) as tmp:
        writer = ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                     quality=None, macro_block_size=1, ffmpeg_log_level="error",
                                     output_params=["-crf", str(int(crf)), "-f", "mp4"])
        writer.send(None)
        for frame in video:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return Path(path)


def read_mp4(path: str | Path) -> np.ndarray:
    """uint8 [T, H, W, 3] from an MP4 (any file ffmpeg reads)."""
    from models.core.optional import require

    ffmpeg = require("imageio_ffmpeg", feature="MP4 tracking videos", extra="das")
    reader = ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in reader]
    if not frames:
        raise ValueError(f"{path}: no frames")
    return np.stack(frames)


def write_png_frames(folder: str | Path, video) -> list[Path]:
    video = check_video(video)
    folder = Path(folder)
    return [write_png(folder / f"{i:04d}.png", frame) for i, frame in enumerate(video)]


def preview_strip(video, gap: int = 4) -> np.ndarray:
    """First, middle and last frame side by side with a grey gap (what a person checks first)."""
    video = check_video(video)
    t, h = video.shape[:2]
    picks = sorted({0, (t - 1) // 2, t - 1})
    sep = np.full((h, gap, 3), 128, np.uint8)
    parts = []
    for i in picks:
        parts += [video[i], sep]
    return np.concatenate(parts[:-1], axis=1)


def save_tracking(stem: str | Path, video, meta: dict, formats=("mp4",), fps: float = 8.0, crf: int = 18,
                  preview: bool = True) -> list[Path]:
    """Write <stem>.mp4 / <stem>.npz / <stem>_frames/, then <stem>.json and <stem>_preview.png."""
    video = check_video(video)
    stem = Path(stem)
    written = []
    for fmt in formats:
        if fmt == "mp4":
            written.append(write_mp4(stem.with_suffix(".mp4"), video, fps, crf))
        elif fmt == "npz":
            written.append(write_npz(stem.with_suffix(".npz"), video=video))
        elif fmt == "png":
            written += write_png_frames(stem.parent / f"{stem.name}_frames", video)
        else:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    meta = {**meta, "files": sorted({p.name if p.parent == stem.parent else p.parent.name for p in written})}
    if "mp4" in formats:
        meta["mp4"] = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": int(crf)}
    written.append(write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1) + "\n"))
    if preview:
        written.append(write_png(stem.parent / f"{stem.name}_preview.png", preview_strip(video)))
    return written


def read_video(path: str | Path) -> np.ndarray:
    """uint8 [T, H, W, 3] from .mp4, .npz (key 'video') or a folder of PNG frames."""
    path = Path(path)
    if path.is_dir():
        import imageio.v3 as iio

        files = sorted(path.glob("*.png"))
        if not files:
            raise ValueError(f"{path}: no PNG frames")
        return check_video(np.stack([np.asarray(iio.imread(f))[..., :3] for f in files]))
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return check_video(data["video"])
    return read_mp4(path)


def load_tracking(path: str | Path) -> tuple[np.ndarray, dict | None]:
    """(float32 [T, H, W, 3] in [0, 1], sidecar) for a tracking video written by `save_tracking`."""
    from models.das.colors import read_sidecar

    path = Path(path)
    side = path.with_suffix(".json") if not path.is_dir() else path.parent / f"{path.name.removesuffix('_frames')}.json"
    meta = read_sidecar(side) if side.is_file() else None
    return read_video(path).astype(np.float32) / 255.0, meta
