"""Toy system: v-prediction diffusion on a 2-D Gaussian mixture. Seconds to train on CPU; used by the loop tests
and as the smallest worked example of the System contract (models/systems/base.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.core.config import OptimConfig, TrainConfig
from models.core.registry import register_system
from models.diffusion.samplers import ddim_sample
from models.diffusion.schedules import alpha_sigma, logsnr_cosine, logsnr_to_alpha_bar
from models.nets.toy_mlp import ToyMLP, ToyMLPConfig
from models.systems.base import System


@dataclass
class ToyDataConfig:
    num_points: int = 2048
    modes: int = 4  # Gaussians on a circle of radius 1
    std: float = 0.1


@dataclass
class ToyConfig:
    system: str = "toy"
    net: ToyMLPConfig = field(default_factory=ToyMLPConfig)
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    sample_steps: int = 20
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class MixtureDataset(torch.utils.data.Dataset):
    def __init__(self, cfg: ToyDataConfig, seed: int):
        rng = np.random.default_rng(seed)
        angle = 2 * math.pi * rng.integers(0, cfg.modes, cfg.num_points) / cfg.modes
        centers = np.stack([np.cos(angle), np.sin(angle)], 1)
        self.points = torch.from_numpy(centers + cfg.std * rng.standard_normal((cfg.num_points, 2))).float()

    def __len__(self):
        return len(self.points)

    def __getitem__(self, key):
        index, _seed = key
        return {"x0": self.points[index]}


@register_system("toy")
class ToySystem(System):
    Config = ToyConfig

    def __init__(self, cfg: ToyConfig):
        super().__init__(cfg)
        self.net = ToyMLP(cfg.net)

    def forward(self, batch):
        x0 = batch["x0"]
        logsnr = logsnr_cosine(torch.rand(x0.shape[0], device=x0.device)).float()
        alpha, sigma = (a[:, None] for a in alpha_sigma(logsnr))
        eps = torch.randn_like(x0)
        v_target = alpha * eps - sigma * x0
        loss = (self.net(alpha * x0 + sigma * eps, 0.125 * logsnr) - v_target).square().mean()
        return loss, {}

    def train_dataset(self, split="train", root=None):
        return MixtureDataset(self.cfg.data, seed=0 if split == "train" else 1)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        device = next(self.net.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.cfg.net.dim, generator=gen).to(device)
        t = torch.linspace(1.0, 0.0, self.cfg.sample_steps + 1)[:-1]
        logsnrs = logsnr_cosine(t).float()
        abars = [float(a) for a in logsnr_to_alpha_bar(logsnrs)] + [1.0]

        def model_fn(x_t, i):
            return self.net(x_t, torch.full((x_t.shape[0],), 0.125 * float(logsnrs[i]), device=device))

        return ddim_sample(model_fn, x, abars, prediction="v")

    def demo(self, out_dir: Path, step: int):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from data.io import atomic_write

        pts = self.sample(512).cpu().numpy()
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.scatter(pts[:, 0], pts[:, 1], s=2)
        ax.set(xlim=(-2, 2), ylim=(-2, 2), title=f"step {step}")
        path = Path(out_dir) / f"toy_s{step:08d}.png"
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        plt.close(fig)
        return [path]
