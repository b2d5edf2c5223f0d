"""Diffusion as Shader (Gu et al. 2025): CogVideoX-5B-I2V with a tracking-video branch; only the branch trains.

The exported file holds the branch (copied blocks + zero-initialised injections) and names the base folder it was
built on; `from_export` rebuilds base + branch. The VAE and T5 are frozen helpers kept outside the module tree, so
parameter counts, optimizer, EMA and export see only the transformer. `stage="base"` trains a whole tracking-free
transformer instead (stage A of the toy learning check); its export is a base for `stage="branch"`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models.core.cli import UserError
from models.core.config import ConfigError, OptimConfig, TrainConfig
from models.core.registry import register_system
from models.core.seeding import seeded_generator
from models.systems.base import System


@dataclass
class DaSNetConfig:
    """CogVideoXTransformer3DModel arguments (defaults: CogVideoX-5B-I2V v1.0) + the branch depth."""
    num_attention_heads: int = 48
    attention_head_dim: int = 64
    in_channels: int = 32
    out_channels: int = 16
    time_embed_dim: int = 512
    text_embed_dim: int = 4096
    num_layers: int = 42
    sample_width: int = 90
    sample_height: int = 60
    sample_frames: int = 49
    patch_size: int = 2
    temporal_compression_ratio: int = 4
    max_text_seq_length: int = 226
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = True
    use_learned_positional_embeddings: bool = True
    num_tracking_blocks: int = 18


@dataclass
class DaSDataConfig:
    kind: Literal["folder", "toy", "cached"] = "folder"
    root: str = ""  # dataset folder (prompt.txt, videos.txt, trackings.txt) or a cache folder; --data-root overrides
    frames: int = 49
    height: int = 480
    width: int = 720
    flip: float = 0.0  # probability of mirroring a clip (tracking R becomes 1 - R)
    toy_clips: int = 4096


@dataclass
class DaSLossConfig:
    image_dropout: float = 0.05  # image and tracking first frame zeroed together (as released)
    caption_dropout: float = 0.0  # 0 as released; 0.1 gives CFG a real unconditional model
    image_noise_mean: float = -3.0  # log sigma of the noise added to the conditioning frame (CogVideoX I2V)
    image_noise_std: float = 0.5


@dataclass
class DaSSamplingConfig:
    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: Literal["off", "compat", "ramp"] = "off"
    tracking_range: Literal["pm1", "01_compat"] = "pm1"


@dataclass
class DaSConfig:
    system: str = "das"
    # CogVideoX-5B-I2V diffusers folder (transformer/ vae/ text_encoder/ tokenizer/ scheduler/), or the export of a
    # stage-"base" run (.safetensors); "" = a random base drawn from init_seed (tiny and toy configs only)
    base: str = ""
    init_seed: int = 0
    stage: Literal["branch", "base"] = "branch"
    vae: Literal["base", "identity", "tiny"] = "base"
    text: Literal["base", "tiny", "none"] = "base"
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"  # the branch always keeps fp32 masters
    net: DaSNetConfig = field(default_factory=DaSNetConfig)
    data: DaSDataConfig = field(default_factory=DaSDataConfig)
    loss: DaSLossConfig = field(default_factory=DaSLossConfig)
    sampling: DaSSamplingConfig = field(default_factory=DaSSamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.stage == "base" and self.net.num_tracking_blocks:
            raise ConfigError("stage 'base' trains a tracking-free transformer: set net.num_tracking_blocks=0")
        if self.stage == "branch" and self.net.num_tracking_blocks < 1:
            raise ConfigError("stage 'branch' needs net.num_tracking_blocks >= 1")
        if (self.vae == "base" or self.text == "base") and self.base.endswith(".safetensors"):
            raise ConfigError("vae/text 'base' need a CogVideoX folder as base, not an export")


def _on_meta() -> bool:
    """True under accelerate's init_empty_weights (dry-run plans, meta builds)."""
    return torch.nn.Linear(1, 1).weight.is_meta


