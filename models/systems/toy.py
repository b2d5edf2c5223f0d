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
from models.core.seeding import SampleRNG
from models.diffusion import alpha_sigma, ddim_sample, logsnr_cosine, logsnr_to_alpha_bar, q_sample, v_from_eps_x0
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
        """v-prediction loss (Salimans & Ho 2022) under the cosine logSNR schedule; noise drawn per sample."""
        x0 = batch["x0"]
        rng = self.rng(batch)
        logsnr = logsnr_cosine(rng.rand()).float()
        alpha, sigma = alpha_sigma(logsnr)
        eps = rng.randn(x0.shape[1])
        pred = self.net(q_sample(x0, eps, alpha, sigma), 0.125 * logsnr)
        return (pred - v_from_eps_x0(eps, x0, alpha, sigma)).square().mean(), {}

    def train_dataset(self, split="train", root=None):
        return MixtureDataset(self.cfg.data, seed=0 if split == "train" else 1)

    def example_inputs(self) -> dict:
        return {"n": 64}

    @torch.no_grad()
    def infer(self, inputs: dict, seeds: list[int], steps: int | None = None) -> dict[str, np.ndarray]:
        """{"n": points per seed} -> {"points": [S, n, 2]}; seed s always gives the same points."""
        n = int(inputs.get("n", 512))
        device = self.device
        x = SampleRNG(seeds).randn(n, self.cfg.net.dim).flatten(0, 1).to(device)
        t = torch.linspace(1.0, 0.0, (steps or self.cfg.sample_steps) + 1)[:-1]
        logsnrs = logsnr_cosine(t).float()
        abars = [float(a) for a in logsnr_to_alpha_bar(logsnrs)] + [1.0]

        def model_fn(x_t, i):
            return self.net(x_t, torch.full((x_t.shape[0],), 0.125 * float(logsnrs[i]), device=device))

        points = ddim_sample(model_fn, x, abars, prediction="v")
        return {"points": points.view(len(seeds), n, -1).cpu().numpy()}

    def demo(self, out_dir: Path, step: int):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from data.io import atomic_write

        pts = self.infer({"n": 512}, [0])["points"][0]
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.scatter(pts[:, 0], pts[:, 1], s=2)
        ax.set(xlim=(-2, 2), ylim=(-2, 2), title=f"step {step}")
        path = Path(out_dir) / f"toy_s{step:08d}.png"
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        plt.close(fig)
        return [path]
