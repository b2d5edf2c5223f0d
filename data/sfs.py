"""SfS training data (Han et al. 2024, training data section): procedural normal maps cached once, a scale pyramid, and random 16x16 crops.

Images are NOT stored: the system renders each crop on the fly with `data.lambertian` (random light per tile), so a
dataset item is just a stack of augmented normal crops. On-disk format: see data/README.md ("Multistable SfS").
"""
from __future__ import annotations

import json
import math
import os
import functools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from data.io import atomic_write
from data.sfs_shapes import OBJECT, RELIEF, normal_map

CACHE_VERSION = 1
SPLITS = {"train": 0, "heldout": 1}
_ALIASES = {"val": "heldout", "valid": "heldout", "test": "heldout", "held-out": "heldout"}
_SPLIT_OFFSET = 500_000_000  # held-out map seeds start here, so they never meet training seeds


@dataclass
class SfsDataConfig:
    num_maps: int = 24000  # training normal maps (objects and reliefs interleaved)
    heldout_maps: int = 1000  # held-out maps for the B3-B6 checks (disjoint seeds)
    resolution: int = 192  # generated size; also the first pyramid level
    levels: tuple[int, ...] = (192, 128, 96)  # area-downsampled copies sampled uniformly
    object_fraction: float = 0.5
    crops_per_map: int = 16  # K crops per dataset item
    crop_size: int = 16
    min_foreground: float = 0.25  # drop partial-background crops below this foreground fraction
    max_background: float = 0.1  # at most this share of all-background crops per item
    augment: bool = True  # random 90-degree rotations and mirrors
    depth_flip: bool = True  # random convex/concave reversal, reliefs only
    seed: int = 0
    cache_dir: str = "data_cache/sfs"  # default root (git-ignored); train_dataset(root=...) overrides it
    # rendering (done by the system with data.lambertian, per tile)
    albedo_range: tuple[float, float] = (0.5, 1.0)
    min_lz: float = math.cos(math.pi / 2.5)
    ambient_range: tuple[float, float] = (0.0, 0.0)  # off by default, as in the reference
    noise_range: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def tiny(cls) -> "SfsDataConfig":
        """Test-size data: 8 maps of 64^2 (4 held out), levels 64/48/32, 8 crops per map."""
        return cls(num_maps=8, heldout_maps=4, resolution=64, levels=(64, 48, 32), crops_per_map=8)


def split_name(split: str) -> str:
    """'train' or 'heldout' (aliases: val, valid, test, held-out)."""
    split = _ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use 'train' or 'heldout'")
    return split


def map_seed(cfg: SfsDataConfig, split: str, index: int) -> int:
    """Seed of map `index`: cfg.seed * 1e9 + (0 for train, 5e8 for held-out) + index."""
    return int(cfg.seed) * 1_000_000_000 + SPLITS[split_name(split)] * _SPLIT_OFFSET + int(index)


def map_family(cfg: SfsDataConfig, index: int) -> int:
    """Interleaved family assignment with the configured object share (0.5 -> relief, object, relief, ...)."""
    f = cfg.object_fraction
    return OBJECT if math.floor((index + 1) * f) > math.floor(index * f) else RELIEF


# ------------------------------------------------------------------------------------------------- pyramid

def _area_matrix(n_in: int, n_out: int, dtype=torch.float32) -> torch.Tensor:
    """[n_out, n_in] exact box-filter weights: output pixel o averages input interval [o, o+1) * n_in/n_out."""
    s = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64)[:, None] * s
    i = torch.arange(n_in, dtype=torch.float64)[None]
    overlap = (torch.minimum(lo + s, i + 1) - torch.maximum(lo, i)).clamp_min(0)
    return (overlap / s).to(dtype)


