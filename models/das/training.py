"""DaS fine-tuning data: the original dataset layout, toy moving squares, an identity VAE and a byte-level tiny T5.

Folder layout (as released): prompt.txt, videos.txt, trackings.txt (one line per sample, relative paths), videos/,
tracking/. Items are keyed by (index, seed): the loop shuffles globally and the seed picks the clip start and the
flip, so an item is the same on every process.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from models.core.cli import UserError


# ---------------------------------------------------------------------------------------------------- identity VAE
class _Posterior:
    def __init__(self, x):
        self.x = x

    def sample(self, generator=None):
        return self.x

    def mode(self):
        return self.x


class IdentityVAE(nn.Module):
    """latent = pixels (no compression): lets a tiny CogVideoX train on pixels with no VAE weights at all."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.config = SimpleNamespace(block_out_channels=(channels,), temporal_compression_ratio=1, scaling_factor=1.0,
                                      invert_scale_latents=False, latent_channels=channels)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dtype(self):
        return self._anchor.dtype

    @property
    def device(self):
        return self._anchor.device

    def encode(self, x):
        return SimpleNamespace(latent_dist=_Posterior(x))

    def decode(self, z):
        return SimpleNamespace(sample=z)


# ---------------------------------------------------------------------------------------------------- tiny text
def byte_tokens(prompts: list[str], length: int, vocab: int) -> torch.Tensor:
    """UTF-8 bytes (mod vocab) padded with 0: a tokenizer for tiny random T5s (no vocabulary file needed)."""
    ids = torch.zeros(len(prompts), length, dtype=torch.long)
    for i, p in enumerate(prompts):
        b = list(p.encode("utf-8"))[:length]
        ids[i, :len(b)] = torch.tensor([1 + x % (vocab - 1) for x in b], dtype=torch.long) if b else ids[i, :0]
    return ids


# ---------------------------------------------------------------------------------------------------- toy squares
def toy_clip(seed: int, size: int = 16, frames: int = 6, square: int | None = None, speed=(0.6, 1.2),
             reverse: bool = False) -> dict[str, np.ndarray]:
    """One square of random colour on a random uniform background, moving linearly in a random direction (Gu et al.
    2025's tracking colours: R = x0 / W, G = y0 / H from frame 0, B constant; black elsewhere). `reverse` renders the
    tracking video of the opposite velocity from the same first frame (the counterfactual of the learning check).

    -> video, tracking float32 [T, H, W, 3] in [0, 1]; disp [T, 2] (x, y) commanded displacement."""
    rng = np.random.default_rng(seed)
    square = square or max(2, size // 4)
    top = min(speed[1], (size - square) / (2 * max(frames - 1, 1)))  # fits forwards and reversed
    speed = (min(speed[0], top), top)
    fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    while np.abs(fg - bg).sum() < 0.6:
        fg = rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * math.pi)
    v = rng.uniform(*speed) * np.array([math.cos(angle), math.sin(angle)])
    span = v * (frames - 1)
    p0 = rng.uniform(np.abs(span), size - square - np.abs(span))  # inside the frame forwards and reversed
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    edges = np.arange(size, dtype=np.float64)
    video = np.empty((frames, size, size, 3), np.float32)
    track = np.zeros((frames, size, size, 3), np.float32)
    disp = np.zeros((frames, 2), np.float32)
    for t in range(frames):
        pos = p0 + v * t
        tpos = p0 - v * t if reverse else pos
        disp[t] = tpos - p0
        # the video is anti-aliased (pixel coverage), so the object's centroid is exact at sub-pixel positions
        cx = np.clip(np.minimum(edges + 1, pos[0] + square) - np.maximum(edges, pos[0]), 0, 1)
        cy = np.clip(np.minimum(edges + 1, pos[1] + square) - np.maximum(edges, pos[1]), 0, 1)
        cover = (cy[:, None] * cx[None, :])[..., None]
        video[t] = cover * fg + (1 - cover) * bg
        # tracking: each covered pixel (centre inside) shows its surface point's frame-0 position
        inside = (xx >= tpos[0]) & (xx < tpos[0] + square) & (yy >= tpos[1]) & (yy < tpos[1] + square)
        x0, y0 = xx - (tpos[0] - p0[0]), yy - (tpos[1] - p0[1])
        col = np.stack([x0 / size, y0 / size, np.full_like(x0, 0.8)], -1)
        track[t][inside] = col[inside]
    return {"video": video, "tracking": np.clip(track, 0, 1), "disp": disp, "fg": fg.astype(np.float32),
            "bg": bg.astype(np.float32)}


