"""The System contract: everything the one training loop and the entry scripts rely on.

A System is an nn.Module that wires networks to a training objective (a diffusion loss, or a per-scene inverse-rendering
objective) and to a data convention. The loop needs only the methods below, so diffusion models, a 5 B-parameter
frozen-base video DiT and a non-diffusion optimiser plug in alike:

- `forward(batch) -> (loss, logs)`: the training objective. `batch["seed"]` holds one noise seed per sample;
  draw randomness through `self.rng(batch)` so a run does not depend on how the batch is split (processes,
  accumulation).
- `train_dataset(split, root)`: items keyed by (index, seed). May offer `get_batch(keys)` for batched loading.
- `check_start()`: refuse a fresh run that cannot start, before the run folder is touched.
- `trainable()`: the named parameters that train (optimizer state and EMA exist only for these);
  `param_groups(lr)`: their optimizer groups. Frozen parts are simply left out.
- `export_state_dict()` / `load_export(state)`: what goes in the exported .safetensors (the trainable subset with
  its buffers; a system with a frozen base records where the base comes from in `export_metadata()`).
- `set_gradient_checkpointing(on)`.
- `infer(inputs, seeds, **sampling) -> dict[str, np.ndarray]`: one inference signature for every entry script;
  `example_inputs()` gives a small valid input (smoke tests and demos).
- `demo(out_dir, step)`: fixed-seed pictures written during training.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from models.core.seeding import SampleRNG


class System(nn.Module):
    name: ClassVar[str] = ""
    Config: ClassVar[type]
    use_ema: ClassVar[bool] = True  # a system may opt out (e.g. a per-scene optimiser); cfg.optim.ema_decay=0 too

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.step = 0

    # ---------------------------------------------------------------------------------------------- training
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def train_dataset(self, split: str = "train", root: str | Path | None = None) -> torch.utils.data.Dataset:
        raise NotImplementedError

    @staticmethod
    def rng(batch: dict) -> SampleRNG:
        """Per-sample generators seeded by the loop (`batch["seed"]`), on the batch's device."""
        seeds = batch["seed"]
        device = next((v.device for v in batch.values() if torch.is_tensor(v) and v.is_floating_point()), "cpu")
        return SampleRNG(seeds, device)

    def check_start(self) -> None:
        """Called by the loop on a fresh run, after --init-from and before anything is written: raise
        models.core.cli.UserError when the run cannot start (e.g. a later stage without its predecessor)."""

    def exported_module(self) -> nn.Module:
        """The module whose state dict is exported (key names as in the export file)."""
        return self.net

    def trainable(self) -> dict[str, nn.Parameter]:
        """Named parameters that train, named as in `exported_module().state_dict()`."""
        return {n: p for n, p in self.exported_module().named_parameters() if p.requires_grad}

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups; default one group of every trainable parameter."""
        return [{"params": list(self.trainable().values()), "lr": lr}]

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable parameters + buffers of the exported module (frozen parameters are not exported)."""
        frozen = {n for n, p in self.exported_module().named_parameters() if not p.requires_grad}
        return {k: v for k, v in self.exported_module().state_dict().items() if k not in frozen}

    def load_export(self, state: dict[str, torch.Tensor], assign: bool = False) -> None:
        """Strict inverse of export_state_dict: exactly the exported keys, with their shapes."""
        module = self.exported_module()
        frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
        result = module.load_state_dict(state, strict=not frozen, assign=assign)
        if frozen:
            missing = set(result.missing_keys) - frozen
            if missing or result.unexpected_keys:
                raise RuntimeError(f"missing keys {sorted(missing)[:3]}, unexpected keys {result.unexpected_keys[:3]}")

    @classmethod
    def from_export(cls, cfg, state: dict[str, torch.Tensor], meta: dict[str, str]) -> "System":
        """Build on the meta device (no random init) and load the exported tensors straight into it."""
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            system = cls(cfg)
        system.load_export(state, assign=True)
        return system

    def export_config(self) -> dict:
        """The config written into an export; default the whole config."""
        from models.core.config import to_dict

        return to_dict(self.cfg)

    def export_metadata(self) -> dict[str, str]:
        """Extra str->str metadata for the export (e.g. the path of a frozen base model)."""
        return {}

    def set_gradient_checkpointing(self, on: bool) -> None:
        fn = getattr(self.exported_module(), "set_gradient_checkpointing", None)
        if fn is None:
            from models.core.cli import UserError

            raise UserError(f"system '{self.name}' has no gradient checkpointing")
        fn(on)

    # --------------------------------------------------------------------------------------------- inference
    def infer(self, inputs: dict, seeds: list[int], **sampling) -> dict[str, np.ndarray]:
        """One sample per seed; returns named arrays with a leading seed axis."""
        raise NotImplementedError

    def example_inputs(self) -> dict:
        """A small valid input for `infer`."""
        raise NotImplementedError

    def demo(self, out_dir: Path, step: int) -> list[Path]:
        """Write fixed-seed sample pictures; called with the EMA weights swapped in."""
        return []

    @property
    def device(self) -> torch.device:
        return next(self.exported_module().parameters()).device
