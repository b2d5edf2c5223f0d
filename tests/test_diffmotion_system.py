"""DiffMotion system: configs, the §4.1 loss, training steps, DDIM sampling (§4.2), demo, legacy conversion."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from models import build_system, load_system
from models.core.config import ConfigError, from_dict, load_config, to_dict
from models.nets.uvit3d import UViT3D, count_parameters

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "diffmotion"
TINY = CONFIGS / "tiny.json"
EXPECTED = {"nattn_mid": 100_292_681, "check128": 100_292_681, "plain_mid": 95_730_377,
            "plain_default": 42_620_297, "plain_deep": 170_041_353, "tiny": 622_345, "tiny_wide": 1_688_137}


def _convert_module():
    spec = importlib.util.spec_from_file_location("convert_legacy_ckpt", ROOT / "scripts" / "convert_legacy_ckpt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_system(randomize: bool = True, seed: int = 0, **data):
    cfg = load_config(TINY, [f"data.{k}={json.dumps(v)}" for k, v in data.items()])
    torch.manual_seed(seed)
    system = build_system(cfg)
    if randomize:  # activate the zero-initialised branches so outputs depend on inputs
        with torch.no_grad():
            for p in system.net.parameters():
                if not p.any():
                    p.normal_(0, 0.05)
    return system


def tiny_batch(bsz=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.rand(bsz, 3, 3, size, size, generator=g) * 2 - 1,
            "target": torch.rand(bsz, 3, 9, size, size, generator=g) * 2 - 1}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_presets_load_and_have_spec_counts(name):
    cfg = load_config(CONFIGS / f"{name}.json")
    assert cfg.system == "diffmotion"
    with torch.device("meta"):
        assert count_parameters(UViT3D(cfg.net)) == EXPECTED[name]
    assert from_dict(type(cfg), to_dict(cfg)) == cfg


def test_faithful_defaults_and_unknown_keys():
    cfg = load_config(CONFIGS / "nattn_mid.json")
    d = cfg.diffusion
    assert (d.shift, d.noise_scale, d.weight_bias, d.group_weights) == (0.125, 0.125, -1.0, (0.4, 0.4, 0.2))
    assert (d.sampling_table, d.sampling_steps, d.sampling_shift, d.noise_mode) == (300, 50, 1.0, "shared")
    assert (cfg.data.aug_static, cfg.data.aug_reverse, cfg.data.resolution) == (0.2, 0.5, 256)
    assert cfg.net.temporal_residual is False
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(TINY, ["diffusion.nope=1"])


def test_loss_matches_spec_formula():
    """§4.1 written out independently: shared t per clip, sigmoid(-1 - lambda) eps-space weight, groups 0.4/0.4/0.2."""
    system = tiny_system().eval()  # eval: no dropout, so both computations see the same network
    batch = dict(tiny_batch(bsz=2), seed=torch.tensor([11, 12]))
    loss, logs = system(batch)
    x0, cond = batch["target"], batch["frames"]
    gens = [torch.Generator().manual_seed(s) for s in (11, 12)]  # one generator per sample: t first, then eps
    t = torch.stack([torch.rand(1, generator=g) for g in gens]).expand(2, 3)
    eps = torch.stack([torch.randn(x0.shape[1:], generator=g) for g in gens]).clamp(-20, 20)
    a, b = math.atan(math.exp(-7.5)), math.atan(math.exp(7.5))
    lam = -2 * torch.log(torch.tan(a + t * (b - a))) + 2 * math.log(0.125)
    alpha, sigma = torch.sigmoid(lam).sqrt()[..., None, None, None], torch.sigmoid(-lam).sqrt()[..., None, None, None]
    z = alpha * x0 + sigma * eps
    with torch.no_grad():
        v = system.net(z, 0.125 * lam, cond)
    ell = torch.sigmoid(-1 - lam)[..., None, None, None] * (alpha * v + sigma * z - eps) ** 2
    groups = [ell[:, :, 0:3].mean(), ell[:, :, 3:6].mean(), ell[:, :, 6:9].mean()]
    torch.testing.assert_close(loss, 0.4 * groups[0] + 0.4 * groups[1] + 0.2 * groups[2], rtol=1e-5, atol=0)
    assert set(logs) == {"loss_normal", "loss_albedo", "loss_material"}
    torch.testing.assert_close(logs["loss_albedo"], groups[1], rtol=1e-5, atol=0)
    assert (t[:, :1] == t).all()


def test_training_steps_run_and_loss_finite():
    system = tiny_system(randomize=False).train()
    opt = torch.optim.AdamW(system.net.parameters(), lr=1e-3)
    batch = dict(tiny_batch(bsz=1), seed=torch.tensor([0]))
    before = [p.detach().clone() for p in system.net.parameters()]
    for _ in range(2):
        loss, logs = system(batch)
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, system.net.parameters()))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # diffusion maths stays fp32 under autocast
        loss, logs = system(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_sampling_schedule_constants():
    system = tiny_system(randomize=False)
    lams, abars = system.sampling_schedule(50)
    assert len(lams) == 50 and len(abars) == 51 and abars[-1] == 1.0
    assert abs(0.125 * lams[0] + 1.875) < 1e-3 and abs(0.125 * lams[-1] - 0.905) < 1e-3  # §4.2 table
    assert abs(lams[25] - 0.01) < 0.01  # index 149
    shifted, _ = system.sampling_schedule(50, sampling_shift=0.125)
    assert abs(shifted[10] - lams[10] - 2 * math.log(0.125)) < 1e-3


def test_sampling_determinism_batch_independence_and_seeds():
    system = tiny_system()
    frames = tiny_batch()["frames"]
    a = system.sample(frames, [0, 1], steps=2)
    torch.manual_seed(123)  # the global RNG must not matter
    b = system.sample(frames, [0, 1], steps=2)
    assert a.shape == (2, 3, 9, 32, 32) and torch.equal(a, b)
    alone = system.sample(frames[1:], [1], steps=2)
    torch.testing.assert_close(alone[0], a[1], rtol=0, atol=1e-5)
    other = system.sample(frames[:1], [7], steps=2)
    assert (other[0] - a[0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="one seed per clip"):
        system.sample(frames, [0], steps=2)


def test_ddim_with_oracle_returns_x0():
    """An exact v-predictor (from known x0 and the true logSNR) must make the 50-step sampler return x0."""
    system = tiny_system(randomize=False)
    x0 = torch.rand(1, 3, 9, 16, 16, dtype=torch.float64) * 2 - 1

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, level, cond):
            lam = (level / 0.125).double()[..., None, None, None]
            alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
            return (alpha * z.double() - x0) / sigma

    system.net = Oracle()
    out = system.sample(torch.zeros(1, 3, 3, 16, 16), [0])
    assert (out.double() - x0).abs().max() < 1e-5


def test_dataset_training_batch_and_demo(tmp_path, motion_root):
    root = motion_root
    system = tiny_system(root=str(root), held_out_root=str(root))
    ds = system.train_dataset("train")
    assert len(ds) == 4
    item = ds[(1, 3)]
    assert item["frames"].shape == (3, 3, 32, 32) and item["target"].shape == (3, 9, 32, 32)
    batch = {k: torch.stack([ds[(i, 0)][k] for i in range(2)]) for k in item}
    batch["seed"] = torch.tensor([0, 1])
    loss, _ = system(batch)
    assert torch.isfinite(loss)
    system.cfg.demo.steps = 2
    (path,) = system.demo(tmp_path / "samples", step=12)
    assert path.name == "diffmotion_s00000012.png"
    assert iio.imread(path).shape == (32 + 2 * 96, 96, 3)


def test_demo_without_held_out_data_writes_nothing(tmp_path):
    system = tiny_system(held_out_root=str(tmp_path / "absent"))
    assert system.demo(tmp_path / "samples", step=1) == []


def _legacy_round_trip(tmp_path, config: Path, randomize: bool):
    conv = _convert_module()
    cfg = load_config(config)
    torch.manual_seed(0)
    system = build_system(cfg)
    if randomize:
        with torch.no_grad():
            for p in system.net.parameters():
                p.normal_(0, 0.02)
    ours = system.net.state_dict()
    legacy = {f"module.{k}": v.clone() for k, v in ours.items()}
    key = f"module.down_blocks.0.{cfg.net.blocks[0]}.mlp.fc1.weight"  # a 1x1-conv storage form is accepted too
    legacy[key] = legacy[key][..., None, None]
    src = tmp_path / "u_vit3d_mixer_e4.ckpt"
    torch.save({"epoch": 4, "model_state_dict": legacy, "optimizer_state_dict": {}}, src)
    out = conv.convert(src, tmp_path / "converted.safetensors", config=config)
    loaded = load_system(out, expect="diffmotion")
    assert loaded.step == 4
    got = loaded.net.state_dict()
    assert got.keys() == ours.keys() and all(torch.equal(got[k], ours[k]) for k in ours)
    return conv, legacy, src


def test_legacy_checkpoint_round_trip_tiny(tmp_path, capsys):
    conv, legacy, src = _legacy_round_trip(tmp_path, TINY, randomize=True)
    legacy.pop("module.mid_blocks.0.attn_out.weight")
    torch.save({"model_state_dict": legacy}, tmp_path / "broken.ckpt")
    argv = [str(tmp_path / "broken.ckpt"), "--config", str(TINY), "--out", str(tmp_path / "x.safetensors")]
    assert conv.main(argv) == 2
    assert "1 missing" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_legacy_checkpoint_round_trip_faithful(tmp_path):
    _legacy_round_trip(tmp_path, CONFIGS / "nattn_mid.json", randomize=False)