def area_downsample(normals: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample normal maps [N,3,R,R] -> [N,3,size,size] and renormalize.

    Pixels whose foreground coverage is below one half become background (0); others are the normalized mean of
    their foreground normals.
    """
    r = normals.shape[-1]
    if size == r:
        return normals.clone()
    a = _area_matrix(r, size).to(normals.device)
    n = normals.float()
    fg = (n != 0).any(dim=1, keepdim=True).float()
    cov = a @ fg @ a.T
    v = a @ n @ a.T
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(cov >= 0.5, v, torch.zeros((), dtype=v.dtype, device=v.device))


# ------------------------------------------------------------------------------------------------- cache

def cache_path(cfg: SfsDataConfig, split: str, root: str | Path | None = None) -> Path:
    """<root>/sfs_<split>_n<N>_r<res>_l<levels>_o<object share>_s<seed>_v<version>.npz"""
    split = split_name(split)
    n = cfg.num_maps if split == "train" else cfg.heldout_maps
    lv = "-".join(str(x) for x in cfg.levels)
    frac = f"{cfg.object_fraction:g}"
    name = f"sfs_{split}_n{n}_r{cfg.resolution}_l{lv}_o{frac}_s{cfg.seed}_v{CACHE_VERSION}.npz"
    return Path(root or cfg.cache_dir) / name


def _make_chunk(args):
    """Worker: generate maps for (cfg dict, split, indices) -> (levels dict of float16 arrays, families)."""
    cfg_d, split, indices = args
    torch.set_num_threads(1)
    cfg = SfsDataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_d.items()})
    maps, fams = [], []
    for i in indices:
        n, fam = normal_map(map_seed(cfg, split, i), cfg.resolution, map_family(cfg, i))
        maps.append(n)
        fams.append(fam)
    base = torch.stack(maps)
    levels = {r: area_downsample(base, r).half().numpy() for r in cfg.levels}
    return levels, np.asarray(fams, dtype=np.uint8)


def generate_maps(cfg: SfsDataConfig, split: str = "train", workers: int | None = None, chunk: int = 64,
                  progress: bool = False) -> dict:
    """Generate all maps of a split: {'levels': {res: float16 [N,3,res,res]}, 'family': uint8 [N], 'seeds': int64 [N]}.

    Deterministic for a given cfg and split, whatever `workers` is (each map depends only on its own seed).
    """
    split = split_name(split)
    n = cfg.num_maps if split == "train" else cfg.heldout_maps
    if cfg.resolution not in cfg.levels or any(r < cfg.crop_size for r in cfg.levels):
        raise ValueError(f"levels {cfg.levels} must include the resolution {cfg.resolution} and be >= the crop size")
    workers = min(os.cpu_count() or 1, 16) if workers is None else workers
    jobs = [(asdict(cfg), split, list(range(s, min(s + chunk, n)))) for s in range(0, n, chunk)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            results = list(ex.map(_make_chunk, jobs))
    else:
        results = []
        for j, job in enumerate(jobs):
            results.append(_make_chunk(job))
            if progress:
                print(f"sfs maps: {min((j + 1) * chunk, n)}/{n}", flush=True)
    levels = {r: np.concatenate([res[0][r] for res in results]) for r in cfg.levels}
    family = np.concatenate([res[1] for res in results])
    seeds = np.asarray([map_seed(cfg, split, i) for i in range(n)], dtype=np.int64)
    return {"levels": levels, "family": family, "seeds": seeds}


def load_maps(cfg: SfsDataConfig, split: str = "train", root: str | Path | None = None, build: bool = True,
              workers: int | None = None) -> dict:
    """Load a split's cached maps, generating and caching them (atomically) on first use."""
    split = split_name(split)
    path = cache_path(cfg, split, root)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: cache version {meta.get('version')} != {CACHE_VERSION}; delete it")
            return {"levels": {r: z[f"normals_{r}"] for r in cfg.levels}, "family": z["family"], "seeds": z["seeds"]}
    if not build:
        raise FileNotFoundError(f"no SfS map cache at {path}")
    data = generate_maps(cfg, split, workers)
    meta = {"version": CACHE_VERSION, "split": split, "config": asdict(cfg)}
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.asarray(json.dumps(meta)), family=data["family"], seeds=data["seeds"],
                 **{f"normals_{r}": a for r, a in data["levels"].items()})
    return data


# ------------------------------------------------------------------------------------------------- crops
#
# Crop sampling is split into (1) the random draws, made per item from that item's own generator in a fixed order,
# and (2) everything else (window gather, foreground selection, augmentation), done with batched tensor ops over all
# items at once. A batch of items is therefore bitwise equal to the same items drawn one by one.

