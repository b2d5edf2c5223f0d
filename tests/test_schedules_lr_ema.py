"""The EMA of the exported weights (k-diffusion's warm-up decay) and the learning-rate schedule of the loop:
values at known steps, the update against a hand computation, and a safetensors round trip of the EMA state."""
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.core.config import OptimConfig
from models.core.ema import EMA

try:
    from models.core.optim import lr_at
except ImportError:  # older layout: the schedule lived in the training script
    from train_diffusion import lr_at


# ------------------------------------------------------------------------------------------------------------ EMA
def test_warmup_decay_values():
    ema = EMA({"w": nn.Parameter(torch.zeros(1))}, decay=0.999)
    got = []
    for k in (0, 1, 8, 90, 8989, 9000, 10**6):
        ema.num_updates = k
        got.append(ema.current_decay())
    assert got[:4] == [pytest.approx(v, rel=1e-15) for v in (1 / 10, 2 / 11, 9 / 18, 91 / 100)]  # (1 + k) / (10 + k)
    assert got[4] == pytest.approx(8990 / 8999) and got[4] < 0.999  # still warming up
    assert got[5] == got[6] == 0.999  # capped at the configured decay
    plain = EMA({"w": nn.Parameter(torch.zeros(1))}, decay=0.9, warmup=False)
    assert plain.current_decay() == 0.9
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="decay"):
            EMA({"w": nn.Parameter(torch.zeros(1))}, decay=bad)


def test_update_matches_hand_computation():
    """shadow <- d_k shadow + (1 - d_k) p, with d_k the warm-up decay of update k, for every tensor; in fp32 even
    when the parameters are bf16."""
    g = torch.Generator().manual_seed(0)
    a = nn.Parameter(torch.randn(4, 3, generator=g))
    b = nn.Parameter(torch.randn(5, generator=g).bfloat16())
    ema = EMA({"a": a, "b": b}, decay=0.5)
    want = [a.detach().double().clone(), b.detach().double().clone()]
    for k in range(4):
        with torch.no_grad():
            a.add_(torch.randn(a.shape, generator=g))
            b.copy_(torch.randn(b.shape, generator=g))
        d = min(0.5, (1 + k) / (10 + k))  # 0.1, 0.1818, 0.25, 0.3077
        want = [d * w + (1 - d) * p.detach().double() for w, p in zip(want, (a, b))]
        ema.update([a, b])
    assert ema.num_updates == 4
    state = ema.state_dict()
    assert list(state) == ["a", "b"] and all(v.dtype == torch.float32 for v in state.values())
    torch.testing.assert_close(state["a"].double(), want[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(state["b"].double(), want[1], atol=1e-6, rtol=1e-6)
    assert (state["a"] - a.detach()).abs().max() > 1e-2  # the average lags the live weights


def test_shadow_is_a_copy_and_swap_restores_on_error():
    p = nn.Parameter(torch.ones(3))
    ema = EMA({"p": p}, decay=0.9)
    with torch.no_grad():
        p.mul_(5)
    assert torch.equal(ema.state_dict()["p"], torch.ones(3))  # not a view of the parameter
    with pytest.raises(RuntimeError, match="inside"):
        with ema.swapped_into([p]):
            assert torch.equal(p.detach(), torch.ones(3))
            raise RuntimeError("inside")
    assert torch.equal(p.detach(), torch.full((3,), 5.0))  # live weights back after an exception


def test_state_round_trip_through_safetensors(tmp_path):
    """What the loop saves (tensors as safetensors, counters as string metadata) restores the EMA exactly, and the
    restored EMA continues exactly as the original would have."""
    g = torch.Generator().manual_seed(1)
    params = {"w": nn.Parameter(torch.randn(6, 2, generator=g)), "b": nn.Parameter(torch.randn(2, generator=g))}
    ema = EMA(params, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            for q in params.values():
                q.add_(0.1)
        ema.update(list(params.values()))
    save_file(ema.state_dict(), str(tmp_path / "ema.safetensors"), metadata=ema.meta())
    fresh = EMA({k: nn.Parameter(torch.zeros_like(v)) for k, v in params.items()}, decay=0.99)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ema.safetensors"), "pt") as f:
        meta = f.metadata()
    fresh.load(load_file(str(tmp_path / "ema.safetensors")), meta)
    assert fresh.num_updates == 3 and meta["decay"] == "0.99" and meta["warmup"] == "True"
    assert all(torch.equal(fresh.state_dict()[k], ema.state_dict()[k]) for k in params)
    ema.update(list(params.values()))
    fresh.update(list(params.values()))
    assert fresh.current_decay() == ema.current_decay()
    assert all(torch.equal(fresh.state_dict()[k], ema.state_dict()[k]) for k in params)
    with pytest.raises(ValueError, match="does not match"):
        fresh.load({"w": torch.zeros(6, 2)}, meta)


# ------------------------------------------------------------------------------------------------------------ LR
def test_linear_warmup_then_constant():
    cfg = OptimConfig(lr=0.01, warmup_steps=5)
    assert [lr_at(s, cfg, 100) for s in range(7)] == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01, 0.01, 0.01])
    assert lr_at(99, cfg, 100) == 0.01 and lr_at(10**6, cfg, 100) == 0.01
    assert lr_at(0, OptimConfig(lr=0.01), 100) == 0.01  # no warm-up: full LR from the first step


def test_cosine_after_warmup_known_values():
    cfg = OptimConfig(lr=2.0, warmup_steps=10, schedule="cosine")
    total = 110  # cosine over steps 10..110
    assert lr_at(9, cfg, total) == pytest.approx(2.0)  # last warm-up step reaches the peak
    assert lr_at(10, cfg, total) == pytest.approx(2.0)
    assert lr_at(35, cfg, total) == pytest.approx(1.0 + math.sqrt(0.5))  # a quarter: 0.5 (1 + cos(pi / 4))
    assert lr_at(60, cfg, total) == pytest.approx(1.0)  # halfway
    assert lr_at(110, cfg, total) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(500, cfg, total) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at 0
    values = [lr_at(s, cfg, total) for s in range(10, 111)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    no_warmup = OptimConfig(lr=1.0, schedule="cosine")
    assert lr_at(0, no_warmup, 4) == 1.0 and lr_at(2, no_warmup, 4) == pytest.approx(0.5)
