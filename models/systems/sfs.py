"""Multistable shape from shading (Han, Zickler, Nishino, NeurIPS 2024): the System glue.

Training: 16x16 normal crops from data/sfs.py are rendered on the fly, each tile under its own random light
(uniform on the cap l_z >= cos 72°) and albedo U(0.5, 1); t ~ U{0..T-1} per tile; eps-prediction with the Huber
(smooth-L1, beta = 1) loss. Inference is the guided multiscale V-cycle of models/sfs/vcycle.py (`sample`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data.lambertian import render_random
from data.sfs import SfsCropDataset, SfsDataConfig
from models.core.config import OptimConfig, TrainConfig
from models.core.registry import register_system
from models.diffusion import cosine_alpha_bar, linear_alpha_bar, q_sample
from models.nets.sfs_patch_unet import PatchUNet, PatchUNetConfig
from models.systems.base import System

DEMO_SEEDS = (0, 1, 2, 3)


@dataclass
class SfsDiffusionConfig:
    timesteps: int = 300  # T, as in the reference code
    schedule: str = "cosine"  # "cosine" (the reference; its "linear" option silently gave cosine too) | "linear"
    loss: str = "huber"  # "huber" (smooth-L1, beta 1; reference default) | "l1" | "l2"
    huber_beta: float = 1.0


@dataclass
class SfsConfig:
    """Rendering ranges (albedo, min l_z, ambient, noise) live in `data` (SfsDataConfig), next to the crops they shade."""

    system: str = "sfs"
    net: PatchUNetConfig = field(default_factory=PatchUNetConfig)
    diffusion: SfsDiffusionConfig = field(default_factory=SfsDiffusionConfig)
    data: SfsDataConfig = field(default_factory=SfsDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def alpha_bar_table(cfg: SfsDiffusionConfig) -> torch.Tensor:
    """float64 [T] cumulative alpha of the configured schedule."""
    if cfg.schedule == "cosine":
        return cosine_alpha_bar(cfg.timesteps)
    if cfg.schedule == "linear":
        return linear_alpha_bar(cfg.timesteps)
    raise ValueError(f"unknown diffusion.schedule {cfg.schedule!r}; expected 'cosine' or 'linear'")


@register_system("sfs")
class SfsSystem(System):
    Config = SfsConfig

    def __init__(self, cfg: SfsConfig):
        super().__init__(cfg)
        if cfg.diffusion.loss not in ("huber", "l1", "l2"):
            raise ValueError(f"unknown diffusion.loss {cfg.diffusion.loss!r}")
        self.net = PatchUNet(cfg.net)
        self.register_buffer("alpha_bar", alpha_bar_table(cfg.diffusion).float(), persistent=False)

    # -- training -------------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch["normals"]: [B, K, 3, c, c] crops (or [B, 3, c, c]); every random draw comes from the item's seed."""
        x0 = batch["normals"].float()
        x0 = x0 if x0.dim() == 5 else x0[:, None]
        k, c = x0.shape[1], x0.shape[-1]
        rng = self.rng(batch)
        d = self.cfg.data
        image = torch.cat([render_random(x0[i], gen, d.min_lz, tuple(d.albedo_range), tuple(d.ambient_range),
                                         tuple(d.noise_range))[0] for i, gen in enumerate(rng.gens)])
        t = rng.randint(self.cfg.diffusion.timesteps, k).flatten()
        eps = rng.randn(k, 3, c, c).flatten(0, 1)
        x0 = x0.flatten(0, 1)
        ab = self.alpha_bar[t]
        pred = self.net(q_sample(x0, eps, ab.sqrt(), (1 - ab).sqrt()), t, image).float()
        kind = self.cfg.diffusion.loss
        if kind == "huber":
            per = F.smooth_l1_loss(pred, eps, beta=self.cfg.diffusion.huber_beta, reduction="none")
        elif kind == "l1":
            per = (pred - eps).abs()
        else:
            per = (pred - eps).square()
        per_tile = per.flatten(1).mean(1)
        loss = per_tile.mean()
        with torch.no_grad():  # masked means: no host sync inside the step
            lo = (t < self.cfg.diffusion.timesteps // 3).float()
            hi = (t >= 2 * self.cfg.diffusion.timesteps // 3).float()
            logs = {
                "mse": (pred - eps).square().mean(),
                "loss_t_low": (per_tile * lo).sum() / lo.sum().clamp_min(1),
                "loss_t_high": (per_tile * hi).sum() / hi.sum().clamp_min(1),
                "fg_frac": (x0.abs().sum(1) > 0).float().mean(),
            }
        return loss, logs

    def train_dataset(self, split: str = "train", root: str | Path | None = None) -> torch.utils.data.Dataset:
        """Crops of the procedural maps of data/sfs.py ("train" or "heldout"); built and cached on first use."""
        return SfsCropDataset(self.cfg.data, split, root)

    # -- inference ------------------------------------------------------------------------------------------------
    def sample(self, image, seeds, schedule="fast", mask=None, device=None, precision: str = "fp32",
               progress: bool = False):
        """Guided multiscale sampling of one square shading image [H, W] in [0, 1]; returns a VCycleResult."""
        from models.sfs.vcycle import Schedule, load_schedule, run_vcycle

        sched = schedule if isinstance(schedule, Schedule) else load_schedule(schedule)
        device = device or next(self.net.parameters()).device
        image = torch.as_tensor(np.asarray(image, np.float32))
        mask = None if mask is None else torch.as_tensor(np.asarray(mask, np.float32))
        was_training = self.net.training
        self.net.eval()
        try:
            return run_vcycle(self.net, image, list(seeds), sched, mask, device, precision, progress)
        finally:
            self.net.train(was_training)

    def example_inputs(self) -> dict:
        """A shaded sphere at 32 px: the classic convex/concave ambiguous stimulus."""
        from data.lambertian import render_lambertian_np

        normals = sphere_normals(32)
        return {"image": render_lambertian_np(normals, [-0.3, 0.4, 0.866])}

    def infer(self, inputs: dict, seeds: list[int], schedule="fast", precision: str = "fp32",
              progress: bool = False) -> dict[str, np.ndarray]:
        """{"image": [H, W] in [0, 1] (square), "mask": optional [H, W]} -> {"normals": [S, 3, h, w]} (x right,
        y up, z to the viewer) at the schedule's final resolution, plus the fused map when the schedule fuses."""
        res = self.sample(inputs["image"], seeds, schedule, inputs.get("mask"), precision=precision, progress=progress)
        return {"normals": res.normals.cpu().numpy()}

    def demo(self, out_dir: Path, step: int) -> list[Path]:
        """Fast-preset samples (4 seeds) of the ambiguous sphere -> one PNG row: image + normals."""
        from data.io import write_png

        image = self.example_inputs()["image"]
        normals = torch.from_numpy(self.infer({"image": image}, list(DEMO_SEEDS))["normals"])
        size = normals.shape[-1]
        img = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=(size, size),
                                              mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
        panels = [img[..., None].expand(size, size, 3).numpy()]
        panels += [((1 + n.permute(1, 2, 0)) / 2).clamp(0, 1).numpy() for n in normals]
        gap = np.ones((size, 2, 3), np.float32)
        row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
        row = row.repeat(2, 0).repeat(2, 1)  # the fast preset ends at 64 px; enlarge for viewing
        return [write_png(Path(out_dir) / f"sfs_demo_s{step:08d}.png", row)]


def sphere_normals(size: int) -> np.ndarray:
    """[3, size, size] normals of a sphere filling the frame (0 outside)."""
    v, u = np.meshgrid(np.linspace(1, -1, size), np.linspace(-1, 1, size), indexing="ij")
    r2 = u * u + v * v
    inside = r2 < 1
    return (np.stack([u, v, np.sqrt(np.clip(1 - r2, 0, 1))]) * inside).astype(np.float32)


def load_stimuli(folder: str | Path) -> dict:
    """stimuli.json of a test_data folder: name -> entry with absolute paths (image, normals, normals_flip, mask)."""
    folder = Path(folder)
    meta = json.loads((folder / "stimuli.json").read_text())["stimuli"]
    out = {}
    for name, entry in meta.items():
        e = dict(entry)
        for key in ("image", "normals", "normals_flip", "mask"):
            if key in e:
                e[key] = str(folder / e[key])
        out[name] = e
    return out
