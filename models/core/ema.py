"""Exponential moving average of a module's parameters, kept in fp32 (DiT: initialised as an exact copy)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """EMA with the k-diffusion style warm-up: decay_k = min(decay, (1 + k) / (10 + k)).

    Registered with accelerate's `register_for_checkpointing`, so it needs state_dict/load_state_dict.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(module).float().eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        for ema_p, p in zip(self.module.parameters(), module.parameters()):
            ema_p.lerp_(p.detach().float(), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), module.buffers()):
            ema_b.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