class ToySquares(torch.utils.data.Dataset):
    """Procedural training clips; item (index, seed) is clip `index` of the split (train and held-out differ)."""

    def __init__(self, n: int, size: int, frames: int, split: str = "train"):
        self.n, self.size, self.frames = n, size, frames
        self.offset = 0 if split == "train" else 10_000_000

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        index, _seed = key
        c = toy_clip(self.offset + int(index), self.size, self.frames)
        return {"video": torch.from_numpy(c["video"]) * 2 - 1, "tracking": torch.from_numpy(c["tracking"]) * 2 - 1,
                "prompt": "a square moving on a plain background"}


# ---------------------------------------------------------------------------------------------------- folder data
def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: missing (the DaS dataset needs prompt.txt, videos.txt and trackings.txt)")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Aspect-preserving resize to cover (height, width), then a centre crop (the original stretched)."""
    import cv2

    h, w = frames.shape[1:3]
    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                    for f in frames])
    top, left = (nh - height) // 2, (nw - width) // 2
    return out[:, top:top + height, left:left + width]


def flip_tracking(track01: np.ndarray) -> np.ndarray:
    """Mirror a tracking video: R encodes x0 / W, so it becomes 1 - R on covered pixels (background stays black)."""
    out = track01[:, :, ::-1].copy()
    covered = out.max(-1) > 0
    out[..., 0] = np.where(covered, 1.0 - out[..., 0], 0.0)
    return out


