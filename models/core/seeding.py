"""Seeds per sample and per step, so results depend neither on batch size nor on GPU count (EDM2's per-sample
generators, Karras et al. 2024)."""
from __future__ import annotations

import hashlib

import torch


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            lo, dash, hi = part.partition("-")
            lo_i, hi_i = int(lo), int(hi if dash else lo)  # "1-" is an error, not [1]
            if lo_i < 0 or hi_i < lo_i:
                raise ValueError
            seeds.extend(range(lo_i, hi_i + 1))
    except ValueError:
        raise ValueError(f"bad seed list '{text}': use e.g. 0-9 or 0,3,5-7") from None
    if not seeds:
        raise ValueError(f"bad seed list '{text}': no seeds")
    return seeds


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from any tuple (e.g. (run_seed, rank, step)); independent of Python's hash salt."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


class SampleRNG:
    """One generator per sample (EDM2's StackedRandomGenerator): sample i's draws depend only on seeds[i].

    Training noise drawn through it is the same whatever the batch split over processes and accumulation steps,
    and inference noise the same whatever the batch a seed is sampled in. Draws happen on `device` (a CUDA
    generator on GPU: no host transfer), so a seed gives the same numbers on every machine of one device type.
    """

    def __init__(self, seeds, device: str | torch.device = "cpu"):
        seeds = seeds.tolist() if torch.is_tensor(seeds) else list(seeds)
        self.device = torch.device(device)
        self.gens = [seeded_generator(int(s), self.device) for s in seeds]

    def __len__(self):
        return len(self.gens)

    def randn(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """[N, *shape] standard normal draws."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype) for g in self.gens])

    def rand(self, *shape: int, dtype=torch.float32) -> torch.Tensor:
        """[N, *shape] uniform draws in [0, 1)."""
        return torch.stack([torch.rand(shape, generator=g, device=self.device, dtype=dtype) for g in self.gens])

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """[N, *shape] integers in [0, high)."""
        return torch.stack([torch.randint(high, shape, generator=g, device=self.device) for g in self.gens])
