"""Neural fields of SfD's geometry stage: the shared canonical SDF (an IDR/NeuS MLP with positional encoding, or a
pure-PyTorch tri-plane), the proxy-colour network and the proxy instance classifier (Cheng et al., NeurIPS 2023,
Sec. 3.2; the SDF MLP follows IDR, Yariv et al. 2020, with NeuS's sphere initialisation, Wang et al. 2021).

Everything here works in the canonical frame of the one shared object (roughly inside the unit sphere).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class WNLinear(nn.Module):
    """Linear layer with weight normalisation (Salimans & Kingma 2016): W = g * v / |v| per output row. Plain
    parameters (no parametrisation hooks), so state dicts stay simple and load on the meta device."""

    def __init__(self, d_in: int, d_out: int, weight_norm: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.weight_norm = weight_norm
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.g = nn.Parameter(torch.ones(d_out)) if weight_norm else None

    def reset_g(self):
        if self.g is not None:
            with torch.no_grad():
                self.g.copy_(self.weight.norm(dim=1))

    def forward(self, x):
        w = self.weight
        if self.g is not None:
            w = self.g[:, None] * w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return F.linear(x, w, self.bias)


class PosEnc(nn.Module):
    """NeRF positional encoding [x, sin(2^k x), cos(2^k x)], k < L, with BARF's coarse-to-fine window
    (Lin et al., ICCV 2021, eq. 14): band k is weighted by (1 - cos(pi * clamp(L p - k, 0, 1))) / 2 at progress p.

    `buggy_axis` reproduces the original SfD code, which broadcast the window over the sin/cos x xyz axis instead
    of the frequency axis (it only has the right size because 2 * 3 = 6 = L)."""

    def __init__(self, n_freq: int, include_input: bool = True, buggy_axis: bool = False):
        super().__init__()
        self.n_freq, self.include_input, self.buggy_axis = n_freq, include_input, buggy_axis
        self.out_dim = 3 * (2 * n_freq + int(include_input))

    def window(self, progress: float | None, device) -> torch.Tensor:
        k = torch.arange(self.n_freq, dtype=torch.float32, device=device)
        if progress is None:
            return torch.ones_like(k)
        return (1 - torch.cos(math.pi * (self.n_freq * progress - k).clamp(0, 1))) / 2

    def forward(self, x: torch.Tensor, progress: float | None = None) -> torch.Tensor:
        if self.n_freq == 0:
            return x
        freqs = 2.0 ** torch.arange(self.n_freq, dtype=x.dtype, device=x.device)
        xb = x[..., None, :] * freqs[:, None]                              # ... L 3
        enc = torch.stack([torch.sin(xb), torch.cos(xb)], -2)              # ... L 2 3
        w = self.window(progress, x.device).to(x.dtype)
        if self.buggy_axis and progress is not None and self.n_freq == 6:
            enc = enc * w.view(2, 3)                                       # over the (sin/cos, xyz) axes
        else:
            enc = enc * w[:, None, None]
        enc = enc.flatten(-3)
        return torch.cat([x, enc], -1) if self.include_input else enc


@dataclass
class SDFConfig:
    kind: str = "mlp"          # "mlp" (positional encoding) | "triplane"
    multires: int = 6          # PE frequencies L
    hidden: int = 512
    layers: int = 8
    skip: int = 4              # skip connection at this layer
    feature: int = 256         # feature vector size
    init_radius: float = 0.6   # sphere initialisation (canonical units)
    weight_norm: bool = True
    c2f_start: int = 20000     # coarse-to-fine: progress = clip((iter - start) / window, 0, 1)
    c2f_window: int = 30000
    progressive: bool = True
    c2f_buggy_axis: bool = False
    grid: int = 64             # tri-plane resolution
    grid_channels: int = 24


class TriPlane(nn.Module):
    """Three axis-aligned feature planes (xy, xz, yz) sampled bilinearly in pure PyTorch (no custom CUDA), as in
    PET-NeuS (Wang et al., CVPR 2023) without its attention refinement. Coordinates in [-1, 1]^3."""

    def __init__(self, res: int, channels: int):
        super().__init__()
        self.planes = nn.Parameter(1e-2 * torch.randn(3, channels, res, res))
        self.out_dim = 3 * channels

    def forward(self, x):
        pts = x.reshape(1, -1, 1, 3).clamp(-1, 1)
        feats = []
        for i, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            grid = pts[..., [a, b]]
            feats.append(F.grid_sample(self.planes[i:i + 1].to(x.dtype), grid, mode="bilinear", align_corners=True))
        return torch.cat(feats, 1)[0, :, :, 0].T.reshape(*x.shape[:-1], -1)


class SDFNet(nn.Module):
    """f(x_canon) -> (sdf, feature). IDR geometric initialisation (Atzmon & Lipman, SAL 2020): the network starts as the
    SDF of a sphere of radius `init_radius`; the skip layer concatenates the encoded input (divided by sqrt 2)."""

    def __init__(self, cfg: SDFConfig):
        super().__init__()
        self.cfg = cfg
        self.enc = PosEnc(cfg.multires, buggy_axis=cfg.c2f_buggy_axis)
        self.grid = TriPlane(cfg.grid, cfg.grid_channels) if cfg.kind == "triplane" else None
        d_in = self.enc.out_dim + (self.grid.out_dim if self.grid is not None else 0)
        self.d_in = d_in
        dims = [d_in] + [cfg.hidden] * cfg.layers + [1 + cfg.feature]
        self.lins = nn.ModuleList()
        for i in range(len(dims) - 1):
            out = dims[i + 1] - d_in if i + 1 == cfg.skip else dims[i + 1]
            self.lins.append(WNLinear(dims[i], out, cfg.weight_norm))
        self._geometric_init(dims)
        self.act = nn.Softplus(beta=100)

    def _geometric_init(self, dims):
        n = len(self.lins)
        with torch.no_grad():
            for i, lin in enumerate(self.lins):
                out_dim, in_dim = lin.weight.shape
                if i == n - 1:
                    lin.weight.normal_(math.sqrt(math.pi) / math.sqrt(in_dim), 1e-4)
                    lin.bias.fill_(-self.cfg.init_radius)
                else:
                    lin.weight.normal_(0.0, math.sqrt(2) / math.sqrt(out_dim))
                    lin.bias.zero_()
                    if i == 0:
                        lin.weight[:, 3:] = 0.0           # only raw xyz at the start
                    elif i == self.cfg.skip:
                        lin.weight[:, -(self.d_in - 3):] = 0.0  # encoding part of the skip input
                lin.reset_g()

    def encode(self, x, progress):
        h = self.enc(x, progress if self.cfg.progressive else None)
        if self.grid is not None:
            h = torch.cat([h, self.grid(x)], -1)
        return h

    def forward(self, x, progress: float | None = None):
        inp = self.encode(x, progress)
        h = inp
        for i, lin in enumerate(self.lins):
            if i == self.cfg.skip:
                h = torch.cat([h, inp], -1) / math.sqrt(2)
            h = lin(h)
            if i < len(self.lins) - 1:
                h = self.act(h)
        return h[..., :1], h[..., 1:]

    def sdf(self, x, progress=None):
        return self.forward(x, progress)[0]


@dataclass
class ColourConfig:
    albedo_hidden: int = 512
    albedo_layers: int = 4
    shade_hidden: int = 128
    shade_layers: int = 3
    multires: int = 4


def _mlp(d_in, hidden, layers, d_out, act, weight_norm=False):
    mods, d = [], d_in
    for _ in range(layers):
        mods += [WNLinear(d, hidden, weight_norm), act()]
        d = hidden
    mods.append(WNLinear(d, d_out, weight_norm))
    return nn.Sequential(*mods)


class ProxyColour(nn.Module):
    """Geo-stage appearance (Sec. 3.3): canonical albedo x one grey world-space shading scalar per sample, which
    absorbs position-, view- and normal-dependent light and shadows between the copies."""

    def __init__(self, cfg: ColourConfig, feature: int):
        super().__init__()
        self.pe = PosEnc(cfg.multires)
        self.albedo = _mlp(6 + feature, cfg.albedo_hidden, cfg.albedo_layers, 3, nn.ReLU, True)
        self.shade = _mlp(3 * self.pe.out_dim + feature, cfg.shade_hidden, cfg.shade_layers, 1,
                          lambda: nn.LeakyReLU(0.2))

    def forward(self, x_canon, n_canon, x_world_c, d_world, n_world, feat):
        albedo = torch.sigmoid(self.albedo(torch.cat([x_canon, n_canon, feat], -1)))
        s = self.shade(torch.cat([self.pe(x_world_c), self.pe(d_world), self.pe(n_world), feat], -1))
        return albedo * (F.relu(s + 1) + 0.01)


@dataclass
class ProxyConfig:
    multires: int = 6
    hidden: int = 96
    layers: int = 7


class ProxyClassifier(nn.Module):
    """g(x_canon) -> proxy SDF (Sec. 3.5); argmin_k g(T_k^-1 x) picks the instance of a point on an unlabelled ray."""

    def __init__(self, cfg: ProxyConfig):
        super().__init__()
        self.pe = PosEnc(cfg.multires)
        self.mlp = _mlp(self.pe.out_dim, cfg.hidden, cfg.layers, 1, nn.ReLU)

    def forward(self, x):
        return self.mlp(self.pe(x))
