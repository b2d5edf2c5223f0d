"""The Omages Imagen-style UNet and both systems with arch = unet (`omages_g2m` with the geometry concatenated,
`omages_n2g` unconditioned but for the label): shapes, zero output at init, gradients everywhere, a trained label
table, the faithful size, CFG at scale 1, per-seed samples, reload, 2-step run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import test_omages_models as dit_tests
from models.core.cli import UserError
from models.core.config import load_config
from models.core.registry import get_system
from models.nets.omages_unet import OmagesUNet, OmagesUNetConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = "configs/omages/g2m_unet_tiny.json"
N2G_TINY = "configs/omages/n2g_unet_tiny.json"


def tiny_net():
    torch.manual_seed(0)
    return OmagesUNet(OmagesUNetConfig(dim=8, dim_mults=[1, 2], num_res_blocks=1, attn_levels=[2], heads=2,
                                       dim_head=8, num_classes=4))


def _batch():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 5, 64, 64, generator=g), torch.tensor([3, 700]), torch.tensor([1, 4]),
            torch.randn(2, 4, 64, 64, generator=g))


def test_unet_shape_and_zero_output_at_init():
    net = tiny_net()
    x, t, y, c = _batch()
    out = net(x, t, y, c)
    assert out.shape == (2, 10, 64, 64)
    assert torch.equal(out, torch.zeros_like(out))


def test_unet_gradients_reach_every_parameter_and_label_table_trains():
    net = tiny_net()
    assert any(p is net.y_embed.weight for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, t, y, c = _batch()
    table = net.y_embed.weight.detach().clone()
    for step in range(2):  # step 1 opens the zero final conv, step 2 reaches everything behind it
        opt.zero_grad()
        (net(x, t, y, c) - 1).square().mean().backward()
        if step == 0:
            assert [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0] == [
                "final_conv.weight", "final_conv.bias"]
        opt.step()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    moved = (net.y_embed.weight.detach() - table).abs().sum(1) > 0
    assert moved.tolist() == [False, True, False, False, True]  # exactly the rows of the labels seen (1 and null 4)


def test_gradient_checkpointing_gives_the_same_gradients():
    net = tiny_net()
    torch.nn.init.normal_(net.final_conv.weight, std=0.1)
    x, t, y, c = _batch()
    grads = []
    for on in (False, True):
        net.set_gradient_checkpointing(on)
        net.zero_grad()
        net(x, t, y, c).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*grads))


def test_faithful_g2m_unet_size_on_meta_device():
    cfg = load_config("configs/omages/g2m_faithful.json")
    assert cfg.arch == "unet"
    with torch.device("meta"):
        system = get_system(cfg.system)(cfg)
    n = sum(p.numel() for p in system.net.parameters())
    print(f"faithful G2M UNet: {n:,} parameters")
    assert isinstance(system.net, OmagesUNet) and n == 418_471_434


def test_bad_arch_and_channels_are_user_errors():
    cfg = load_config(TINY, ["arch=vit"])
    with pytest.raises(UserError, match="arch must be one of dit, unet"):
        get_system(cfg.system)(cfg)
    cfg = load_config("configs/omages/tiny.json", ["arch=unet"])  # the default unet section is G2M's
    with pytest.raises(UserError, match="omages_n2g: unet needs in_ch = out_ch = 4, cond_ch = 0"):
        get_system(cfg.system)(cfg)
    cfg = load_config(TINY, ["unet.cond_ch=3"])
    with pytest.raises(UserError, match="unet needs in_ch = out_ch = 5, cond_ch = 4"):
        get_system(cfg.system)(cfg)


def test_cfg_scale_one_is_the_conditional_branch_alone():
    s = dit_tests._system("omages_g2m", TINY)
    assert isinstance(s.net, OmagesUNet)
    seen = []
    s.net.register_forward_pre_hook(lambda _m, args: seen.append(args[2].tolist()))
    inputs = s.example_inputs()
    cond = s.infer(inputs, [3], steps=3, cfg_scale=1.0)["material"]
    assert len(seen) == 3 and all(y == inputs["labels"] for y in seen)  # one call per step, never the null label
    seen.clear()
    uncond = s.infer(inputs, [3], steps=3, cfg_scale=0.0)["material"]
    assert all(y == inputs["labels"] + [s.net.null_label] for y in seen)
    assert not np.allclose(cond, uncond)  # the label reaches the output


@pytest.mark.parametrize("name,cfg", [("omages_g2m", TINY), ("omages_n2g", N2G_TINY)])
def test_unet_samples_independent_of_batch_and_reload(tmp_path, name, cfg):
    dit_tests.test_samples_independent_of_batch_and_reload(tmp_path, name, cfg, None)


def test_n2g_unet_is_label_only_and_zero_at_init():
    s = get_system("omages_n2g")(load_config(N2G_TINY))
    assert isinstance(s.net, OmagesUNet) and s.net.init_conv.in_channels == 4
    x = torch.randn(2, 4, 64, 64)
    out = s.net(x, torch.tensor([3, 700]), torch.tensor([1, 4]))
    assert out.shape == (2, 8, 64, 64) and torch.equal(out, torch.zeros_like(out))


def test_train_export_infer_unet_tiny(tmp_path):
    from models import load_system

    out = subprocess.run([sys.executable, str(ROOT / "train_diffusion.py"), "--config", TINY, "--out",
                          str(tmp_path / "run"), "--no-demo", "--log-every", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    system = load_system(tmp_path / "run" / "model.safetensors", expect="omages_g2m")
    assert system.step == 2 and system.cfg.arch == "unet" and isinstance(system.net, OmagesUNet)
    both = system.infer(system.example_inputs(), [3, 7])["material"]
    assert both.shape == (2, 5, 64, 64) and np.isfinite(both).all() and not np.allclose(both[0], both[1])
