"""The Omages material UNet (geo2mat): an Imagen-style UNet (Saharia et al. 2022, "Photorealistic Text-to-Image
Diffusion Models with Deep Language Understanding": the layout of its 64x64 base model, at half its width in the
faithful preset) for 64x64 object images. The geometry image is concatenated to the input channels. The class label
is one learned token: added to the time embedding (Imagen's pooled text embedding) and the key/value of a
cross-attention at the attention levels (Imagen's text cross-attention, here with a single token). Trained with the
IDDPM recipe (Nichol & Dhariwal 2021): eps plus the learned-range variance interpolation v (`learn_sigma` doubles
the output channels), like models/nets/omages_dit.py, so the two are interchangeable in models/systems/omages.py.

The ResNet blocks, self-attention, down- and upsampling are the shared ones of models/nets/sfs_patch_unet.py; unlike
Imagen they use weight-standardized convolutions, and the attention levels have no feed-forward layer."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.omages_dit import timestep_embedding
from models.nets.sfs_patch_unet import Attention, Downsample, PreNormResidual, ResBlock, Upsample


@dataclass
class OmagesUNetConfig:
    res: int = 64
    dim: int = 256  # width at full resolution; level i has width dim * dim_mults[i] at res / 2**i
    dim_mults: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    num_res_blocks: int = 3  # per level, on the way down and on the way up
    attn_levels: list[int] = field(default_factory=lambda: [2, 3, 4])  # 1-based levels with self + label attention
    heads: int = 8
    dim_head: int = 64
    groups: int = 8  # GroupNorm groups in the ResNet blocks
    in_ch: int = 5  # material channels (noisy)
    cond_ch: int = 4  # geometry channels concatenated to the input
    out_ch: int = 5
    learn_sigma: bool = True  # out_ch more channels: the learned-range variance interpolation v
    num_classes: int = 63  # + 1 null row (index num_classes) for classifier-free guidance


class LabelCrossAttention(nn.Module):
    """Pre-norm residual cross-attention from every pixel to [a learned null token, the label token]. With one token
    alone softmax would be constant 1; the null key/value lets each pixel choose how much of the label to take."""

    def __init__(self, dim: int, ctx_dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, inner = heads, heads * dim_head
        self.norm = nn.GroupNorm(1, dim)
        self.to_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_kv = nn.Linear(ctx_dim, 2 * inner, bias=False)
        self.null_kv = nn.Parameter(torch.randn(2, inner))
        self.to_out = nn.Conv2d(inner, dim, 1)

    def forward(self, x, ctx):
        b, _, h, w = x.shape
        q = self.to_q(self.norm(x)).reshape(b, self.heads, -1, h * w).transpose(-1, -2)  # [b, heads, hw, d]
        kv = torch.stack([self.null_kv.expand(b, -1, -1), self.to_kv(ctx).view(b, 2, -1)], 2)  # [b, k|v, 2, inner]
        k, v = (t.reshape(b, 2, self.heads, -1).transpose(1, 2) for t in kv.unbind(1))  # [b, heads, 2, d]
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, -1, h, w)
        return x + self.to_out(out)


class Level(nn.Module):
    """num_res_blocks ResNet blocks at one resolution, each followed by label cross-attention at attention levels,
    then one self-attention block. `skips` (up path) are concatenated in front of each ResNet block."""

    def __init__(self, width: int, skip: int, cfg: OmagesUNetConfig, emb: int, attn: bool):
        super().__init__()
        n, heads, dh = cfg.num_res_blocks, cfg.heads, cfg.dim_head
        self.res = nn.ModuleList(ResBlock(width + skip, width, emb, cfg.groups) for _ in range(n))
        self.cross = nn.ModuleList(LabelCrossAttention(width, emb, heads, dh) for _ in range(n)) if attn else None
        self.attn = PreNormResidual(width, Attention(width, heads, dh)) if attn else None

    def forward(self, x, emb, label, skips=None, ckpt=False):
        def run(fn, *args):
            return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False) if ckpt else fn(*args)

        out = []
        for i, block in enumerate(self.res):
            if skips is not None:
                x = torch.cat([x, skips.pop()], 1)
            x = run(block, x, emb)
            if self.cross is not None:
                x = run(self.cross[i], x, label)
            out.append(x)
        if self.attn is not None:
            x = run(self.attn, x)
            out[-1] = x
        return x, out


class OmagesUNet(nn.Module):
    def __init__(self, cfg: OmagesUNetConfig):
        super().__init__()
        self.cfg = cfg
        levels = len(cfg.dim_mults)
        if (not cfg.dim_mults or cfg.res % 2 ** (levels - 1) or cfg.num_res_blocks < 1
                or any(not 1 <= a <= levels for a in cfg.attn_levels)
                or any(cfg.dim * m % cfg.groups for m in cfg.dim_mults)):
            raise ValueError(f"bad UNet shape: res {cfg.res}, dim {cfg.dim} x {cfg.dim_mults}, groups {cfg.groups}, "
                             f"{cfg.num_res_blocks} res blocks, attention levels {cfg.attn_levels} (1..{levels})")
        widths = [cfg.dim * m for m in cfg.dim_mults]
        emb = 4 * cfg.dim  # Imagen's time-conditioning width
        self.out_total = cfg.out_ch * (2 if cfg.learn_sigma else 1)
        self.init_conv = nn.Conv2d(cfg.in_ch + cfg.cond_ch, widths[0], 7, padding=3)
        self.t_mlp = nn.Sequential(nn.Linear(cfg.dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.y_embed = nn.Embedding(cfg.num_classes + 1, emb)  # trained, unlike the original's table

        attn = [i + 1 in cfg.attn_levels for i in range(levels)]
        self.downs = nn.ModuleList(Level(w, 0, cfg, emb, a) for w, a in zip(widths, attn))
        self.down_samples = nn.ModuleList(Downsample(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mid1 = ResBlock(widths[-1], widths[-1], emb, cfg.groups)
        self.mid_cross = LabelCrossAttention(widths[-1], emb, cfg.heads, cfg.dim_head)
        self.mid_attn = PreNormResidual(widths[-1], Attention(widths[-1], cfg.heads, cfg.dim_head))
        self.mid2 = ResBlock(widths[-1], widths[-1], emb, cfg.groups)
        self.ups = nn.ModuleList(Level(w, w, cfg, emb, a) for w, a in zip(widths, attn))
        self.up_samples = nn.ModuleList(Upsample(b, a) for a, b in zip(widths[:-1], widths[1:]))
        # init_conv_to_final_conv_residual of the original: the first features skip to the last block
        self.final_res = ResBlock(2 * widths[0], widths[0], emb, cfg.groups)
        self.final_conv = nn.Conv2d(widths[0], self.out_total, 1)
        nn.init.zeros_(self.final_conv.weight)  # output exactly 0 at init, as the DiT's zero output layer
        nn.init.zeros_(self.final_conv.bias)
        self.grad_ckpt = False

    @property
    def null_label(self) -> int:
        return self.cfg.num_classes

    def set_gradient_checkpointing(self, on: bool):
        self.grad_ckpt = bool(on)

    def forward(self, x, t, y, cond=None):
        """x [B, in_ch, R, R], t [B] timestep indices, y [B] labels (null = num_classes), cond [B, cond_ch, R, R]."""
        if self.cfg.cond_ch:
            x = torch.cat([x, cond], 1)
        ckpt = self.grad_ckpt and self.training
        x = self.init_conv(x)
        first = x
        label = self.y_embed(y)
        emb = self.t_mlp(timestep_embedding(t, self.cfg.dim).to(x.dtype)) + label
        skips = []
        for i, level in enumerate(self.downs):
            x, out = level(x, emb, label, ckpt=ckpt)
            skips += out
            if i < len(self.down_samples):
                x = self.down_samples[i](x)
        x = self.mid2(self.mid_attn(self.mid_cross(self.mid1(x, emb), label)), emb)
        for i in reversed(range(len(self.ups))):
            x, _ = self.ups[i](x, emb, label, skips, ckpt=ckpt)
            if i > 0:
                x = self.up_samples[i - 1](x)
        return self.final_conv(self.final_res(torch.cat([x, first], 1), emb))
