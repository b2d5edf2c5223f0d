"""Diffusion-as-Shader image-to-video pipeline (Gu et al. 2025, Sec. 3.3-3.4) on diffusers' CogVideoX I2V pipeline.

Differences from the released demo, each a switch whose default is the training-time behaviour:
- the tracking video reaches the VAE in [-1, 1] as in training (`tracking_range="01_compat"`: [0, 1], as the demo);
- its latents are drawn from generators seeded from the pipeline's seeds, without consuming their streams (so the video
  noise is that of the plain I2V pipeline), or taken as the posterior mode;
- `num_inference_steps` is honoured; dynamic CFG is `off`, `compat` (the cosine of the raw timestep, as released) or
  `ramp` (the same cosine of the step fraction, monotone from 1 to 1 + g);
- optional tracking guidance: + w_trk (v_cond - v_cond_without_tracking); no torch.compile inside the constructor.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline

from models.core.seeding import derive_seed

NEGATIVE_PROMPT = ("The video is not of a high quality, it has a low resolution. Watermark present in each frame. "
                   "The background is solid. Strange body and strange trajectory. Distortion.")
DYNAMIC_CFG = ("off", "compat", "ramp")
TRACKING_RANGES = ("pm1", "01_compat")
TRACKING_ENCODE = ("sample_seeded", "mode")


def guidance_weights(g: float, timesteps, mode: str) -> list[float]:
    """Per-step CFG weight. `compat` is CogVideoX's dynamic CFG as written, w = 1 + g (1 - cos(pi ((S - t) / S)^5)) / 2
    with t the raw timestep (0-999), which makes w pseudo-random in [1, 1 + g]; `ramp` uses the step fraction."""
    ts = [float(t) for t in timesteps]
    S = len(ts)
    if mode == "off":
        return [float(g)] * S
    if mode == "compat":
        return [1 + g * (1 - math.cos(math.pi * ((S - t) / S) ** 5.0)) / 2 for t in ts]
    if mode == "ramp":
        return [1 + g * (1 - math.cos(math.pi * (i / max(S - 1, 1)) ** 5.0)) / 2 for i in range(S)]
    raise ValueError(f"dynamic_cfg must be one of {DYNAMIC_CFG}, got {mode!r}")


def video_to_tensor(video, frames: int, height: int, width: int) -> torch.Tensor:
    """[T, H, W, 3] or [B, T, H, W, 3] (uint8 or float in [0, 1]) -> float [B, 3, T, H, W] in [0, 1]."""
    v = torch.as_tensor(np.asarray(video) if not torch.is_tensor(video) else video)
    if v.dtype == torch.uint8:
        v = v.float() / 255.0
    v = v.float()
    if v.ndim == 4:
        v = v[None]
    if v.ndim != 5 or v.shape[-1] != 3:
        raise ValueError(f"tracking video must be [T, H, W, 3] or [B, T, H, W, 3], got {tuple(v.shape)}")
    if tuple(v.shape[1:4]) != (frames, height, width):
        raise ValueError(f"tracking video is {tuple(v.shape[1:4])} (frames, height, width); this generation needs "
                         f"{(frames, height, width)}")
    if v.min() < 0 or v.max() > 1:
        raise ValueError("tracking video values must be in [0, 1] (or uint8)")
    return v.permute(0, 4, 1, 2, 3).contiguous()


def side_generators(generator, n: int, device) -> list[torch.Generator]:
    """Generators for the tracking encoding derived from the pipeline's seeds (their own streams stay untouched)."""
    gens = generator if isinstance(generator, list) else [generator] * n
    out = []
    for i, g in enumerate(gens):
        seed = g.initial_seed() if g is not None else 0
        out.append(torch.Generator(device=g.device if g is not None else device).manual_seed(
            derive_seed(seed, "tracking", i if not isinstance(generator, list) else 0)))
    return out


