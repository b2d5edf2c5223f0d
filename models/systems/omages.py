"""Omages generators (Yan et al. 2024, "An Object is Worth 64x64 Pixels"): `omages_n2g`, a class-conditional
generator of geometry (xyz + occupancy), and `omages_g2m`, a material generator (albedo RGB, metallic, roughness)
conditioned on a geometry image concatenated to its input channels and on the class label.

Both use the IDDPM recipe (Nichol & Dhariwal 2021): T = 1000 squaredcos_cap_v2 schedule, eps prediction (or, as an
option for small models, v prediction) with a learned-range variance, the hybrid loss (MSE + VLB with the mean
detached), label dropout for classifier-free guidance, and sampling on a uniformly respaced chain (ancestral DDPM or
DDIM), x0 clipped to [-1, 1].
Both build, by `arch`, a DiT (the original's N2G network; for G2M with the geometry concatenated, a deviation, see
docs/omages.md) or the Imagen-style UNet (Saharia et al. 2022) of the original's G2M, models/nets/omages_unet.py
(for a small N2G on a CPU, convolutions learn the smooth charts faster); both output the mean (eps or v) and the
variance interpolation, so the diffusion code is shared."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.core.cli import UserError
from models.core.config import OptimConfig, TrainConfig
from models.core.registry import register_system
from models.core.seeding import SampleRNG
from models.diffusion.discrete import ddpm_step, respace, squaredcos_cap_v2_betas, vlb_term
from models.diffusion.guidance import cfg_combine, drop_labels
from models.diffusion.parameterization import make_target
from models.diffusion.samplers import ddim_step
from models.diffusion.schedules import betas_to_alpha_bar
from models.nets.omages_dit import OmagesDiT, OmagesDiTConfig
from models.nets.omages_unet import OmagesUNet, OmagesUNetConfig
from models.omages import format as fmt
from models.systems.base import System


@dataclass
class OmagesDataConfig:
    root: str = ""  # folder written by scripts/omages_dataset.py (<split>_omages64.npy); --data-root overrides
    synthetic: int = 0  # > 0: a built-in set of this many simple shapes instead of a folder (smoke tests only)
    flip: bool = False
    class_names: list[str] = field(default_factory=list)  # filled from the dataset records at training time


@dataclass
class OmagesDiffusionConfig:
    timesteps: int = 1000
    label_dropout: float = 0.1
    vlb_weight: float = 1.0  # hybrid loss lambda (IDDPM uses 0.001 with a rescaled VLB; the original omages 1.0)
    sample_steps: int = 250
    cfg_scale: float = 4.0
    # "eps" as the original; "v" (Salimans & Ho 2022, Sec. 4) weights the MSE by 1/alpha^2 relative to eps, which
    # gives the high-noise steps that set the chart layout a usable gradient: a small model learns layouts far faster
    prediction: str = "eps"


@dataclass
class OmagesConfig:
    system: str = "omages_n2g"
    arch: str = "dit"  # "dit": `net` is built; "unet": `unet` is built
    net: OmagesDiTConfig = field(default_factory=OmagesDiTConfig)
    unet: OmagesUNetConfig = field(default_factory=OmagesUNetConfig)
    diffusion: OmagesDiffusionConfig = field(default_factory=OmagesDiffusionConfig)
    data: OmagesDataConfig = field(default_factory=OmagesDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class SyntheticOmages(torch.utils.data.Dataset):
    """Tiny deterministic stand-in: per class a disc-shaped chart with a class-dependent radius and colour."""

    def __init__(self, n: int, num_classes: int, res: int = 64):
        self.n, self.k, self.res = n, max(1, num_classes), res
        self.labels = torch.arange(n) % self.k

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        index = int(key[0] if isinstance(key, (tuple, list)) else key)
        c = int(self.labels[index])
        u = torch.linspace(-1, 1, self.res)
        yy, xx = torch.meshgrid(u, u, indexing="ij")
        occ = (xx ** 2 + yy ** 2 < (0.3 + 0.6 * (c + 1) / self.k) ** 2).float()
        x = -torch.ones(fmt.N_CHANNELS, self.res, self.res)
        vals = torch.stack([xx, yy, 0.5 * xx * yy] + [torch.full_like(xx, 0.2 * c - 0.5)] * 8)
        x[0:3], x[3] = torch.where(occ > 0, vals[:3], x[0:3]), 2 * occ - 1
        x[4:] = torch.where(occ > 0, vals[3:], x[4:])
        return {"omage": x, "label": torch.tensor(c), "index": torch.tensor(index)}


class _OmagesSystem(System):
    Config = OmagesConfig
    target: slice  # channels generated
    cond: slice | None = None  # channels given as the condition image
    archs: tuple[str, ...] = ("dit",)

    def __init__(self, cfg: OmagesConfig):
        super().__init__(cfg)
        if cfg.arch not in self.archs:
            raise UserError(f"{self.name}: arch must be one of {', '.join(self.archs)}, got {cfg.arch!r}")
        net = getattr(cfg, self.net_key)
        n = self.target.stop - self.target.start
        c = 0 if self.cond is None else self.cond.stop - self.cond.start
        if cfg.diffusion.prediction not in ("eps", "v"):
            raise UserError(f"{self.name}: diffusion.prediction must be 'eps' or 'v', got {cfg.diffusion.prediction!r}")
        if net.in_ch != n or net.out_ch != n or net.cond_ch != c or not net.learn_sigma:
            raise UserError(f"{self.name}: {self.net_key} needs in_ch = out_ch = {n}, "
                            f"cond_ch = {c}, learn_sigma = true")
        self.net = OmagesUNet(net) if cfg.arch == "unet" else OmagesDiT(net)
        self.register_buffer("betas", squaredcos_cap_v2_betas(cfg.diffusion.timesteps), persistent=False)

    @property
    def net_key(self) -> str:
        """The config section of the network built: `net` (DiT) or `unet`."""
        return "unet" if self.cfg.arch == "unet" else "net"

    def export_config(self) -> dict:
        """Without the section of the network that is not built (a DiT export has no `unet`, a UNet export no `net`)."""
        out = super().export_config()
        out.pop("net" if self.net_key == "unet" else "unet")
        return out

    @property
    def class_names(self) -> list[str]:
        names = list(self.cfg.data.class_names)
        return names or [f"class{i}" for i in range(self.net.cfg.num_classes)]

    # ---------------------------------------------------------------------------------------------- training
    def train_dataset(self, split="train", root=None):
        d = self.cfg.data
        if d.synthetic:
            ds = SyntheticOmages(d.synthetic, self.net.cfg.num_classes, self.net.cfg.res)
            d.class_names = [f"class{i}" for i in range(ds.k)]
            return ds
        from models.omages.dataset import OmageDataset

        folder = Path(root or d.root)
        path = folder / f"{split}_omages64.npy"
        if not path.is_file():
            raise UserError(f"no {split} set at {path} (make one with scripts/omages_dataset.py, pass --data-root)")
        ds = OmageDataset(path, flip=d.flip)
        names: dict[int, str] = {int(r.get("class_id", 0)): str(r.get("class", "")) for r in ds.records}
        if ds.num_classes > self.net.cfg.num_classes:
            raise UserError(f"{path} has {ds.num_classes} classes but {self.net_key}.num_classes = "
                            f"{self.net.cfg.num_classes}")
        d.class_names = [names.get(i, f"class{i}") for i in range(ds.num_classes)]
        return ds

    def forward(self, batch):
        """Hybrid loss of IDDPM Sec. 3.1: MSE of the eps (or v) output over all pixels, background included, plus
        L_vlb for the variance."""
        x = batch["omage"]
        x0 = x[:, self.target]
        cond = None if self.cond is None else x[:, self.cond]
        rng = self.rng(batch)
        dc = self.cfg.diffusion
        t = rng.randint(dc.timesteps).to(x.device)
        eps = rng.randn(*x0.shape[1:]).to(x0)
        y = drop_labels(batch["label"].long(), dc.label_dropout, self.net.null_label, rng.rand())
        ab = betas_to_alpha_bar(self.betas).to(x.device)[t].float().view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        out = self.net(x_t, t, y, cond).float()
        n = x0.shape[1]
        target = make_target(x0, eps, ab.sqrt(), (1 - ab).sqrt(), dc.prediction)
        mse = (out[:, :n] - target).square().flatten(1).mean(1).mean()
        vlb = vlb_term(x0.float(), x_t.float(), t, out[:, :n], out[:, n:], self.betas, dc.prediction).mean()
        return mse + dc.vlb_weight * vlb, {"mse": mse.detach(), "vlb": vlb.detach()}

    # --------------------------------------------------------------------------------------------- inference
    def _labels(self, inputs: dict, n_seeds: int) -> torch.Tensor:
        if "labels" not in inputs:
            raise UserError(f"{self.name}: inputs need 'labels' (class ids 0..{len(self.class_names) - 1})")
        y = torch.as_tensor(np.asarray(inputs["labels"]), dtype=torch.long).reshape(-1)
        if y.numel() == 1:  # one label for every seed
            y = y.expand(n_seeds)
        if y.numel() != n_seeds:
            raise UserError(f"{self.name}: {y.numel()} labels for {n_seeds} seeds (need one label per seed, or one)")
        bad = [int(v) for v in y if not 0 <= int(v) < len(self.class_names)]
        if bad:
            raise UserError(f"{self.name}: unknown label id {bad[0]} (known: 0..{len(self.class_names) - 1} = "
                            f"{', '.join(self.class_names)})")
        return y

    @torch.no_grad()
    def _sample(self, y, cond, seeds, steps, cfg_scale, sampler):
        if cfg_scale is None or not cfg_scale >= 0:
            raise UserError(f"{self.name}: cfg_scale must be >= 0, got {cfg_scale}")
        if sampler not in ("ddpm", "ddim"):
            raise UserError(f"{self.name}: sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        T = self.cfg.diffusion.timesteps
        if not 1 <= int(steps) <= T:
            raise UserError(f"{self.name}: steps must be in 1..{T}, got {steps}")
        dev = self.device
        idx, betas = respace(self.betas.cpu(), int(steps))
        abar = betas_to_alpha_bar(betas).tolist()
        n, prediction = self.net.cfg.out_ch, self.cfg.diffusion.prediction
        rng = SampleRNG(seeds)
        x = rng.randn(n, self.net.cfg.res, self.net.cfg.res).to(dev)
        y, null = y.to(dev), torch.full_like(y, self.net.null_label).to(dev)
        cond = None if cond is None else cond.to(dev)
        for k in reversed(range(len(idx))):
            t = torch.full((x.shape[0],), idx[k], device=dev, dtype=torch.long)
            if cfg_scale == 1.0:
                out = self.net(x, t, y, cond).float()
            else:
                both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]),
                                None if cond is None else torch.cat([cond, cond])).float()
                out = cfg_combine(*both.chunk(2), cfg_scale, eps_channels=n)
            pred, v = out[:, :n], out[:, n:]
            if sampler == "ddpm":
                noise = rng.randn(*x.shape[1:]).to(dev) if k > 0 else None
                x, _ = ddpm_step(x, pred, v, k, betas.to(dev), noise, clip_x0=True, prediction=prediction)
            else:
                x, _, _ = ddim_step(x, pred, abar[k], abar[k - 1] if k > 0 else 1.0, prediction, clip_x0=1.0)
        return x.clamp(-1, 1).float().cpu().numpy()

    def demo(self, out_dir: Path, step: int):
        return []


@register_system("omages_n2g")
class OmagesN2G(_OmagesSystem):
    """Class label -> geometry image (4 channels: xyz + occupancy), model space [-1, 1]."""
    target = fmt.GEOMETRY
    archs = ("dit", "unet")

    def example_inputs(self) -> dict:
        return {"labels": [len(self.class_names) - 1]}

    def infer(self, inputs: dict, seeds: list[int], steps: int | None = None, cfg_scale: float | None = None,
              sampler: str = "ddpm") -> dict[str, np.ndarray]:
        dc = self.cfg.diffusion
        y = self._labels(inputs, len(seeds))
        return {"geometry": self._sample(y, None, seeds, steps or dc.sample_steps,
                                         dc.cfg_scale if cfg_scale is None else cfg_scale, sampler)}


@register_system("omages_g2m")
class OmagesG2M(_OmagesSystem):
    """Geometry image (4 channels) + class label -> material image (albedo RGB, metallic, roughness)."""
    target, cond = fmt.MATERIAL, fmt.GEOMETRY
    archs = ("dit", "unet")

    def example_inputs(self) -> dict:
        item = SyntheticOmages(1, len(self.class_names), self.net.cfg.res)[0]
        return {"geometry": item["omage"][None, fmt.GEOMETRY].numpy(), "labels": [int(item["label"])]}

    def infer(self, inputs: dict, seeds: list[int], steps: int | None = None, cfg_scale: float | None = None,
              sampler: str = "ddpm") -> dict[str, np.ndarray]:
        dc = self.cfg.diffusion
        y = self._labels(inputs, len(seeds))
        if "geometry" not in inputs:
            raise UserError(f"{self.name}: inputs need 'geometry' (N, 4, {self.net.cfg.res}, {self.net.cfg.res})")
        g = torch.as_tensor(np.asarray(inputs["geometry"], dtype=np.float32))
        r = self.net.cfg.res
        if g.ndim == 4 and g.shape[0] == 1:  # one geometry for every seed
            g = g.expand(len(seeds), -1, -1, -1)
        if tuple(g.shape) != (len(seeds), 4, r, r):
            raise UserError(f"{self.name}: geometry must have shape ({len(seeds)}, 4, {r}, {r}), got {tuple(g.shape)} (or one)")
        return {"material": self._sample(y, g, seeds, steps or dc.sample_steps,
                                         1.0 if cfg_scale is None else cfg_scale, sampler)}
