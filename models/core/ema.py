"""Exponential moving average of the trainable parameters, kept in fp32.

Only what trains is averaged (a frozen 5.6 B-parameter base gets no shadow copy). The shadow starts as an exact copy
(DiT) and uses k-diffusion's warm-up decay min(decay, (1 + k) / (10 + k)). Its state is plain tensors + numbers, saved
as safetensors by the loop: resuming never unpickles anything.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    def __init__(self, params: dict[str, nn.Parameter], decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup, self.num_updates = float(decay), warmup, 0
        self.names = list(params)
        self.shadow = [p.detach().float().clone() for p in params.values()]

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, params: list[torch.Tensor]) -> None:
        """shadow <- shadow + (1 - d) (param - shadow), for all tensors at once (foreach kernels)."""
        d = self.current_decay()
        current = [p.detach().float() for p in params]
        torch._foreach_lerp_(self.shadow, current, 1.0 - d)
        self.num_updates += 1

    def to(self, device) -> "EMA":
        self.shadow = [s.to(device) for s in self.shadow]
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named fp32 tensors (the keys of the trained module's state dict)."""
        return dict(zip(self.names, self.shadow))

    def meta(self) -> dict[str, str]:
        return {"num_updates": str(self.num_updates), "decay": repr(self.decay), "warmup": str(self.warmup)}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
        if sorted(tensors) != sorted(self.names):
            missing = sorted(set(self.names) - set(tensors))[:3]
            raise ValueError(f"EMA state does not match the trainable parameters (missing e.g. {missing})")
        device = self.shadow[0].device if self.shadow else "cpu"
        self.shadow = [tensors[n].float().to(device) for n in self.names]
        self.num_updates = int(meta["num_updates"])

    @contextlib.contextmanager
    def swapped_into(self, params: list[torch.Tensor]):
        """Temporarily put the EMA weights into the live parameters (demos and exports need no second model copy)."""
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, s in zip(params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