class DaSImageToVideoPipeline(CogVideoXImageToVideoPipeline):
    """CogVideoX I2V + a tracking video through the DaS transformer's branch."""

    def encode_video(self, pixels: torch.Tensor, generators, mode: bool) -> torch.Tensor:
        """[B, 3, T, H, W] pixels in the VAE's range -> scaled latents [B, F, C, h, w], one sample per generator."""
        dist_out = []
        for i in range(pixels.shape[0]):
            dist = self.vae.encode(pixels[i:i + 1].to(self.vae.dtype)).latent_dist
            dist_out.append(dist.mode() if mode else dist.sample(generators[i]))
        z = torch.cat(dist_out).permute(0, 2, 1, 3, 4)
        scale = self.vae_scaling_factor_image
        return z / scale if self.vae.config.invert_scale_latents else z * scale

    def prepare_tracking(self, tracking_video, batch: int, frames: int, height: int, width: int, generator,
                         tracking_range: str, tracking_encode: str, device, dtype) -> torch.Tensor:
        """[B, F, 2C, h, w] = [tracking video latents, zero-padded first-frame latents]: the same encoding as the
        conditioning image (the frozen patch embedding expects the [video, image] channel layout)."""
        if tracking_range not in TRACKING_RANGES or tracking_encode not in TRACKING_ENCODE:
            raise ValueError(f"tracking_range in {TRACKING_RANGES}, tracking_encode in {TRACKING_ENCODE}")
        v01 = video_to_tensor(tracking_video, frames, height, width).to(device)
        if v01.shape[0] == 1 and batch > 1:
            v01 = v01.expand(batch, -1, -1, -1, -1)
        if v01.shape[0] != batch:
            raise ValueError(f"{v01.shape[0]} tracking videos for a batch of {batch}")
        self.last_tracking_pixels = v01 * 2 - 1 if tracking_range == "pm1" else v01  # what the VAE saw (tests)
        gens = side_generators(generator, batch, device)
        mode = tracking_encode == "mode"
        video_lat = self.encode_video(self.last_tracking_pixels, gens, mode)
        first = self.encode_video(v01[:, :, :1] * 2 - 1, gens, mode)
        first = torch.cat([first, first.new_zeros((batch, video_lat.shape[1] - 1, *first.shape[2:]))], 1)
        return torch.cat([video_lat, first], 2).to(dtype)

    @torch.no_grad()
    def __call__(self, image, prompt=None, tracking_video=None, tracking_maps: torch.Tensor | None = None,
                 negative_prompt=None, height: int | None = None, width: int | None = None,
                 num_frames: int | None = None, num_inference_steps: int = 50, guidance_scale: float = 6.0,
                 dynamic_cfg: str = "off", use_dynamic_cfg: bool | None = None, tracking_range: str = "pm1",
                 tracking_encode: str = "sample_seeded", tracking_scale: float = 1.0, tracking_guidance: float = 0.0,
                 eta: float = 0.0, generator=None, latents=None, prompt_embeds=None, negative_prompt_embeds=None,
                 output_type: str = "np", max_sequence_length: int = 226, progress: bool = True):
        """Returns frames [B, T, H, W, 3] (np, in [0, 1]) or latents. `tracking_maps` are ready latents
        [B, F, 2C, h, w]; otherwise `tracking_video` ([B,] T, H, W, 3 in [0, 1]) is encoded here."""
        if use_dynamic_cfg is not None:  # the diffusers flag means the released behaviour
            dynamic_cfg = "compat" if use_dynamic_cfg else "off"
        if dynamic_cfg not in DYNAMIC_CFG:
            raise ValueError(f"dynamic_cfg must be one of {DYNAMIC_CFG}, got {dynamic_cfg!r}")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        tcfg = self.transformer.config
        height = height or tcfg.sample_height * self.vae_scale_factor_spatial
        width = width or tcfg.sample_width * self.vae_scale_factor_spatial
        num_frames = num_frames or tcfg.sample_frames
        self.check_inputs(image=image, prompt=prompt, height=height, width=width, negative_prompt=negative_prompt,
                          callback_on_step_end_tensor_inputs=None, latents=latents, prompt_embeds=prompt_embeds,
                          negative_prompt_embeds=negative_prompt_embeds)
        batch = 1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        device = self._execution_device
        cfg = guidance_scale > 1.0
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=cfg, num_videos_per_prompt=1,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length, device=device)
        text = torch.cat([negative_prompt_embeds, prompt_embeds]) if cfg else prompt_embeds
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        weights = guidance_weights(guidance_scale, timesteps, dynamic_cfg)

        pixels = self.video_processor.preprocess(image, height=height, width=width).to(device, dtype=text.dtype)
        latents, image_latents = self.prepare_latents(pixels, batch, tcfg.in_channels // 2, num_frames, height,
                                                      width, text.dtype, device, generator, latents)
        if tracking_maps is None and tracking_video is not None:
            tracking_maps = self.prepare_tracking(tracking_video, batch, num_frames, height, width, generator,
                                                  tracking_range, tracking_encode, device, text.dtype)
        if tracking_maps is not None and tuple(tracking_maps.shape) != tuple(image_latents.shape[:2]) + (
                image_latents.shape[2] * 2, *image_latents.shape[3:]):
            raise ValueError(f"tracking_maps {tuple(tracking_maps.shape)} do not fit latents "
                             f"{tuple(image_latents.shape)} (need twice the channels)")
        extra = self.prepare_extra_step_kwargs(generator, eta)
        rope = (self._prepare_rotary_positional_embeddings(height, width, latents.size(1), device)
                if tcfg.use_rotary_positional_embeddings else None)
        ofs = None if tcfg.ofs_embed_dim is None else latents.new_full((1,), fill_value=2.0)
        track_in = torch.cat([tracking_maps] * 2) if (cfg and tracking_maps is not None) else tracking_maps
        old_x0 = None
        for i, t in enumerate(self.progress_bar(timesteps) if progress else timesteps):
            x_in = torch.cat([latents] * 2) if cfg else latents
            image_in = torch.cat([image_latents] * 2) if cfg else image_latents
            x_in = torch.cat([self.scheduler.scale_model_input(x_in, t), image_in], 2)
            v = self.transformer(hidden_states=x_in, encoder_hidden_states=text, timestep=t.expand(x_in.shape[0]),
                                 tracking_maps=track_in, ofs=ofs, image_rotary_emb=rope, return_dict=False,
                                 tracking_scale=tracking_scale)[0].float()
            if cfg:
                v_u, v_c = v.chunk(2)
                v = v_u + weights[i] * (v_c - v_u)
            else:
                v_c = v
            if tracking_guidance and tracking_maps is not None:  # a third pass: same text, no tracking
                v_nt = self.transformer(hidden_states=x_in[-batch:], encoder_hidden_states=text[-batch:],
                                        timestep=t.expand(batch), tracking_maps=None, ofs=ofs, image_rotary_emb=rope,
                                        return_dict=False)[0].float()
                v = v + tracking_guidance * (v_c - v_nt)
            if isinstance(self.scheduler, CogVideoXDPMScheduler):
                latents, old_x0 = self.scheduler.step(v, old_x0, t, timesteps[i - 1] if i > 0 else None, latents,
                                                      **extra, return_dict=False)
            else:
                latents = self.scheduler.step(v, t, latents, **extra, return_dict=False)[0]
            latents = latents.to(text.dtype)
        self.last_guidance_weights = weights
        if output_type == "latent":
            return latents
        video = self.decode_latents(latents)
        return self.video_processor.postprocess_video(video=video, output_type=output_type)