class FolderDataset(torch.utils.data.Dataset):
    """The released training layout; stride sampling with a seeded random start, short clips skipped with a warning."""

    def __init__(self, root: str | Path, frames: int, height: int, width: int, flip: float = 0.0):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"--data-root {root}: not a folder")
        prompts, videos, tracks = (read_list(root / n) for n in ("prompt.txt", "videos.txt", "trackings.txt"))
        if not len(prompts) == len(videos) == len(tracks):
            raise UserError(f"{root}: prompt.txt, videos.txt, trackings.txt have {len(prompts)}, {len(videos)}, "
                            f"{len(tracks)} lines (must match)")
        self.frames, self.height, self.width, self.flip = frames, height, width, flip
        self.items, skipped = [], []
        for p, v, t in zip(prompts, videos, tracks):
            vp, tp = root / v, root / t
            for f in (vp, tp):
                if not f.is_file():
                    raise UserError(f"{f}: listed in {root} but missing")
            n = min(frame_count(vp), frame_count(tp))
            (self.items if n >= frames else skipped).append((p, vp, tp, n))
        if skipped:
            warnings.warn(f"{root}: skipped {len(skipped)} clip(s) shorter than {frames} frames "
                          f"(e.g. {skipped[0][1].name}: {skipped[0][3]})", stacklevel=2)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        from models.das.video import read_video

        index, seed = key
        prompt, vp, tp, n = self.items[int(index)]
        rng = np.random.default_rng(int(seed))
        stride = max(1, n // self.frames)
        start = int(rng.integers(0, n - (self.frames - 1) * stride))
        idx = start + stride * np.arange(self.frames)
        video = resize_crop(read_video(vp)[idx], self.height, self.width).astype(np.float32) / 255
        track = resize_crop(read_video(tp)[idx], self.height, self.width).astype(np.float32) / 255
        if rng.uniform() < self.flip:  # one flip for the whole clip and its tracking video
            video, track = video[:, :, ::-1].copy(), flip_tracking(track)
        return {"video": torch.from_numpy(video) * 2 - 1, "tracking": torch.from_numpy(track) * 2 - 1,
                "prompt": prompt}


class CachedLatents(torch.utils.data.Dataset):
    """Pre-encoded items (one .safetensors per sample: latents, image_latents, tracking_maps, prompt_embeds)."""

    KEYS = ("latents", "image_latents", "tracking_maps", "prompt_embeds")

    def __init__(self, folder: str | Path):
        self.files = sorted(Path(folder).glob("*.safetensors"))
        if not self.files:
            raise UserError(f"{folder}: no cached latents (*.safetensors); write them with encode_cache")

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        from safetensors.torch import load_file

        item = load_file(str(self.files[int(key[0])]))
        missing = [k for k in self.KEYS if k not in item]
        if missing:
            raise UserError(f"{self.files[int(key[0])]}: cached item lacks {missing}")
        return {k: item[k] for k in self.KEYS}


# ---------------------------------------------------------------------------------------------------- learning check
def centroids(video: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] -> [T, 2] (x, y) centroid of a soft object mask: each pixel's position on the background ->
    object colour axis (exactly the coverage for an anti-aliased object), clipped to [0, 1]."""
    axis = fg - bg
    w = np.clip(((video - bg) * axis).sum(-1) / max(float(np.square(axis).sum()), 1e-8), 0, 1)
    H, W = video.shape[1:3]
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    total = w.sum((1, 2)) + 1e-8
    return np.stack([(w * xx).sum((1, 2)) / total, (w * yy).sum((1, 2)) / total], -1)


def follow_metrics(videos, clips, commands) -> dict:
    """Pearson r over all (clip, frame > 0, axis) displacement components and EPE ratio at the last frame."""
    d = np.stack([centroids(v, c["fg"], c["bg"]) for v, c in zip(videos, clips)])
    d = d - d[:, :1]
    g = np.stack(commands)
    r = float(np.corrcoef(d[:, 1:].ravel(), g[:, 1:].ravel())[0, 1])
    epe = float(np.linalg.norm(d[:, -1] - g[:, -1], axis=-1).mean() / np.linalg.norm(g[:, -1], axis=-1).mean())
    return {"r": round(r, 4), "epe_ratio": round(epe, 4)}


@torch.no_grad()
def learning_check(system, clips: int = 64, steps: int = 25, batch: int = 16) -> dict:
    """Does the model move the object where the tracking video says (held-out clips, fixed seeds, no CFG)?
    Conditions: ground-truth videos (metric validity), branch disabled, enabled, and the reversed tracking video."""
    d = system.cfg.data
    held = [toy_clip(10_000_000 + i, d.width, d.frames) for i in range(clips)]
    rev = [toy_clip(10_000_000 + i, d.width, d.frames, reverse=True) for i in range(clips)]
    out = {"ground_truth": follow_metrics([c["video"] for c in held], held, [c["disp"] for c in held])}

    def generate(source, scale):
        videos = []
        for s in range(0, clips, batch):
            chunk = list(range(s, min(s + batch, clips)))
            vids = _generate_batch(system, [held[i]["video"][0] for i in chunk],
                                   [source[i]["tracking"] for i in chunk], chunk, steps, scale)
            videos.extend(vids)
        return videos

    enabled = generate(held, 1.0)
    out["enabled"] = follow_metrics(enabled, held, [c["disp"] for c in held])
    out["disabled"] = follow_metrics(generate(held, 0.0), held, [c["disp"] for c in held])
    reversed_ = generate(rev, 1.0)
    out["reversed"] = follow_metrics(reversed_, held, [c["disp"] for c in rev])
    out["reversed_vs_original"] = follow_metrics(reversed_, held, [c["disp"] for c in held])
    out["settings"] = {"clips": clips, "steps": steps, "guidance": 1.0, "seeds": f"0-{clips - 1}"}
    return out


def _generate_batch(system, images, tracks, seeds, steps, scale) -> list[np.ndarray]:
    from models.core.seeding import seeded_generator

    pipe = system.pipeline()
    n = len(images)
    emb = system.prompt_embeds([""] * n)
    T, H, W = tracks[0].shape[:3]
    video = pipe(image=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2), tracking_video=np.stack(tracks),
                 prompt_embeds=emb, height=H, width=W, num_frames=T, num_inference_steps=steps, guidance_scale=1.0,
                 tracking_scale=scale, generator=[seeded_generator(s, system.device) for s in seeds],
                 output_type="pt", progress=False)
    return list(video.permute(0, 1, 3, 4, 2).float().cpu().numpy())


def encode_cache(system, dataset, folder: str | Path, seed: int = 0) -> list[Path]:
    """Pre-encode every item once (video, noisy first frame, tracking video and its first frame, prompt) into
    one .safetensors each; `data.kind="cached"` then trains without VAE or T5. The image noise and dropout are drawn
    once per item here (the cache fixes them)."""
    from safetensors.torch import save_file

    from data.io import atomic_write
    from models.core.seeding import derive_seed

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(len(dataset)):
        item = dataset[(i, derive_seed(seed, "cache", i))]
        batch = {"video": item["video"][None].to(system.device), "tracking": item["tracking"][None].to(system.device),
                 "prompt": [item["prompt"]], "seed": torch.tensor([derive_seed(seed, "cache-noise", i)])}
        x0, image, tracking, text = system.condition(batch, system.rng(batch))
        tensors = {"latents": x0[0], "image_latents": image[0], "tracking_maps": tracking[0], "prompt_embeds": text[0]}
        path = folder / f"{i:06d}.safetensors"
        with atomic_write(path) as tmp:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        written.append(path)
    return written
