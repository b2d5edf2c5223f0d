"""The DiffMotion training loss, checked on the System itself (models/systems/diffmotion.py), with stand-in networks
whose right answer is known: a zero network has the closed-form expected loss, an oracle has loss 0, and the noise of
each clip depends only on its own seed."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from models import build_system
from models.core.config import load_config
from models.diffusion.losses import expected_loss_at_init

TINY = Path(__file__).resolve().parents[1] / "configs" / "diffmotion" / "tiny.json"


class Zero(torch.nn.Module):
    def forward(self, z, level, cond):
        return torch.zeros_like(z)


class Oracle(torch.nn.Module):
    """The true v = alpha eps - sigma x0 = (alpha z - x0) / sigma, from the level the System passes (0.125 logSNR)."""

    def __init__(self, x0, noise_scale):
        super().__init__()
        self.x0, self.noise_scale = x0.double(), noise_scale

    def forward(self, z, level, cond):
        lam = (level.double() / self.noise_scale)[..., None, None, None]
        alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
        return ((alpha * z.double() - self.x0) / sigma).float()


class Linear(torch.nn.Module):
    """A fixed function of its inputs, so the loss depends on the noise draws."""

    def forward(self, z, level, cond):
        return 0.3 * z + 0.1 * level[..., None, None, None] + 0.2 * cond.mean(2, keepdim=True)


def _system(net):
    system = build_system(load_config(TINY))
    system.net = net
    return system


def _batch(n, size=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"target": torch.rand(n, 3, 9, size, size, generator=g) * 2 - 1,
            "frames": torch.rand(n, 3, 3, size, size, generator=g) * 2 - 1,
            "seed": torch.arange(n)}


def test_zero_network_loss_matches_closed_form():
    """E[loss] of a v-net that outputs 0 is E_t[w a^2 (a^2 + s^2 E[x0^2])]; x0 ~ U[-1, 1] gives E[x0^2] = 1/3."""
    n = 20_000  # clips: one t per clip (shared by its 3 frames), so this is a 20,000-point Monte Carlo over t
    loss, logs = _system(Zero())(_batch(n))
    ref = expected_loss_at_init(1 / 3)
    assert abs(loss.item() / ref - 1) < 0.03, (loss.item(), ref)
    for name in ("loss_normal", "loss_albedo", "loss_material"):  # every group has the same expectation here
        assert abs(logs[name].item() / ref - 1) < 0.05, (name, logs[name].item(), ref)


def test_oracle_network_loss_is_zero_and_groups_weighted():
    batch = _batch(64, size=4)
    system = _system(Oracle(batch["target"], load_config(TINY).diffusion.noise_scale))
    loss, logs = system(batch)
    assert loss.item() < 1e-7 and all(v.item() < 1e-7 for v in logs.values())
    # a network wrong on the albedo only: the total is 0.4 x the albedo group (weights 0.4 / 0.4 / 0.2)
    oracle = system.net

    class AlbedoOff(torch.nn.Module):
        def forward(self, z, level, cond):
            v = oracle(z, level, cond).clone()
            v[:, :, 3:6] += 1.0
            return v

    system.net = AlbedoOff()
    loss, logs = system(batch)
    assert logs["loss_albedo"].item() > 1e-3 and logs["loss_normal"].item() < 1e-7
    torch.testing.assert_close(loss, 0.4 * logs["loss_albedo"] + 0.4 * logs["loss_normal"]
                               + 0.2 * logs["loss_material"], rtol=1e-6, atol=0)


def test_noise_is_per_clip_seed_not_per_batch():
    """A clip's loss depends on its seed only: the batch loss is the mean of the clips' own losses, and the same
    seeds give the same loss whatever the global RNG."""
    system = _system(Linear())
    batch = _batch(3, size=4)
    loss, _ = system(batch)
    alone = []
    for i in range(3):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        alone.append(system(one)[0])
    torch.testing.assert_close(loss, torch.stack(alone).mean(), rtol=1e-6, atol=0)
    torch.manual_seed(123)
    assert torch.equal(system(batch)[0], loss)
    other = dict(batch, seed=batch["seed"] + 10)
    assert not math.isclose(system(other)[0].item(), loss.item(), rel_tol=1e-6)
