"""CogVideoX transformer with the Diffusion-as-Shader tracking branch (Gu et al. 2025, Sec. 3.3, Fig. 2).

A trainable copy of the first N CogVideoX blocks reads the tracking video's latents; after each of those blocks its
output passes a zero-initialised linear and is added to the frozen main stream (ControlNet-style, Zhang et al. 2023).
Class and attribute names follow the released checkpoint (`CogVideoXTransformer3DModelTracking`,
`transformer_blocks_copy`, `combine_linears`, `initial_combine_linear`) so that folder loads strictly.

Built on diffusers' CogVideoXTransformer3DModel (imported here: this module is only imported when DaS is used).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from torch import nn

BRANCH_PREFIXES = ("initial_combine_linear.", "transformer_blocks_copy.", "combine_linears.")
CLASS_NAME = "CogVideoXTransformer3DModelTracking"


class CheckpointFormatError(ValueError):
    """A folder or state dict that is not what the loader was asked to load (message says what it is)."""


def is_branch_key(key: str) -> bool:
    return key.startswith(BRANCH_PREFIXES)


def _read_config(path: str | Path, subfolder: str | None) -> dict:
    folder = Path(path) / (subfolder or "")
    file = folder / "config.json"
    if not file.is_file():
        raise CheckpointFormatError(f"{folder}: no config.json (expected a diffusers transformer folder with "
                                    "config.json and diffusion_pytorch_model*.safetensors)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointFormatError(f"{file}: not valid JSON ({err})") from None


class CogVideoXTransformer3DModelTracking(CogVideoXTransformer3DModel):
    """CogVideoX-5B-I2V + tracking branch. `forward(..., tracking_maps=None)` is exactly the parent model."""

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        num_tracking_blocks: int = 18,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim, in_channels=in_channels,
            out_channels=out_channels, flip_sin_to_cos=flip_sin_to_cos, freq_shift=freq_shift,
            time_embed_dim=time_embed_dim, ofs_embed_dim=ofs_embed_dim, text_embed_dim=text_embed_dim,
            num_layers=num_layers, dropout=dropout, attention_bias=attention_bias, sample_width=sample_width,
            sample_height=sample_height, sample_frames=sample_frames, patch_size=patch_size, patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio, max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn, timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings, patch_bias=patch_bias)
        if not 0 <= num_tracking_blocks <= num_layers:
            raise ValueError(f"num_tracking_blocks={num_tracking_blocks} must be in [0, num_layers={num_layers}]")
        inner = num_attention_heads * attention_head_dim
        # Defined weights on every construction path: copies of the freshly built main blocks, zero injections
        # (the zero convolutions of ControlNet, Zhang et al. 2023, Sec. 3.1).
        self.transformer_blocks_copy = nn.ModuleList(
            [copy.deepcopy(self.transformer_blocks[i]) for i in range(num_tracking_blocks)])
        self.combine_linears = nn.ModuleList([nn.Linear(inner, inner) for _ in range(num_tracking_blocks)])
        self.initial_combine_linear = nn.Linear(inner, inner)
        self.zero_branch_linears()

    # ------------------------------------------------------------------------------------------------ branch
    def zero_branch_linears(self) -> None:
        for lin in [self.initial_combine_linear, *self.combine_linears]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def copy_main_blocks_into_branch(self) -> None:
        with torch.no_grad():
            for i, block in enumerate(self.transformer_blocks_copy):
                block.load_state_dict(self.transformer_blocks[i].state_dict())

    def branch_modules(self) -> list[nn.Module]:
        return [self.initial_combine_linear, self.transformer_blocks_copy, self.combine_linears]

    def branch_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable part only (2.56 B parameters for the 5B config instead of 8.1 B)."""
        return {k: v for k, v in self.state_dict().items() if is_branch_key(k)}

    def load_branch_state_dict(self, state: dict[str, torch.Tensor], assign: bool = False) -> None:
        """Exactly the branch keys with their shapes, or a CheckpointFormatError naming the first problems."""
        expected = {k: v.shape for k, v in self.state_dict().items() if is_branch_key(k)}
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
        if missing or extra or shapes:
            raise CheckpointFormatError(
                f"branch state dict does not match num_tracking_blocks={self.config.num_tracking_blocks}: "
                f"{len(missing)} missing (e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]}), "
                f"{len(shapes)} of another shape (e.g. {shapes[:2]})")
        self.load_state_dict(state, strict=False, assign=assign)

    def freeze_base(self) -> None:
        """Only the branch trains (the paper fine-tunes the copy and the injections, the base stays frozen)."""
        self.requires_grad_(False)
        for module in self.branch_modules():
            module.requires_grad_(True)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_base(cls, base, num_tracking_blocks: int = 18, torch_dtype=None, subfolder: str | None = None,
                  **kwargs) -> "CogVideoXTransformer3DModelTracking":
        """A plain CogVideoX transformer (module or folder) + a fresh branch: copies of main blocks 0..N-1, zero
        linears. The base weights load strictly; the keys it lacks must be exactly the branch keys."""
        from accelerate import init_empty_weights

        if not isinstance(base, CogVideoXTransformer3DModel):
            config = _read_config(base, subfolder)
            if "num_tracking_blocks" in config:
                n = config["num_tracking_blocks"]
                raise CheckpointFormatError(f"{base}: this is already a DaS tracking transformer "
                                            f"(num_tracking_blocks={n}); use from_pretrained")
            base = CogVideoXTransformer3DModel.from_pretrained(base, subfolder=subfolder, torch_dtype=torch_dtype,
                                                               local_files_only=True, **kwargs)
        config = {k: v for k, v in dict(base.config).items() if not k.startswith("_")}
        with init_empty_weights(include_buffers=False):
            model = cls(**config, num_tracking_blocks=num_tracking_blocks)
        state = base.state_dict()
        result = model.load_state_dict(state, strict=False, assign=True)
        branch = {k for k in model.state_dict() if is_branch_key(k)}
        if set(result.missing_keys) != branch or result.unexpected_keys:
            lost = sorted(set(result.missing_keys) - branch)[:3]
            raise CheckpointFormatError(f"base weights do not fit: missing {lost}, unexpected "
                                        f"{result.unexpected_keys[:3]}")
        ref = next(base.parameters())
        for module in model.branch_modules():
            module.to_empty(device=ref.device)
            module.to(ref.dtype)
        model.copy_main_blocks_into_branch()
        model.zero_branch_linears()
        model.freeze_base()
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "CogVideoXTransformer3DModelTracking":
        """Strict load of a DaS transformer folder. A base CogVideoX folder is refused (use `from_base`); a missing,
        unexpected or mis-shaped tensor is an error, never a silent conversion."""
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():
            raise CheckpointFormatError(f"{path}: not a local folder (only local folders are loaded)")
        config = _read_config(path, kwargs.get("subfolder"))
        if "num_tracking_blocks" not in config:
            raise CheckpointFormatError(f"{path}: this looks like a base CogVideoX transformer "
                                        f"(_class_name={config.get('_class_name')!r}, no num_tracking_blocks); "
                                        f"use {CLASS_NAME}.from_base to add a fresh tracking branch")
        kwargs.setdefault("local_files_only", True)
        kwargs["output_loading_info"] = True
        model, info = super().from_pretrained(path, **kwargs)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            raise CheckpointFormatError(f"{path}: not a complete DaS transformer: "
                                        + "; ".join(f"{k} {list(v)[:3]}" for k, v in bad.items()))
        return model

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep,
                tracking_maps: torch.Tensor | None = None, timestep_cond: torch.Tensor | None = None, ofs=None,
                image_rotary_emb=None, attention_kwargs: dict | None = None, return_dict: bool = True,
                tracking_scale: float = 1.0):
        """hidden_states [B, F, 2C, H, W] = [noisy video, image] latents; tracking_maps [B, F, 2C, H, W] = [tracking
        video, tracking first frame] latents. Returns the v-prediction [B, F, C, H, W]."""
        n_branch = len(self.transformer_blocks_copy)
        if tracking_maps is None or tracking_scale == 0 or n_branch == 0:
            return super().forward(hidden_states, encoder_hidden_states, timestep, timestep_cond=timestep_cond,
                                   ofs=ofs, image_rotary_emb=image_rotary_emb, attention_kwargs=attention_kwargs,
                                   return_dict=return_dict)
        if tracking_maps.shape != hidden_states.shape:
            raise ValueError(f"tracking_maps {tuple(tracking_maps.shape)} must match hidden_states "
                             f"{tuple(hidden_states.shape)}")
        batch, frames, _, height, width = hidden_states.shape
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))

        # The tracking latents go through the same frozen patch embedding (its 2C input channels were made for
        # [noisy, image]); its text part is discarded.
        x = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        y = self.patch_embed(encoder_hidden_states, tracking_maps)
        n_text = encoder_hidden_states.shape[1]
        text, h, g = x[:, :n_text], x[:, n_text:], y[:, n_text:]
        g = self.initial_combine_linear(h + g)  # the released model adds the video tokens before the branch

        ckpt = torch.is_grad_enabled() and self.gradient_checkpointing
        for i, block in enumerate(self.transformer_blocks):
            h, text = self._run(block, ckpt, h, text, emb, image_rotary_emb, attention_kwargs)
            if i < n_branch:
                # the copy reads the main stream's text after block i; the zero linear's output is what chains on
                g, _ = self._run(self.transformer_blocks_copy[i], ckpt, g, text, emb, image_rotary_emb,
                                 attention_kwargs)
                g = self.combine_linears[i](g)
                h = h + tracking_scale * g

        h = self.proj_out(self.norm_out(self.norm_final(h), temb=emb))
        p = self.config.patch_size
        if self.config.patch_size_t is None:
            out = h.reshape(batch, frames, height // p, width // p, -1, p, p)
            out = out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        else:
            pt = self.config.patch_size_t
            out = h.reshape(batch, (frames + pt - 1) // pt, height // p, width // p, -1, pt, p, p)
            out = out.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def _run(self, block, ckpt: bool, h, text, emb, rope, attention_kwargs):
        if ckpt:
            return self._gradient_checkpointing_func(block, h, text, emb, rope, attention_kwargs)
        return block(hidden_states=h, encoder_hidden_states=text, temb=emb, image_rotary_emb=rope,
                     attention_kwargs=attention_kwargs)


def cogvideox_5b_i2v_config(num_tracking_blocks: int = 18) -> dict:
    """The CogVideoX-5B-I2V (v1.0) transformer config (Yang et al. 2024) with the DaS branch."""
    return dict(num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, time_embed_dim=512,
                text_embed_dim=4096, num_layers=42, sample_width=90, sample_height=60, sample_frames=49, patch_size=2,
                temporal_compression_ratio=4, max_text_seq_length=226, spatial_interpolation_scale=1.875,
                temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True,
                use_learned_positional_embeddings=True, num_tracking_blocks=num_tracking_blocks)
