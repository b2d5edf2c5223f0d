"""UViT3D and UViT3D-Mixer: the DiffMotion denoiser (Han, Nishino & Zickler, NeurIPS 2025), one class configured by
block type per level.

forward(z [B, 3, 9, H, W], noise_level [B, 3] (= 0.125 * logSNR per frame), cond [B, 3, 3, H, W]) -> v-prediction
[B, 3, 9, H, W]. Level types: "res" (ResBlocks only, plain UViT3D), "mixer" (ResBlocks, Mixer, NA 7x7, temporal
attention, Mixer: the "local 3D block"), "transformer" (global 3-D attention). Skips are SiD2-style residual:
x <- Upsample(x - d_l) + a_l. Module names match the original state dict, so the key map is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.nets.uvit3d_blocks import (ChannelMixer, Downsample, NALayer, NoiseLevelEmbedding, PatchEmbed,
                                       PatchUnembed, ResBlock, TemporalAttnBlock, TransformerBlock, Upsample)

LEVEL_TYPES = ("res", "mixer", "transformer")


@dataclass
class UViT3DConfig:
    frames: int = 3  # fixed by the design (temporal attention / RoPE over 3 frames)
    cond_channels: int = 3  # RGB condition, concatenated before the noisy target
    out_channels: int = 9  # normal (3), albedo (3), metallic, specular, roughness
    channels: tuple[int, ...] = (96, 192, 384, 768)  # per level; the last one is the middle stack
    emb_channels: int = 768
    patch_size: int = 2
    level_types: tuple[str, ...] = ("mixer", "mixer", "transformer", "transformer")
    blocks: tuple[int, ...] = (2, 2, 3)  # per down/up level: ResBlocks ("res"/"mixer") or TransformerBlocks
    mid_blocks: int = 8
    heads: int = 6
    dropouts: tuple[float, ...] = (0.0, 0.0, 0.1, 0.1)  # transformer MLP dropout per level (must be 0 for res levels)
    fourier_channels: int = 256
    gn_groups: int = 32
    na_kernel: int = 7
    na_dilation: int = 1
    mixer_expansion: int = 3
    mlp_ratio: int = 4
    temporal_residual: bool = False  # fix for new runs: identity skip in temporal attention (faithful: off)
    attn_backend: str = "auto"  # neighborhood attention: auto | natten | torch | dense
    grad_checkpointing: bool = False

    def __post_init__(self):
        n = len(self.channels)
        if len(self.level_types) != n or len(self.dropouts) != n or len(self.blocks) != n - 1:
            raise ValueError(f"UViT3DConfig: channels ({n}), level_types, dropouts need one entry per level and "
                             f"blocks one per down level ({n - 1}); got {self.level_types}, {self.dropouts}, "
                             f"{self.blocks}")
        bad = [t for t in self.level_types if t not in LEVEL_TYPES]
        if bad or self.level_types[-1] != "transformer":
            raise ValueError(f"UViT3DConfig.level_types: use {LEVEL_TYPES}, with 'transformer' for the middle; got "
                             f"{self.level_types}")
        for c, t in zip(self.channels, self.level_types):
            if c % self.heads:
                raise ValueError(f"UViT3DConfig: {c} channels not divisible by {self.heads} heads")
            if t == "mixer" and (c // self.heads) % 4:
                raise ValueError(f"UViT3DConfig: 2-D RoPE needs a head dim multiple of 4, got {c // self.heads}")


class UViT3D(nn.Module):
    """Pixel-space video U-ViT (plain or Mixer by `cfg.level_types`); frames are batch items except in temporal and
    global attention. A fresh model outputs exactly 0 (zero-initialised residual branches and head)."""

    def __init__(self, cfg: UViT3DConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb, lv = cfg.channels, cfg.emb_channels, len(cfg.channels) - 1
        self.embed_input = PatchEmbed(cfg.cond_channels + cfg.out_channels, ch[0], cfg.patch_size)
        self.noise_level_pos_embedding = NoiseLevelEmbedding(cfg.fourier_channels, emb)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in range(lv):
            self.down_blocks.append(nn.ModuleList([*self._level(i, cfg.blocks[i]), Downsample(ch[i], ch[i + 1])]))
        self.mid_blocks = nn.ModuleList(self._level(lv, cfg.mid_blocks))
        for i in reversed(range(lv)):  # up_blocks[0] is the deepest level, as in the original
            self.up_blocks.append(nn.ModuleList([Upsample(ch[i + 1], ch[i]), *self._level(i, cfg.blocks[i])]))
        self.project_output = PatchUnembed(ch[0], cfg.out_channels, cfg.patch_size)

    def _level(self, i: int, n: int) -> list[nn.Module]:
        cfg, c, emb = self.cfg, self.cfg.channels[i], self.cfg.emb_channels
        kind, drop = cfg.level_types[i], cfg.dropouts[i]
        if kind == "transformer":
            return [TransformerBlock(c, emb, cfg.heads, cfg.mlp_ratio, drop) for _ in range(n)]
        blocks: list[nn.Module] = [ResBlock(c, emb, cfg.gn_groups, drop) for _ in range(n)]
        if kind == "mixer":
            blocks += [ChannelMixer(c, emb, cfg.mixer_expansion),
                       NALayer(c, emb, cfg.heads, cfg.gn_groups, cfg.na_kernel, cfg.na_dilation, cfg.attn_backend),
                       TemporalAttnBlock(c, emb, cfg.heads, cfg.temporal_residual),
                       ChannelMixer(c, emb, cfg.mixer_expansion)]
        return blocks

    def min_multiple(self) -> int:
        """Input sizes must be multiples of this (patchify + one 2x downsample per level)."""
        return self.cfg.patch_size * 2 ** (len(self.cfg.channels) - 1)

    def check_inputs(self, z: torch.Tensor, noise_level: torch.Tensor, cond: torch.Tensor) -> None:
        """Raise ValueError with a clear message for shapes the network cannot process."""
        cfg = self.cfg
        if z.ndim != 5 or z.shape[1] != cfg.frames or z.shape[2] != cfg.out_channels:
            raise ValueError(f"UViT3D: z must be [B, {cfg.frames}, {cfg.out_channels}, H, W] (exactly {cfg.frames} "
                             f"frames), got {tuple(z.shape)}")
        bsz, t, _, hgt, wid = z.shape
        if tuple(cond.shape) != (bsz, t, cfg.cond_channels, hgt, wid):
            raise ValueError(f"UViT3D: cond must be [{bsz}, {t}, {cfg.cond_channels}, {hgt}, {wid}], "
                             f"got {tuple(cond.shape)}")
        if tuple(noise_level.shape) != (bsz, t):
            raise ValueError(f"UViT3D: noise_level must be [{bsz}, {t}], got {tuple(noise_level.shape)}")
        if hgt != wid:
            raise ValueError(f"UViT3D: frames must be square, got {hgt}x{wid}")
        m = self.min_multiple()
        if hgt % m:
            raise ValueError(f"UViT3D: size {hgt} is not a multiple of {m} (patch {cfg.patch_size}, "
                             f"{len(cfg.channels) - 1} downsamples)")
        span = cfg.na_kernel * cfg.na_dilation  # the NA window rule needs k * dilation <= side
        for i, kind in enumerate(cfg.level_types):
            side = hgt // (cfg.patch_size * 2 ** i)
            if kind == "mixer" and side < span:
                raise ValueError(f"UViT3D: level {i} map is {side}x{side}, smaller than the {cfg.na_kernel}x"
                                 f"{cfg.na_kernel} (dilation {cfg.na_dilation}) neighborhood; use a larger input")

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Recompute each block in the backward pass (a run-time switch; net.grad_checkpointing is its default)."""
        self.cfg.grad_checkpointing = bool(on)

    def _run(self, block: nn.Module, x, emb, frames: int):
        if self.cfg.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, emb, frames, use_reentrant=False)
        return block(x, emb, frames)

    def forward(self, z: torch.Tensor, noise_level: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.check_inputs(z, noise_level, cond)
        bsz, t, _, hgt, wid = z.shape
        x = torch.cat([cond.to(z.dtype), z], dim=2).flatten(0, 1)  # condition first, per frame
        x = self.embed_input(x)
        emb = self.noise_level_pos_embedding(noise_level).flatten(0, 1)  # [B*T, E]
        skips = []
        for level in self.down_blocks:
            for block in level[:-1]:
                x = self._run(block, x, emb, t)
            a = x
            x = level[-1](x)
            skips.append((a, x))
        for block in self.mid_blocks:
            x = self._run(block, x, emb, t)
        for level in self.up_blocks:
            a, d = skips.pop()
            x = level[0](x - d) + a  # the coarse path returns a correction to the downsampled features
            for block in level[1:]:
                x = self._run(block, x, emb, t)
        out = self.project_output(x)
        return out.view(bsz, t, self.cfg.out_channels, hgt, wid)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_on_meta(cfg: UViT3DConfig) -> UViT3D:
    """Allocation-free instance (for parameter counting / key listing)."""
    with torch.device("meta"):
        return UViT3D(cfg)
