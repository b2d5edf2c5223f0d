"""The System contract: what the one training loop and the inference scripts rely on (STYLE.md §3.1)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn


class System(nn.Module):
    """A network wired to its diffusion process and data convention.

    Subclasses set `Config` (a dataclass with `optim` and `train` sections), build `self.net` (the only module whose
    weights are exported), and implement the three methods below.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.step = 0

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss (scalar) and detached logs. Randomness comes from the global torch RNG (reseeded per step)."""
        raise NotImplementedError

    def train_dataset(self, split: str = "train", root: str | Path | None = None) -> torch.utils.data.Dataset:
        """Dataset whose items are indexed by (index, seed); the seed drives all per-item randomness."""
        raise NotImplementedError

    def demo(self, out_dir: Path, step: int) -> list[Path]:
        """Write fixed-seed sample pictures; called on the EMA copy during training."""
        return []