def dpm_scheduler(config: dict | None = None) -> CogVideoXDPMScheduler:
    """CogVideoX-5B's scheduler (v-prediction, zero-terminal-SNR, trailing spacing), or a folder's config."""
    base = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=1.0, set_alpha_to_one=True,
                steps_offset=0, timestep_spacing="trailing", clip_sample=False)
    base.update({k: v for k, v in (config or {}).items() if not k.startswith("_")})
    base["timestep_spacing"] = "trailing"
    return CogVideoXDPMScheduler(**base)


def load_components(folder: str | Path, torch_dtype=None,
                    parts=("vae", "text_encoder", "tokenizer", "scheduler")) -> dict:
    """The VAE, T5, tokenizer and scheduler (or the named `parts`) of a local CogVideoX / DaS pipeline folder."""
    folder = Path(folder)
    missing = [n for n in parts if not (folder / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(n + '/' for n in missing)}; expected a diffusers "
                                "CogVideoX-5B-I2V or DaS folder with transformer/ vae/ text_encoder/ tokenizer/ "
                                "scheduler/")
    kw = dict(local_files_only=True)
    out = {}
    if "vae" in parts:
        from diffusers import AutoencoderKLCogVideoX

        out["vae"] = AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae", torch_dtype=torch_dtype, **kw)
    if "text_encoder" in parts:
        from transformers import T5EncoderModel

        out["text_encoder"] = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=torch_dtype,
                                                             **kw)
    if "tokenizer" in parts:
        from transformers import T5Tokenizer

        out["tokenizer"] = T5Tokenizer.from_pretrained(folder, subfolder="tokenizer", **kw)
    if "scheduler" in parts:
        out["scheduler"] = dpm_scheduler(CogVideoXDPMScheduler.load_config(folder, subfolder="scheduler", **kw))
    return out
