"""DiffMotion system (Han, Nishino, Zickler, NeurIPS 2025): UViT3D-Mixer wired to continuous-time v-prediction training and DDIM sampling.

Training: one t ~ U[0, 1) per clip shared by its 3 frames, shifted-cosine logSNR (shift 1/8), eps clamped to
+-20, z = alpha x0 + sigma eps, the net gets 0.125 * logSNR and predicts v; loss = group-weighted mean of
sigmoid(-1 - logSNR) (eps_hat - eps)^2 over normals / albedo / materials (0.4 / 0.4 / 0.2). The diffusion maths runs
in fp32 outside the network's autocast.
Sampling: 50 DDIM steps (eta 0) over a 300-entry cosine table, faithful sampling_shift = 1 (no shift); the
initial noise of each sample comes from its own seed, drawn on the CPU (device-independent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from data.motion import MotionDataConfig
from models.core.config import OptimConfig, TrainConfig
from models.core.registry import register_system
from models.core.seeding import SampleRNG
from models.diffmotion.channels import GROUP_SLICES
from models.diffusion.losses import loss_weight
from models.diffusion import eps_from_v, q_sample
from models.diffusion.samplers import ddim_sample
from models.diffusion.schedules import (abar_sequence, alpha_sigma, ddim_timesteps_floor, discrete_logsnr_table,
                                        logsnr_cosine, logsnr_to_alpha_bar)
from models.nets.uvit3d import UViT3D, UViT3DConfig
from models.systems.base import System

GROUPS = tuple(GROUP_SLICES.items())  # (name, channel slice) of normal, albedo, material


@dataclass
class DiffMotionDiffusionConfig:
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0
    shift: float = 0.125  # training schedule shift (32/256)
    noise_scale: float = 0.125  # the net's noise input is noise_scale * logSNR
    weighting: str = "sigmoid"  # eps-space weight sigmoid(bias - logSNR)
    weight_bias: float = -1.0
    group_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)  # normal, albedo, material
    eps_clamp: float = 20.0
    noise_mode: str = "shared"  # per-frame levels: "shared" (faithful) or "independent"
    sampling_table: int = 300
    sampling_steps: int = 50
    sampling_shift: float = 1.0  # faithful: the original drops its intended 0.125 shift at sampling


@dataclass
class DiffMotionDemoConfig:
    seeds: tuple[int, ...] = (0, 1)
    steps: int = 50
    clip: int = 0  # index of the held-out clip


@dataclass
class DiffMotionConfig:
    system: str = "diffmotion"
    net: UViT3DConfig = field(default_factory=UViT3DConfig)
    diffusion: DiffMotionDiffusionConfig = field(default_factory=DiffMotionDiffusionConfig)
    data: MotionDataConfig = field(default_factory=MotionDataConfig)  # incl. augmentations: static 0.2, reverse 0.5
    demo: DiffMotionDemoConfig = field(default_factory=DiffMotionDemoConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.01))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=31_250, batch_size=64))


@register_system("diffmotion")
class DiffMotionSystem(System):
    Config = DiffMotionConfig

    def __init__(self, cfg: DiffMotionConfig):
        super().__init__(cfg)
        d = cfg.diffusion
        if d.weighting not in ("sigmoid", "uniform", "min_snr"):
            raise ValueError(f"diffusion.weighting: unknown '{d.weighting}'")
        if d.noise_mode not in ("shared", "independent"):
            raise ValueError(f"diffusion.noise_mode: use 'shared' or 'independent', got '{d.noise_mode}'")
        self.net = UViT3D(cfg.net)

    # ------------------------------------------------------------------------------------------------ training
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Continuous-time v-prediction loss written in eps space; noise drawn per sample from batch["seed"]."""
        d = self.cfg.diffusion
        x0, cond = batch["target"].float(), batch["frames"].float()
        bsz, frames = x0.shape[:2]
        rng = self.rng(batch)
        with torch.autocast(x0.device.type, enabled=False):
            t = rng.rand(1 if d.noise_mode == "shared" else frames).expand(bsz, frames)
            lam = logsnr_cosine(t, d.logsnr_min, d.logsnr_max, d.shift).float()  # [B, T]
            alpha, sigma = alpha_sigma(lam)
            eps = rng.randn(*x0.shape[1:]).clamp(-d.eps_clamp, d.eps_clamp)
            z = q_sample(x0, eps, alpha, sigma)
        v_hat = self.net(z, d.noise_scale * lam, cond)  # under the caller's autocast, if any
        with torch.autocast(x0.device.type, enabled=False):
            eps_hat = eps_from_v(z, v_hat.float(), alpha, sigma)
            w = loss_weight(d.weighting, lam, target="eps", bias=d.weight_bias).float()[..., None, None, None]
            err = w * (eps_hat - eps).square()
            logs = {f"loss_{name}": err[:, :, sl].mean() for name, sl in GROUPS}
            loss = sum(gw * logs[f"loss_{name}"] for gw, (name, _) in zip(d.group_weights, GROUPS))
        return loss, {k: v.detach() for k, v in logs.items()}

    def train_dataset(self, split: str = "train", root: str | Path | None = None):
        """Motion clips of `split` ("train" or held out: "val"/"test"/"held_out"); items keyed by (index, seed), the
        seed drives the augmentations (data.aug_static, data.aug_reverse; off for held-out splits)."""
        from data.motion import MotionDataset

        return MotionDataset(self.cfg.data, split=split, root=root)

    # ------------------------------------------------------------------------------------------------ sampling
    def sampling_schedule(self, steps: int | None = None, sampling_shift: float | None = None):
        """(logSNR per network call [steps], alpha_bar levels [steps + 1] ending at 1.0) of the DDIM schedule."""
        d = self.cfg.diffusion
        shift = d.sampling_shift if sampling_shift is None else sampling_shift
        table = discrete_logsnr_table(d.sampling_table, d.logsnr_min, d.logsnr_max, shift=shift)
        idx = ddim_timesteps_floor(d.sampling_table, steps or d.sampling_steps)
        abars = abar_sequence(logsnr_to_alpha_bar(table), idx)
        return [float(table[k]) for k in idx[:-1]], abars

    @torch.no_grad()
    def sample(self, frames: torch.Tensor, seeds: list[int], steps: int | None = None, progress: bool = False,
               sampling_shift: float | None = None, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """DDIM samples [B, 3, 9, H, W] in [-1, 1]-space for conditioning frames [B, 3, 3, H, W], one seed each.

        Sample b depends only on (frames[b], seeds[b]), not on the batch it is drawn in (up to kernel numerics).
        """
        d = self.cfg.diffusion
        device = next(self.net.parameters()).device
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, 3, 3, H, W], got {tuple(frames.shape)}")
        if len(seeds) != frames.shape[0]:
            raise ValueError(f"need one seed per clip: {frames.shape[0]} clips, {len(seeds)} seeds")
        bsz, t, _, hgt, wid = frames.shape
        cond = frames.to(device=device, dtype=torch.float32)
        x = SampleRNG(seeds).randn(t, self.cfg.net.out_channels, hgt, wid)  # on the CPU: same noise on any device
        x = x.clamp(-d.eps_clamp, d.eps_clamp).to(device)
        lams, abars = self.sampling_schedule(steps, sampling_shift)

        def model_fn(x_t, i):
            level = torch.full((bsz, t), d.noise_scale * lams[i], device=device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                return self.net(x_t, level, cond).float()

        was_training = self.net.training
        self.net.eval()
        try:
            return ddim_sample(model_fn, x, abars, prediction="v", progress=progress)
        finally:
            self.net.train(was_training)

    def example_inputs(self) -> dict:
        """A static grey clip at the training resolution (valid, if dull)."""
        res = self.cfg.data.resolution
        return {"frames": torch.zeros(3, 3, res, res)}

    def infer(self, inputs: dict, seeds: list[int], steps: int | None = None, sampling_shift: float | None = None,
              precision: str = "fp32", batch: int = 4, progress: bool = False) -> dict[str, "np.ndarray"]:
        """{"frames": [3, 3, H, W] in [-1, 1]} -> {"normal", "albedo", "material": [S, 3 frames, 3, H, W] in [-1, 1]}."""
        from models.core.cli import autocast_dtype

        frames = torch.as_tensor(inputs["frames"]).float()
        outs = []
        for i in range(0, len(seeds), batch):
            chunk = list(seeds[i:i + batch])
            outs.append(self.sample(frames[None].expand(len(chunk), -1, -1, -1, -1), chunk, steps, progress,
                                    sampling_shift, autocast_dtype(precision)).float().cpu())
        pred = torch.cat(outs)
        return {name: pred[:, :, sl].numpy() for name, sl in GROUPS}

    def demo(self, out_dir: Path, step: int) -> list[Path]:
        """One held-out clip, the configured seeds -> input strip above one grid per seed, as one PNG."""
        import numpy as np

        from data.io import write_png
        from models.diffmotion.grid import input_strip, prediction_grid

        clip = self._demo_clip()
        if clip is None:
            return []
        seeds = list(self.cfg.demo.seeds)
        device = next(self.net.parameters()).device
        frames = clip[None].expand(len(seeds), -1, -1, -1, -1).to(device)
        preds = self.sample(frames, seeds, steps=self.cfg.demo.steps)
        grids = [prediction_grid(p) for p in preds]
        picture = np.concatenate([input_strip(clip)] + grids, axis=0)
        return [write_png(Path(out_dir) / f"diffmotion_s{step:08d}.png", picture)]

    def _demo_clip(self) -> torch.Tensor | None:
        """Conditioning frames [3, 3, H, W] of the held-out clip (val split), or None when there is no data."""
        try:
            ds = self.train_dataset("val")
        except (FileNotFoundError, ValueError):
            return None
        return ds[(self.cfg.demo.clip % len(ds), 0)]["frames"]