def rotary_embedding(cfg, frames: int, h: int, w: int, device):
    """CogVideoX 1.0's 3-D RoPE tables for a latent grid (Yang et al. 2024), as its I2V pipeline builds them."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_resize_crop_region_for_grid

    p = cfg.patch_size
    crops = get_resize_crop_region_for_grid((h // p, w // p), cfg.sample_width // p, cfg.sample_height // p)
    return get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=(h // p, w // p),
                                   temporal_size=frames, device=device)


@register_system("das")
class DaSSystem(System):
    Config = DaSConfig

    def __init__(self, cfg: DaSConfig):
        super().__init__(cfg)
        from models.das.pipeline import dpm_scheduler
        from models.nets.das_tracking_transformer import CheckpointFormatError, CogVideoXTransformer3DModelTracking

        net_args = dict(vars(cfg.net))
        base = Path(cfg.base) if cfg.base else None
        if _on_meta() or base is None or base.suffix == ".safetensors":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.init_seed)
                self.net = CogVideoXTransformer3DModelTracking(**net_args)
            if base is not None and not _on_meta():
                self._load_stage_a(base)
        else:
            if not (base / "transformer" / "config.json").is_file():
                raise UserError(f"base {base}: expected a CogVideoX-5B-I2V diffusers folder with transformer/, vae/, "
                                "text_encoder/, tokenizer/, scheduler/ (the weights cannot be downloaded here)")
            try:
                self.net = CogVideoXTransformer3DModelTracking.from_base(
                    base, num_tracking_blocks=cfg.net.num_tracking_blocks, subfolder="transformer")
            except CheckpointFormatError as err:
                raise UserError(str(err)) from None
            got = {k: self.net.config[k] for k in net_args}
            if got != net_args:
                bad = sorted(k for k in net_args if got[k] != net_args[k])
                raise UserError(f"base {base}: transformer config differs from net.* in {bad}")
        if cfg.stage == "branch":
            self.net.freeze_base()
            if cfg.frozen_dtype == "bfloat16":
                for n, p in self.net.named_parameters():
                    if not p.requires_grad:
                        p.data = p.data.to(torch.bfloat16)
        object.__setattr__(self, "_aux", {})  # VAE / T5 / tokenizer: frozen, not part of the exported module
        self.scheduler = dpm_scheduler()

    def _load_stage_a(self, path: Path) -> None:
        """Base weights from a stage-'base' export; the branch is re-derived from them (copies + zeros)."""
        from models.core.checkpoint import read_checkpoint

        meta, state = read_checkpoint(path)
        if meta.get("system") != "das":
            raise UserError(f"base {path}: a '{meta.get('system')}' checkpoint, not a DaS stage-'base' export")
        result = self.net.load_state_dict(state, strict=False)
        from models.nets.das_tracking_transformer import is_branch_key

        if result.unexpected_keys or any(not is_branch_key(k) for k in result.missing_keys):
            raise UserError(f"base {path}: weights do not fit net.* (missing {result.missing_keys[:2]}, unexpected "
                            f"{result.unexpected_keys[:2]})")
        self.net.copy_main_blocks_into_branch()
        self.net.zero_branch_linears()

    # ------------------------------------------------------------------------------------------- frozen helpers
    def aux(self, name: str):
        if name not in self._aux:
            self._aux.update(self._build_aux())
        module = self._aux[name]
        if isinstance(module, torch.nn.Module):
            module.to(self.device)
        return module

    def _build_aux(self) -> dict:
        from models.das.training import IdentityVAE

        cfg, out = self.cfg, {}
        latent = cfg.net.in_channels // 2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed + 1)
            if cfg.vae == "identity":
                out["vae"] = IdentityVAE(latent)
            elif cfg.vae == "tiny":
                from diffusers import AutoencoderKLCogVideoX

                out["vae"] = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=latent,
                                                    layers_per_block=1, norm_num_groups=2, scaling_factor=0.7)
            if cfg.text == "tiny":
                from transformers import T5Config, T5EncoderModel

                out["text_encoder"] = T5EncoderModel(T5Config(vocab_size=64, d_model=cfg.net.text_embed_dim, d_kv=4,
                                                              num_heads=2, num_layers=1, d_ff=16))
        if "base" in (cfg.vae, cfg.text):
            from models.das.pipeline import load_components

            parts = ["scheduler"] + (["vae"] if cfg.vae == "base" else []) + (
                ["text_encoder", "tokenizer"] if cfg.text == "base" else [])
            try:
                comps = load_components(cfg.base, parts=parts)
            except (FileNotFoundError, OSError) as err:
                raise UserError(str(err)) from None
            self.scheduler = comps.pop("scheduler")
            out.update(comps)
        for m in out.values():
            if isinstance(m, torch.nn.Module):
                m.requires_grad_(False).eval()
        return out

    def prompt_embeds(self, prompts: list[str]) -> torch.Tensor:
        cfg = self.cfg.net
        if self.cfg.text == "none":
            return torch.zeros(len(prompts), cfg.max_text_seq_length, cfg.text_embed_dim, device=self.device)
        enc = self.aux("text_encoder")
        if self.cfg.text == "tiny":
            from models.das.training import byte_tokens

            ids = byte_tokens(prompts, cfg.max_text_seq_length, enc.config.vocab_size)
        else:
            ids = self.aux("tokenizer")(prompts, padding="max_length", max_length=cfg.max_text_seq_length,
                                        truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return enc(ids.to(self.device))[0].float()

    def encode(self, pixels: torch.Tensor, gens) -> torch.Tensor:
        """[B, T, H, W, 3] in [-1, 1] -> scaled latents [B, F, C, h, w], one posterior sample per generator."""
        vae = self.aux("vae")
        x = pixels.permute(0, 4, 1, 2, 3)
        with torch.no_grad():
            z = torch.cat([vae.encode(x[i:i + 1].to(vae.dtype)).latent_dist.sample(gens[i]) for i in range(len(x))])
        return (z.float() * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)

    # ------------------------------------------------------------------------------------------------ training
    def train_dataset(self, split="train", root=None):
        from models.das.training import CachedLatents, FolderDataset, ToySquares

        d = self.cfg.data
        if d.kind == "toy":
            return ToySquares(d.toy_clips if split == "train" else 64, d.width, d.frames, split)
        root = root or d.root
        if not root:
            raise UserError("the DaS dataset needs --data-root (or data.root): a folder with prompt.txt, videos.txt, "
                            "trackings.txt, videos/, tracking/")
        return CachedLatents(root) if d.kind == "cached" else FolderDataset(root, d.frames, d.height, d.width, d.flip)

    def condition(self, batch: dict, rng) -> tuple:
        """Latents, image latents, tracking maps and text of a training batch (CogVideoX I2V's conditioning recipe:
        the first frame gets noise of log-normal sigma, Yang et al. 2024)."""
        if "latents" in batch:  # cached
            return batch["latents"], batch["image_latents"], batch["tracking_maps"], batch["prompt_embeds"]
        L = self.cfg.loss
        video, track = batch["video"], batch["tracking"]
        gens = rng.gens
        x0 = self.encode(video, gens)
        sigma = (L.image_noise_mean + L.image_noise_std * rng.randn()).exp()  # [B, 1]
        first = video[:, :1] + sigma.view(-1, 1, 1, 1, 1) * rng.randn(*video[:, :1].shape[1:])
        pad = lambda z: torch.cat([z, z.new_zeros((z.shape[0], x0.shape[1] - 1, *z.shape[2:]))], 1)  # noqa: E731
        image = pad(self.encode(first, gens))
        c_first = pad(self.encode(track[:, :1], gens))
        tracking = torch.cat([self.encode(track, gens), c_first], 2)
        drop_image = (rng.rand() < L.image_dropout).view(-1, 1, 1, 1, 1)
        image = torch.where(drop_image, 0.0, image)
        n = tracking.shape[2] // 2
        tracking[:, :, n:] = torch.where(drop_image, 0.0, tracking[:, :, n:])
        prompts = list(batch["prompt"])
        drop_text = (rng.rand() < L.caption_dropout).view(-1).tolist()
        text = self.prompt_embeds(["" if d else p for p, d in zip(prompts, drop_text)])
        return x0, image, tracking, text

    def forward(self, batch):
        """v-prediction MSE (the released loss, x0-MSE weighted by 1/(1 - alpha_bar), is exactly this)."""
        if self.cfg.frozen_dtype == "bfloat16" and not torch.is_autocast_enabled(self.device.type):
            raise UserError("frozen_dtype 'bfloat16' keeps the frozen base in bf16: train with --precision bf16")
        rng = self.rng(batch)
        x0, image, tracking, text = self.condition(batch, rng)
        timesteps = rng.randint(1000).view(-1)
        abar = self.scheduler.alphas_cumprod[timesteps.cpu()].to(x0.device, torch.float32)
        a, s = abar.sqrt().view(-1, 1, 1, 1, 1), (1 - abar).sqrt().view(-1, 1, 1, 1, 1)
        eps = rng.randn(*x0.shape[1:])
        x_t = a * x0 + s * eps
        v = a * eps - s * x0
        F, _, h, w = x0.shape[1:]
        use_rope = self.net.config.use_rotary_positional_embeddings
        rope = rotary_embedding(self.net.config, F, h, w, x0.device) if use_rope else None
        pred = self.net(torch.cat([x_t, image], 2), text, timesteps,
                        tracking_maps=tracking if self.cfg.stage == "branch" else None,
                        image_rotary_emb=rope, return_dict=False)[0]
        return (pred.float() - v).square().mean(), {}

    def set_gradient_checkpointing(self, on: bool) -> None:
        self.net.enable_gradient_checkpointing() if on else self.net.disable_gradient_checkpointing()

    # ------------------------------------------------------------------------------------------------ export
    def export_state_dict(self):
        if self.cfg.stage == "base":
            return super().export_state_dict()
        return {k: v.float() for k, v in self.net.branch_state_dict().items()}

    def load_export(self, state, assign: bool = False):
        if self.cfg.stage == "base":
            return super().load_export(state, assign=assign)
        from models.nets.das_tracking_transformer import CheckpointFormatError

        try:
            self.net.load_branch_state_dict(state)
        except CheckpointFormatError as err:
            raise RuntimeError(str(err)) from None

    def export_metadata(self):
        return {"das_base": str(Path(self.cfg.base).resolve()) if self.cfg.base else ""}

    @classmethod
    def from_export(cls, cfg, state, meta):
        """Base (folder, stage-A export or seeded random) + the exported branch."""
        if cfg.base and not Path(cfg.base).exists():  # the recorded absolute path, or relative to the repository
            root = Path(__file__).resolve().parents[2]
            found = [c for c in (Path(meta.get("das_base") or cfg.base), root / cfg.base) if c.exists()]
            if found:
                cfg.base = str(found[0])
        system = cls(cfg)
        system.load_export(state)
        return system

    # ------------------------------------------------------------------------------------------------ inference
    def pipeline(self):
        from models.das.pipeline import DaSImageToVideoPipeline

        text = self.cfg.text
        vae = self.aux("vae")  # builds every helper
        return DaSImageToVideoPipeline(tokenizer=self._aux.get("tokenizer") if text == "base" else None,
                                       text_encoder=self.aux("text_encoder") if text != "none" else None,
                                       vae=vae, transformer=self.net, scheduler=self.scheduler)

    def example_inputs(self) -> dict:
        from models.das.training import toy_clip

        d = self.cfg.data
        clip = toy_clip(123, d.width, d.frames) if d.width == d.height else None
        if clip is None:
            raise UserError("example_inputs exists for square toy sizes only")
        return {"image": clip["video"][0], "tracking": clip["tracking"], "prompt": "a square moving"}

    def demo(self, out_dir: Path, step: int) -> list[Path]:
        """Toy runs: tracking frames over generated frames for the example clip (seed 0)."""
        if self.cfg.data.kind != "toy":
            return []
        from data.io import write_png
        from models.das.video import preview_strip

        inputs = self.example_inputs()
        video = self.infer(inputs, [0], steps=min(self.cfg.sampling.steps, 10))["video"][0]
        to8 = lambda v: (np.clip(v, 0, 1) * 255).round().astype(np.uint8).repeat(8, 1).repeat(8, 2)  # noqa: E731
        strip = np.concatenate([preview_strip(to8(inputs["tracking"])), preview_strip(to8(video))], 0)
        return [write_png(Path(out_dir) / f"das_s{step:08d}.png", strip)]

    @torch.no_grad()
    def infer(self, inputs: dict, seeds: list[int], steps: int | None = None, guidance: float | None = None,
              dynamic_cfg: str | None = None, tracking_scale: float = 1.0, tracking_guidance: float = 0.0,
              tracking_range: str | None = None, progress: bool = False) -> dict[str, np.ndarray]:
        """{"image": [H, W, 3], "tracking": [T, H, W, 3] (both in [0, 1]), "prompt"} -> {"video": [S, T, H, W, 3]}."""
        S = self.cfg.sampling
        image = torch.as_tensor(np.asarray(inputs["image"], np.float32)).permute(2, 0, 1)[None]
        track = np.asarray(inputs["tracking"], np.float32)
        T, H, W = track.shape[:3]
        n = len(seeds)
        pipe = self.pipeline()
        prompt = inputs.get("prompt", "")
        guidance = S.guidance if guidance is None else guidance
        kwargs = {}
        if self.cfg.text == "base":
            kwargs.update(prompt=[prompt] * n, negative_prompt=[inputs.get("negative_prompt", _negative())] * n)
        else:
            emb = self.prompt_embeds([prompt])
            kwargs.update(prompt_embeds=emb.expand(n, -1, -1),
                          negative_prompt_embeds=self.prompt_embeds([""]).expand(n, -1, -1))
        gens = [seeded_generator(s, self.device) for s in seeds]
        video = pipe(image=image.expand(n, -1, -1, -1), tracking_video=track[None].repeat(n, 0), height=H, width=W,
                     num_frames=T, num_inference_steps=steps or S.steps, guidance_scale=guidance,
                     dynamic_cfg=dynamic_cfg or S.dynamic_cfg, tracking_range=tracking_range or S.tracking_range,
                     tracking_scale=tracking_scale, tracking_guidance=tracking_guidance, generator=gens,
                     output_type="pt", progress=progress, **kwargs)
        return {"video": video.permute(0, 1, 3, 4, 2).float().cpu().numpy()}


def _negative() -> str:
    from models.das.pipeline import NEGATIVE_PROMPT

    return NEGATIVE_PROMPT
