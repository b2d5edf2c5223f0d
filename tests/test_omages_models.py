"""Omages generators: the DiT (adaLN-Zero init, learned sigma, faithful size), the discrete IDDPM pieces
(squaredcos_cap_v2, respacing, CFG), and the two systems' infer contract (per-seed samples, reload, bad inputs)."""
import json

import numpy as np
import pytest
import torch

from models.core.cli import UserError
from models.core.config import load_config
from models.core.registry import get_system
from models.diffusion.discrete import respace, squaredcos_cap_v2_betas, vlb_term
from models.diffusion.guidance import cfg_combine, drop_labels
from models.diffusion.schedules import betas_to_alpha_bar
from models.nets.omages_dit import OmagesDiT, OmagesDiTConfig


def tiny_net(**kw):
    torch.manual_seed(0)
    return OmagesDiT(OmagesDiTConfig(patch=8, hidden=32, depth=2, heads=2, num_classes=4, **kw))


def test_dit_shape_and_zero_output_at_init():
    net = tiny_net()
    out = net(torch.randn(3, 4, 64, 64), torch.tensor([0, 500, 999]), torch.tensor([0, 3, 4]))
    assert out.shape == (3, 8, 64, 64)
    assert torch.equal(out, torch.zeros_like(out))


def test_dit_gradients_reach_every_parameter():
    net = tiny_net(cond_ch=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, t, y, c = torch.randn(2, 4, 64, 64), torch.tensor([3, 700]), torch.tensor([1, 4]), torch.randn(2, 4, 64, 64)
    for _ in range(3):  # adaLN-Zero: the zero layers open one level per step (output, then gates, then the rest)
        opt.zero_grad()
        (net(x, t, y, c) - 1).square().mean().backward()
        opt.step()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_faithful_n2g_size_on_meta_device():
    cfg = load_config("configs/omages/n2g_faithful.json")
    with torch.device("meta"):
        net = OmagesDiT(cfg.net)
    assert abs(sum(p.numel() for p in net.parameters()) - 129.6e6) < 0.1e6
    assert net.pos.numel() == 4096 * 768 and not any(b is net.pos for b in net.state_dict().values())


def test_squaredcos_schedule_and_250_step_respacing():
    betas = squaredcos_cap_v2_betas(1000)
    ab = betas_to_alpha_bar(betas)
    assert betas.max() <= 0.999 and (ab > 0).all() and (ab < 1).all() and (ab[1:] < ab[:-1]).all()
    idx, rb = respace(betas, 250)
    assert len(set(idx)) == 250 and idx[0] == 0 and idx[-1] == 999
    assert torch.allclose(betas_to_alpha_bar(rb), ab[idx], rtol=0, atol=1e-12)


def test_cfg_scale_one_is_conditional_and_variance_from_cond():
    c, u = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    assert cfg_combine(c, u, 1.0, 4) is c
    g = cfg_combine(c, u, 4.0, 4)
    assert torch.equal(g[:, 4:], c[:, 4:]) and torch.allclose(g[:, :4], u[:, :4] + 4 * (c[:, :4] - u[:, :4]))
    assert drop_labels(torch.tensor([1, 2]), 0.1, 9, torch.tensor([0.05, 0.5])).tolist() == [9, 2]


def test_vlb_is_zero_for_the_true_posterior_and_trains_only_variance():
    betas = squaredcos_cap_v2_betas(1000)
    x0, eps = torch.rand(2, 4, 8, 8) * 2 - 1, torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 600])
    ab = betas_to_alpha_bar(betas)[t].float().view(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = torch.full_like(x0, -1.0, requires_grad=True)  # f = 0: the posterior variance
    e = eps.clone().requires_grad_(True)
    kl = vlb_term(x0, x_t, t, e, v, betas)
    assert kl.abs().max() < 1e-3
    kl.sum().backward()
    assert e.grad is None and v.grad is not None


def _system(name, cfg_path, overrides=None):
    torch.manual_seed(0)
    system = get_system(name)(load_config(cfg_path, overrides=overrides))
    for p in system.net.parameters():  # leave the zero init so samples depend on the network
        p.data.add_(0.02 * torch.randn_like(p))
    system.train_dataset("train")
    return system.eval()


@pytest.mark.parametrize("name,cfg,overrides", [("omages_n2g", "configs/omages/tiny.json", None),
                                                ("omages_n2g", "configs/omages/tiny.json", ["diffusion.prediction=v"]),
                                                ("omages_n2g", "configs/omages/n2g_unet_tiny.json", None),
                                                ("omages_g2m", "configs/omages/g2m_tiny.json", None)])
def test_samples_independent_of_batch_and_reload(tmp_path, name, cfg, overrides):
    from models.core.checkpoint import export_checkpoint, load_system, read_metadata

    s = _system(name, cfg, overrides)
    one_each = s.example_inputs()
    inputs = {k: np.concatenate([np.asarray(v)] * 2) for k, v in one_each.items()}
    key = "geometry" if name == "omages_n2g" else "material"
    for sampler in ("ddpm", "ddim"):
        both = s.infer(inputs, [5, 6], steps=4, cfg_scale=2.0, sampler=sampler)[key]
        one = {k: np.asarray(v)[1:] for k, v in inputs.items()}
        alone = s.infer(one, [6], steps=4, cfg_scale=2.0, sampler=sampler)[key]
        assert both.shape == (2, 4 if name == "omages_n2g" else 5, 64, 64) and both.dtype == np.float32
        np.testing.assert_allclose(alone[0], both[1], atol=1e-5)
    path = tmp_path / "m.safetensors"
    export_checkpoint(path, system=name, config=s.export_config(), state_dict=s.export_state_dict(), step=0, ema="raw")
    sections = json.loads(read_metadata(path)["config"])
    assert {"net", "unet"} & set(sections) == {s.net_key}  # only the section of the network built
    back = load_system(path, "cpu", expect=name)
    assert back.class_names == s.class_names
    a = s.infer(inputs, [1, 2], steps=3, cfg_scale=4.0)[key]
    assert np.array_equal(a, back.infer(inputs, [1, 2], steps=3, cfg_scale=4.0)[key])


def test_bad_inputs_are_user_errors():
    n2g = _system("omages_n2g", "configs/omages/tiny.json")
    with pytest.raises(UserError, match="unknown label"):
        n2g.infer({"labels": [7]}, [0], steps=2)
    with pytest.raises(UserError, match="cfg_scale"):
        n2g.infer({"labels": [0]}, [0], steps=2, cfg_scale=-1.0)
    with pytest.raises(UserError, match="one label per seed"):
        n2g.infer({"labels": [0, 1]}, [0], steps=2)
    g2m = _system("omages_g2m", "configs/omages/g2m_tiny.json")
    with pytest.raises(UserError, match="shape"):
        g2m.infer({"geometry": np.zeros((1, 3, 64, 64), np.float32), "labels": [0]}, [0], steps=2)


@pytest.mark.parametrize("k", [9, 4, 0])
def test_ddpm_step_and_vlb_take_a_v_output_like_the_eps_it_stands_for(k):
    from models.diffusion.discrete import ddpm_step
    from models.diffusion.parameterization import v_from_eps_x0

    _, betas = respace(squaredcos_cap_v2_betas(1000), 10)
    alpha = betas_to_alpha_bar(betas)[k].sqrt().float()  # k = 9: alpha ~ 0.03, the ill-conditioned end
    sigma = (1 - alpha ** 2).sqrt()
    g = torch.Generator().manual_seed(k)
    x0, eps = torch.rand(2, 4, 8, 8, generator=g) * 2 - 1, torch.randn(2, 4, 8, 8, generator=g)
    var = torch.rand(2, 4, 8, 8, generator=g) * 2 - 1
    x_t = alpha * x0 + sigma * eps
    v = v_from_eps_x0(eps, x0, alpha, sigma)
    mean, x0_same = ddpm_step(x_t, x0, var, k, betas, None, clip_x0=False, prediction="x0")
    mean_v, x0_v = ddpm_step(x_t, v, var, k, betas, None, clip_x0=False, prediction="v")
    mean_eps, x0_eps = ddpm_step(x_t, eps, var, k, betas, None, clip_x0=False)
    assert torch.equal(x0_same, x0)
    np.testing.assert_allclose(x0_v, x0, atol=1e-5)  # from v directly: no 1 / alpha amplification (2e-4 at k = 9)
    np.testing.assert_allclose(mean_v, mean, atol=1e-5)
    np.testing.assert_allclose(x0_eps, x0, atol=1e-5 / alpha)
    np.testing.assert_allclose(mean_eps, mean, atol=1e-5 / alpha)
    t = torch.full((2,), k)
    np.testing.assert_allclose(vlb_term(x0, x_t, t, v, var, betas, "v"), vlb_term(x0, x_t, t, x0, var, betas, "x0"),
                               rtol=1e-4, atol=1e-6)


def test_v_prediction_trains_and_bad_prediction_is_a_user_error():
    cfg = load_config("configs/omages/tiny.json", overrides=["diffusion.prediction=v"])
    s = get_system("omages_n2g")(cfg)
    s.train_dataset("train")
    batch = {"omage": torch.stack([s.train_dataset("train")[i]["omage"] for i in range(2)]),
             "label": torch.tensor([0, 1]), "seed": torch.tensor([0, 1])}
    loss, logs = s(batch)
    loss.backward()
    assert torch.isfinite(loss) and logs["mse"] > 0
    with pytest.raises(UserError, match="prediction"):
        get_system("omages_n2g")(load_config("configs/omages/tiny.json", overrides=["diffusion.prediction=x0"]))


def test_denoise_benchmark_table_side_by_side(tmp_path):
    """benchmarks/omages_denoise.py on two fresh tiny models (DiT eps, UNet v): one row each, errors grow with t."""
    import importlib.util

    from models.core.checkpoint import export_checkpoint

    paths = []
    for name, cfg in (("dit", "configs/omages/tiny.json"), ("unet", "configs/omages/n2g_unet_tiny.json")):
        s = get_system("omages_n2g")(load_config(cfg))
        paths.append(tmp_path / f"{name}.safetensors")
        export_checkpoint(paths[-1], system="omages_n2g", config=s.export_config(), state_dict=s.export_state_dict(),
                          step=0, ema="raw")
    spec = importlib.util.spec_from_file_location("omages_denoise", "benchmarks/omages_denoise.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "den.md"
    assert bench.main(["--data-root", str(tmp_path), "--n", "4", "--out", str(out), "--n2g", *map(str, paths)]) == 0
    rows = [r for r in out.read_text().splitlines() if r.startswith("| `")]
    assert [r.split(" | ")[1:3] for r in rows] == [["dit", "eps"], ["unet", "v"]]
    for r in rows:
        errs = [float(v) for v in r.strip(" |").split(" | ")[-len(bench.LEVELS):]]
        assert errs[0] < errs[-1]
