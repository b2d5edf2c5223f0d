"""The System contract with a frozen part (as the tracking-conditioned video DiT will have): optimizer state and EMA
only for what trains, export of the trainable subset, strict reload of exactly that subset; EMA maths."""
import pytest
import torch
from torch import nn

from models.core.ema import EMA
from models.core.optim import build_optimizer, lr_at
from models.core.config import OptimConfig
from models.systems.base import System


class FrozenBase(System):
    name = "frozen_base_test"

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.net = nn.ModuleDict({"base": nn.Linear(4, 4), "branch": nn.Linear(4, 4)})
        self.net["base"].requires_grad_(False)
        self.net.register_buffer("scale", torch.ones(4))

    def forward(self, batch):
        x = batch["x"]
        return (self.net["branch"](self.net["base"](x)) * self.net.scale).square().mean(), {}


def test_only_trainable_parameters_get_optimizer_state_and_export():
    system = FrozenBase()
    assert sorted(system.trainable()) == ["branch.bias", "branch.weight"]
    opt = build_optimizer(system, OptimConfig(lr=1e-2))
    loss, _ = system({"x": torch.randn(3, 4)})
    loss.backward()
    opt.step()
    assert len(opt.state) == 2 and system.net["base"].weight.grad is None
    exported = system.export_state_dict()
    assert sorted(exported) == ["branch.bias", "branch.weight", "scale"]

    fresh = FrozenBase()
    fresh.load_export(exported)
    assert torch.equal(fresh.net["branch"].weight, system.net["branch"].weight)
    with pytest.raises(RuntimeError, match="missing"):
        fresh.load_export({k: v for k, v in exported.items() if k != "branch.bias"})
    with pytest.raises(RuntimeError, match="unexpected"):
        fresh.load_export(dict(exported, extra=torch.zeros(1)))


def test_ema_warmup_foreach_update_and_swap():
    p = nn.Parameter(torch.zeros(3))
    ema = EMA({"p": p}, decay=0.9)
    assert [round(ema.current_decay(), 6) for _ in range(1)] == [0.1]  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update([p])  # shadow = 0 + (1 - 0.1) * (1 - 0) = 0.9
    torch.testing.assert_close(ema.state_dict()["p"], torch.full((3,), 0.9))
    ema.num_updates = 100
    assert ema.current_decay() == 0.9  # warm-up capped at the decay
    with ema.swapped_into([p]):
        torch.testing.assert_close(p.detach(), torch.full((3,), 0.9))
    assert torch.equal(p.detach(), torch.ones(3))  # restored
    again = EMA({"p": p}, decay=0.9)
    again.load(ema.state_dict(), ema.meta())
    assert again.num_updates == 100 and torch.equal(again.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError, match="does not match"):
        again.load({"q": torch.zeros(3)}, ema.meta())


def test_lr_schedule_values():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine")
    assert [lr_at(s, cfg, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(8, cfg, 12) == pytest.approx(0.5)  # halfway through the cosine part
    assert lr_at(12, cfg, 12) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(7, OptimConfig(lr=0.3), 10) == 0.3