def rot90_normals(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rotate normal maps [...,3,H,W] by k*90 deg counter-clockwise: pixels move and (nx, ny) -> (-ny, nx) per turn."""
    k %= 4
    if k == 0:
        return x
    x = torch.rot90(x, k, dims=(-2, -1))
    nx, ny, nz = x.unbind(-3)
    nx, ny = {1: (-ny, nx), 2: (-nx, -ny), 3: (ny, -nx)}[k]
    return torch.stack([nx, ny, nz], dim=-3)


def mirror_normals(x: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror of normal maps [...,3,H,W]: columns reversed, nx -> -nx."""
    x = torch.flip(x, dims=(-1,))
    return torch.cat([-x[..., :1, :, :], x[..., 1:, :, :]], dim=-3)


def _augment_draws(n: int, generator: torch.Generator | None, device) -> tuple[torch.Tensor, ...]:
    """(k rotations [n], mirror [n], depth flip [n]) in the fixed draw order of `augment`: k, then 2n uniforms."""
    gdev = generator.device if generator is not None else device
    k = torch.randint(0, 4, (n,), generator=generator, device=gdev).to(device)
    u = torch.rand(2 * n, generator=generator, device=gdev).to(device) < 0.5
    return k, u[:n], u[n:]


@functools.lru_cache(maxsize=8)
def _dihedral_tables(c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 8 dihedral transforms of a c x c normal crop, e = 4 * mirror + k (mirror first, then k quarter turns).

    Returns (source pixel of each output pixel [8, c*c], output nx/ny taken from input ny/nx [8] (bool),
    signs of the output (nx, ny) [8, 2]). Read off by transforming a probe crop with mirror_normals/rot90_normals.
    """
    probe = torch.stack([torch.full((c, c), 1.0), torch.full((c, c), 2.0),
                         torch.arange(c * c, dtype=torch.float64).view(c, c)]).double()
    pix, swap, sign = [], [], []
    for e in range(8):
        x = rot90_normals(mirror_normals(probe) if e >= 4 else probe, e % 4)
        pix.append(x[2].flatten().long())
        swap.append(bool(x[0, 0, 0].abs() == 2))
        sign.append(torch.stack([x[0, 0, 0].sign(), x[1, 0, 0].sign()]))
    return torch.stack(pix), torch.tensor(swap), torch.stack(sign).float()


def _apply_augment(crops, family, k, mir, flip, dihedral: bool, depth_flip: bool) -> torch.Tensor:
    """Apply drawn dihedral transforms / relief depth flips to crops [..., 3, c, c] (any leading shape).

    One pixel gather with per-crop permutations, then (nx, ny) swapped and sign-flipped as the transform says: the
    same values, bit for bit, as mirroring / rotating / negating crop by crop.
    """
    lead, c = crops.shape[:-3], crops.shape[-1]
    flat = crops.reshape(-1, 3, c * c)
    pix, swap, sign = (t.to(crops.device) for t in _dihedral_tables(c))
    e = (mir.long() * 4 + k).reshape(-1) if dihedral else torch.zeros(flat.shape[0], dtype=torch.long,
                                                                       device=crops.device)
    if dihedral:
        flat = torch.gather(flat, 2, pix[e][:, None, :].expand_as(flat))
    sign = sign[e].to(crops.dtype)
    if depth_flip:
        sign = sign * torch.where(flip & (family == RELIEF), -1.0, 1.0).reshape(-1, 1).to(crops.dtype)
    sw = swap[e][:, None]
    nx = torch.where(sw, flat[:, 1], flat[:, 0]) * sign[:, :1]
    ny = torch.where(sw, flat[:, 0], flat[:, 1]) * sign[:, 1:]
    return torch.stack([nx, ny, flat[:, 2]], dim=1).reshape(*lead, 3, c, c)


def augment(crops: torch.Tensor, family: torch.Tensor, generator: torch.Generator | None, dihedral: bool = True,
            depth_flip: bool = True):
    """Random dihedral transform per crop (8 elements: rotations x mirror), plus depth reversal for reliefs only.

    The random draws are the same whatever the flags, so toggling one does not reshuffle the other.
    """
    k, mir, flip = _augment_draws(crops.shape[0], generator, crops.device)
    return _apply_augment(crops, family, k, mir, flip, dihedral, depth_flip)


def _candidate_draws(generator, m: int, n_choices: int, n_levels: int, device):
    """One item's candidate draws: (map choice [m], level [m], position fractions [2m] grouped by level).

    Draw order (fixed): map choices, levels, then 2m uniforms read as, for each level in turn, the y and then the x
    fractions of its candidates (`_positions` puts them back in candidate order).
    """
    gdev = generator.device if generator is not None else device
    choice = torch.randint(0, n_choices, (m,), generator=generator, device=gdev)
    lev = torch.randint(0, n_levels, (m,), generator=generator, device=gdev)
    fractions = torch.rand(2 * m, generator=generator, device=gdev)
    return choice.to(device), lev.to(device), fractions.to(device)


def _positions(lev: torch.Tensor, fractions: torch.Tensor, n_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, m] levels + [B, 2m] per-level (y block, x block) fractions -> y, x fractions [B, m] in candidate order."""
    b, m = lev.shape
    order = torch.argsort(lev, dim=1, stable=True)  # candidates grouped by level, in draw order within a level
    counts = torch.nn.functional.one_hot(lev, n_levels).sum(1)  # [B, L]
    start = torch.cumsum(counts, 1) - counts  # first slot of each level among the sorted candidates
    slot = torch.arange(m, device=lev.device).expand(b, m)
    sorted_lev = torch.gather(lev, 1, order)
    # sorted candidate j of level l sits at 2*start_l + (j - start_l) (y) and + count_l more (x) in `fractions`
    base = torch.gather(start, 1, sorted_lev)
    y_at = base + slot
    x_at = y_at + torch.gather(counts, 1, sorted_lev)
    uy = torch.empty(b, m, device=lev.device).scatter_(1, order, torch.gather(fractions, 1, y_at))
    ux = torch.empty(b, m, device=lev.device).scatter_(1, order, torch.gather(fractions, 1, x_at))
    return uy, ux


class CropSource:
    """The pyramid prepared for crop sampling: strided views of every c x c window of the normals, and summed-area
    tables of the foreground masks, so a candidate's foreground count costs 4 reads (Crow 1984, "Summed-area tables").

    Built once per dataset; the maps are not copied. The tables are int16 (2 bytes per pixel, a third of the float16
    maps' memory) and hold the running sums modulo 2^16: a window sum (at most c*c < 2^16) is still exact in that
    arithmetic.
    """

    def __init__(self, levels: list[torch.Tensor], crop_size: int, chunk: int = 256):
        c = crop_size
        self.levels = levels
        self.windows = [lt.unfold(2, c, 1).unfold(3, c, 1) for lt in levels]  # [N,3,S,S,c,c]
        self.spans = torch.tensor([w.shape[2] for w in self.windows], dtype=torch.float32, device=levels[0].device)
        tables, self.offsets, self.strides, start = [], [], [], 0
        for lt in levels:
            for i in range(0, lt.shape[0], chunk):
                fg = (lt[i:i + chunk] != 0).any(1).to(torch.int32)
                sat = torch.nn.functional.pad(fg.cumsum(1).cumsum(2), (1, 0, 1, 0))  # [n, R+1, R+1], 0 row/col first
                tables.append(sat.to(torch.int16).flatten())  # narrowing keeps the sum modulo 2^16
            self.offsets.append(start)
            self.strides.append(lt.shape[-1] + 1)
            start += lt.shape[0] * (lt.shape[-1] + 1) ** 2
        self.tables = torch.cat(tables)

    def foreground_counts(self, maps, lev, yy, xx, c: int) -> torch.Tensor:
        """Foreground pixel counts (int32) of the c x c windows at (map, level, y, x), all levels in one read."""
        offsets = torch.tensor(self.offsets, device=maps.device)[lev]
        stride = torch.tensor(self.strides, device=maps.device)[lev]
        base = offsets + maps * stride * stride + yy * stride + xx
        corners = torch.stack([base + c * stride + c, base + c, base + c * stride, base], dim=-1)
        v = torch.take(self.tables, corners).to(torch.int32)
        return (v[..., 0] - v[..., 1] - v[..., 2] + v[..., 3]) & 0xFFFF

    def gather(self, maps, lev, yy, xx) -> torch.Tensor:
        """Normal crops [K, 3, c, c] of flat candidates (map, level, y, x): one indexed read per level."""
        w0 = self.windows[0]
        out = torch.empty((maps.numel(), 3, *w0.shape[-2:]), dtype=w0.dtype, device=maps.device)
        for li, view in enumerate(self.windows):
            sel = torch.nonzero(lev == li).squeeze(1)
            if sel.numel():
                out[sel] = view[maps[sel], :, yy[sel], xx[sel]]
        return out


def select_crops(source: CropSource, maps, lev, uy, ux, n: int, cfg: SfsDataConfig) -> tuple:
    """Batched crop selection: candidates [B, m] (map, level, position fractions) -> the n kept per item.

    Kept in candidate order: crops with foreground >= cfg.min_foreground, and all-background crops while their share
    stays <= cfg.max_background; if too few qualify, the remaining slots take the highest-foreground leftovers.
    Returns (crops [B,n,3,c,c] in the maps' dtype, pick [B,n] candidate indices).
    """
    b, m = lev.shape
    c = cfg.crop_size
    span = source.spans[lev]
    yy, xx = (uy * span).long(), (ux * span).long()
    fg = source.foreground_counts(maps, lev, yy, xx, c).float() / (c * c)  # [B, m]; exact in float32
    order = torch.arange(m, device=lev.device).expand(b, m)
    good = fg >= cfg.min_foreground
    bg = fg == 0
    bg_ok = bg & (torch.cumsum(bg.long(), 1) <= int(cfg.max_background * n))
    take = good | bg_ok
    rank_left = torch.argsort(torch.argsort(-fg, dim=1, stable=True), dim=1, stable=True)  # best foreground first
    score = torch.where(take, order, m + rank_left)
    pick = torch.argsort(score, dim=1, stable=True)[:, :n]
    kept = [torch.gather(t, 1, pick).flatten() for t in (maps, lev, yy, xx)]
    return source.gather(*kept).view(b, n, 3, c, c), pick


def sample_crop_batch(source: CropSource, family: torch.Tensor, n: int, generators: list, cfg: SfsDataConfig,
                      map_choices: list[torch.Tensor | None] | None = None, oversample: int = 4) -> dict:
    """n crops for each of B items, item b drawing only from generators[b] (so B items == B separate calls).

    source: the pyramid (`CropSource` of tensors [N,3,R,R], one per level, any device/dtype). Each item has
    oversample * n candidates that pick a map (uniform over map_choices[b], or over all maps when None), a level and a
    position (uniform).
    Returns {'normals': float32 [B,n,3,c,c] (unit foreground, augmented), 'family', 'level', 'map'} (long [B,n]).
    """
    levels = source.levels
    dev = levels[0].device
    m = oversample * n
    map_choices = map_choices if map_choices is not None else [None] * len(generators)
    draws, aug = [], []
    for g, choices in zip(generators, map_choices):
        choice, lev, fractions = _candidate_draws(g, m, len(choices) if choices is not None else levels[0].shape[0],
                                                  len(levels), dev)
        draws.append((choices.to(dev)[choice] if choices is not None else choice, lev, fractions))
        if cfg.augment or cfg.depth_flip:  # drawn after the candidates, from the same generator
            aug.append(_augment_draws(n, g, dev))
    maps, lev, fractions = (torch.stack(t) for t in zip(*draws))
    uy, ux = _positions(lev, fractions, len(levels))
    crops, pick = select_crops(source, maps, lev, uy, ux, n, cfg)
    maps, lev = torch.gather(maps, 1, pick), torch.gather(lev, 1, pick)
    fam = family.to(dev)[maps].long()
    out = crops.float()
    norm = torch.linalg.vector_norm(out.movedim(2, -1).contiguous(), dim=-1)[:, :, None]  # fast inner reduction
    out = out / norm.clamp_min(1e-12)  # undo float16 rounding of the unit length (zero background stays zero)
    if aug:
        k, mir, flip = (torch.stack(t) for t in zip(*aug))
        out = _apply_augment(out, fam, k, mir, flip, cfg.augment, cfg.depth_flip)
    return {"normals": out, "family": fam, "level": lev, "map": maps}


def sample_crops(levels: list[torch.Tensor], family: torch.Tensor, n: int, generator: torch.Generator | None,
                 cfg: SfsDataConfig, map_index: torch.Tensor | None = None, oversample: int = 4) -> dict:
    """n random crops from one generator: `sample_crop_batch` for a single item ({'normals': [n,3,c,c], ...})."""
    out = sample_crop_batch(CropSource(levels, cfg.crop_size), family, n, [generator], cfg, [map_index], oversample)
    return {k: v[0] for k, v in out.items()}


def _item_seed(index: int, seed: int) -> int:
    from models.core.seeding import derive_seed
    return derive_seed("sfs-crops", int(index), int(seed))


class SfsCropDataset(torch.utils.data.Dataset):
    """Items keyed by (index, seed) (an int key means seed = index): K augmented crops of map `index`.

    Each item: {'normals': float32 [K,3,c,c], 'family': long [K], 'level': long [K]}; every random choice comes from
    a generator seeded by (index, seed), so results do not depend on DataLoader workers or on batching:
    `get_batch(keys)` returns the stacked items ([B,K,...], as default_collate would) in one batched pass.
    """

    def __init__(self, cfg: SfsDataConfig, split: str = "train", root: str | Path | None = None,
                 maps: dict | None = None, workers: int | None = None):
        self.cfg, self.split = cfg, split_name(split)
        data = maps if maps is not None else load_maps(cfg, split, root, workers=workers)
        self.levels = [torch.from_numpy(np.ascontiguousarray(data["levels"][r])) for r in cfg.levels]
        self.source = CropSource(self.levels, cfg.crop_size)
        self.family = torch.from_numpy(np.asarray(data["family"]).astype(np.int64))
        self.seeds = np.asarray(data["seeds"])
        self._n = self.levels[0].shape[0]

    def __len__(self) -> int:
        return self._n

    def _key(self, key) -> tuple[int, int]:
        index, seed = key if isinstance(key, (tuple, list)) else (key, key)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"map index {index} out of range (0..{len(self) - 1})")
        return index, int(seed)

    def get_batch(self, keys) -> dict:
        """Items for a list of (index, seed) keys in one batched pass: {'normals': [B,K,3,c,c], 'family': [B,K],
        'level': [B,K]}, equal to default_collate of the items one by one."""
        keys = [self._key(k) for k in keys]
        if not keys:
            raise ValueError("get_batch needs at least one key")
        gens = [torch.Generator().manual_seed(_item_seed(i, s)) for i, s in keys]
        out = sample_crop_batch(self.source, self.family, self.cfg.crops_per_map, gens, self.cfg,
                                [torch.tensor([i]) for i, _ in keys])
        return {"normals": out["normals"], "family": out["family"], "level": out["level"]}

    def __getitem__(self, key) -> dict:
        return {k: v[0] for k, v in self.get_batch([key]).items()}


__all__ = ["SfsDataConfig", "SfsCropDataset", "split_name", "map_seed", "map_family", "area_downsample", "cache_path",
           "generate_maps", "load_maps", "rot90_normals", "mirror_normals", "augment", "sample_crops",
           "sample_crop_batch", "select_crops", "CropSource", "CACHE_VERSION"]


def main(argv=None) -> int:
    """Build the map caches ahead of training: python -m data.sfs [--tiny] [--root DIR] [--workers N]."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Generate and cache the procedural SfS normal maps.")
    ap.add_argument("--root", default=None, help="cache folder (default: SfsDataConfig.cache_dir)")
    ap.add_argument("--split", choices=["train", "heldout", "both"], default="both")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: min(cpu count, 16))")
    ap.add_argument("--tiny", action="store_true", help="the 8-map test configuration")
    ap.add_argument("--num-maps", type=int, default=None, help="override the number of training maps")
    args = ap.parse_args(argv)
    cfg = SfsDataConfig.tiny() if args.tiny else SfsDataConfig()
    if args.num_maps is not None:
        cfg.num_maps = args.num_maps
    for split in (["train", "heldout"] if args.split == "both" else [args.split]):
        t0 = time.perf_counter()
        data = load_maps(cfg, split, args.root, workers=args.workers)
        took = time.perf_counter() - t0
        print(f"{split}: {len(data['family'])} maps in {took:.1f} s -> {cache_path(cfg, split, args.root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
