"""DiffMotion check metrics (specs/diffmotion.md §10.4, §10.5): known answers on synthetic arrays, and an end-to-end
run of benchmarks/diffmotion_checks.py on a freshly exported tiny checkpoint and a tiny NumPy-rendered dataset."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from models.diffmotion import metrics as M

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "diffmotion" / "tiny.json"


def _hemisphere(n=401):
    """Normals of a unit sphere seen from +z on an n x n grid: [1, 3, n, n] and the disk mask [1, n, n]."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, n, dtype=torch.float64), torch.linspace(-1, 1, n, dtype=torch.float64),
                          indexing="ij")
    r2 = x * x + y * y
    mask = r2 < 1
    normals = torch.stack([x, y, torch.sqrt((1 - r2).clamp_min(0))])
    return normals[None], mask[None]


def test_angular_error_identical_is_zero_and_known_angle():
    n, mask = _hemisphere(33)
    assert M.angular_error(n, n)[mask].abs().max() < 1e-9
    assert M.angular_error(3.0 * n, n)[mask].abs().max() < 1e-9  # the prediction is normalised
    a = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    b = torch.tensor([math.sin(math.radians(30)), 0.0, math.cos(math.radians(30))]).view(1, 3, 1, 1)
    assert M.angular_error(a, b).item() == pytest.approx(30.0, abs=1e-5)  # float32 inputs
    assert M.angular_error(torch.zeros(1, 3, 1, 1), a).item() == 90.0  # no direction = never correct


def test_facing_constant_on_hemisphere_is_45_degrees():
    """Mean of arcsin(r) over the unit disk = pi/4 (spec §10.4 'why these thresholds')."""
    n, mask = _hemisphere()
    errs = M.normal_angular_errors(M.constant_normals((1, *mask.shape[-2:])), n, mask)
    assert M.frame_average(errs["mae"]) == pytest.approx(45.0, abs=1.0)
    # share under t degrees = share of the disk with arcsin(r) < t = sin(t)^2
    for t in M.ANGLE_THRESHOLDS:
        assert errs[f"under_{t:g}"].item() == pytest.approx(math.sin(math.radians(t)) ** 2, abs=0.01)


def test_masked_frame_mean_empty_frame_is_nan():
    vals = torch.ones(2, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    out = M.masked_frame_mean(vals, mask)
    assert out[0] == 1.0 and math.isnan(out[1])
    assert M.frame_average(out) == 1.0


def test_si_mse_scale_invariance_and_known_values():
    g = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    p = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 8, 8, dtype=torch.bool)
    assert torch.allclose(M.si_mse(0.5 * g, g, mask), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(M.si_mse(4.0 * p, g, mask), M.si_mse(p, g, mask), atol=1e-12)
    assert (M.si_mse(p, g, mask) > 0).all()
    # a constant prediction scales to the foreground mean: si-MSE = per-channel variance of the GT (averaged)
    const = torch.full_like(g, 0.3)
    var = g.double().var(dim=(-2, -1), unbiased=False).mean(dim=-1)
    assert torch.allclose(M.si_mse(const, g, mask), var, atol=1e-12)
    # only foreground pixels count
    mask2 = mask.clone()
    mask2[:, :, 4:] = False
    p2 = p.clone()
    p2[..., 4:] = 100.0
    assert torch.allclose(M.si_mse(p2, g, mask2), M.si_mse(p, g, mask2), atol=1e-12)


def test_mae_per_channel_and_unit_range():
    gt = torch.zeros(2, 3, 4, 4)
    pred = gt.clone()
    pred[:, 1] = 0.5  # model space +0.5 -> 0.75 vs 0.5 in [0, 1]
    out = M.mae_per_channel(M.to_unit_range(pred), M.to_unit_range(gt), torch.ones(2, 4, 4, dtype=torch.bool))
    assert out.shape == (2, 3)
    assert torch.allclose(out, torch.tensor([[0.0, 0.25, 0.0]] * 2, dtype=torch.float64))
    assert M.to_unit_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]


def test_pairwise_diversity():
    n, mask = _hemisphere(17)
    same = n[None].expand(4, 3, -1, -1, -1)  # [K=4, T=3, 3, H, W]
    mask3 = mask.expand(3, -1, -1)
    assert M.pairwise_angular_diversity(same, mask3) == pytest.approx(0.0, abs=1e-9)
    assert M.min_pairwise_max_abs_diff(same) == 0.0
    a = torch.zeros(1, 3, 3, 4, 4)
    a[:, :, 2] = 1
    b = torch.zeros(1, 3, 3, 4, 4)
    b[:, :, 0], b[:, :, 2] = math.sin(math.radians(20)), math.cos(math.radians(20))
    full = torch.ones(3, 4, 4, dtype=torch.bool)
    # pairs (a, a) = 0, (a, b) = 20, (a, b) = 20 -> mean 40/3
    assert M.pairwise_angular_diversity(torch.cat([a, a, b]), full) == pytest.approx(40 / 3, abs=1e-5)
    assert M.min_pairwise_max_abs_diff(torch.cat([a, b])) == pytest.approx(math.sin(math.radians(20)), abs=1e-7)
    assert math.isnan(M.pairwise_angular_diversity(a, full))


def test_training_baselines_use_foreground_only():
    t1 = -torch.ones(9, 4, 4)  # background everywhere (length sqrt(3))
    t1[0:3, :2] = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)
    t1[3:9, :2] = 0.0  # albedo / materials 0.5 in [0, 1]
    t2 = t1.clone()
    t2[0:3, :2] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    t2[3:9, :2] = 1.0
    b = M.training_baselines([t1, t2])
    s = 1 / math.sqrt(2)
    assert torch.allclose(b["normal_map"][:, 0, 0], torch.tensor([s, 0.0, s], dtype=torch.float64))
    assert torch.allclose(b["normal_map"][:, 3, 0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # never fg
    assert torch.allclose(b["albedo"], torch.full((3,), 0.75, dtype=torch.float64))
    assert torch.allclose(b["material"], torch.full((3,), 0.75, dtype=torch.float64))
    assert int(b["frames"]) == 2


def test_ratio_rule_nan_never_passes():
    assert M.ratio_rule(1.0, 2.0, 0.6) and not M.ratio_rule(1.3, 2.0, 0.6)
    assert not M.ratio_rule(float("nan"), 2.0, 0.6) and not M.ratio_rule(1.0, float("nan"), 0.6)


def test_checks_script_end_to_end(tmp_path):
    from data import motion_render as mr
    from models import build_system
    from models.core.checkpoint import export_checkpoint
    from models.core.config import load_config, to_dict

    from benchmarks import diffmotion_checks

    for split, held in (("train", False), ("held_out", True)):
        mr.generate(tmp_path / split, 2, 1, resolution=32, backend="numpy", seed=0, held_out=held, progress=False)
    cfg = load_config(TINY)
    torch.manual_seed(0)
    system = build_system(cfg)
    with torch.no_grad():  # the head is zero-initialised; perturb it so the conditioning reaches the output
        for p in system.net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ckpt = export_checkpoint(tmp_path / "model.safetensors", system="diffmotion", config=to_dict(cfg),
                             state_dict=system.net.state_dict(), step=7)
    out = tmp_path / "res" / "checks.md"
    threads = torch.get_num_threads()
    try:
        rc = diffmotion_checks.main(["--ckpt", str(ckpt), "--held-out", str(tmp_path / "held_out"), "--train",
                                     str(tmp_path / "train"), "--out", str(out), "--seeds", "0-1", "--steps", "2",
                                     "--max-clips", "2", "--threads", "1", "--timing-seeds", "3", "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    text = out.read_text()
    for needle in ("normals: mean angular error", "albedo: si-MSE", "materials: MAE", "conditioning use",
                   "D_static", "D_static > D_moving", "## Timing", "command: `python", "step 7", "< 11.25°"):
        assert needle in text, needle
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["per_clip"]) == 2 and len(data["checks"]) == 8
    assert data["info"]["net_calls"] == 2 * 2  # 2 clips x 2 steps, one batched call per step
    assert data["info"]["net_samples"] == 2 * 2 * (2 * 2 + 1)  # moving + static per seed, + swapped
    timing = data["timing"]
    assert timing["calls"] == cfg.diffusion.sampling_steps and timing["samples"] == 3 * timing["calls"]
    rows = {r["check"]: r for r in data["checks"]}
    agg = data["aggregate"]
    assert rows["normals: mean angular error"]["value"] == agg["normal_mae_model"]
    assert rows["normals: mean angular error"]["pass"] == (agg["normal_mae_model"] <= 0.6 * agg["normal_mae_b1"]
                                                           and agg["normal_mae_model"] <= 0.8 * agg["normal_mae_b2"])
    assert rows["albedo: si-MSE"]["value"] == agg["albedo_simse_model"]
    from models.diffmotion.checks import checks

    assert [r["pass"] for r in data["checks"]] == [r["pass"] for r in checks(agg, data["per_clip"], 2)]
    assert agg["normal_mae_b1"] > 0 and agg["albedo_simse_b3"] > 0 and agg["d_static"] > 0
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave no temporaries


def _agg(**kw):
    """Clip-averaged numbers as checks() reads them; every learning check passes with margin by default."""
    a = {"normal_mae_model": 10.0, "normal_mae_b1": 45.0, "normal_mae_b2": 40.0, "albedo_simse_model": 0.01,
         "albedo_simse_b3": 0.03, "albedo_simse_b4": 0.02, "material_mae_model": 0.1, "material_mae_b5": 0.2,
         "normal_mae_swapped": 20.0, "d_static": 3.0, "d_moving": 1.0}
    for c in M.MATERIAL_NAMES:
        a[f"{c}_mae_model"], a[f"{c}_mae_b5"] = 0.1, 0.2
    return {**a, **kw}


def test_check_rules_at_their_thresholds():
    """Each pass/fail row follows its stated rule, on both sides of the threshold (§10.4, §10.5)."""
    from models.diffmotion.checks import checks

    clips = [{"static_min_pair_maxdiff": 0.1, "d_static": 3.0, "d_moving": 1.0}] * 3
    names = ["normals", "albedo", "materials", "swap", "d_static", "min_diff", "share", "means"]
    result = lambda agg, per=clips, k=2: dict(zip(names, [r["pass"] for r in checks(agg, per, k)]))  # noqa: E731
    assert all(result(_agg()).values())
    assert result(_agg(normal_mae_model=26.99))["normals"] and not result(_agg(normal_mae_model=27.01))["normals"]
    assert not result(_agg(normal_mae_model=24.1, normal_mae_b2=30.0))["normals"]  # <= 0.6 B1 = 27, > 0.8 B2 = 24
    assert result(_agg(albedo_simse_model=0.0159))["albedo"] and not result(_agg(albedo_simse_model=0.0161))["albedo"]
    assert result(_agg(material_mae_model=0.179))["materials"]
    assert not result(_agg(material_mae_model=0.181))["materials"]
    assert result(_agg(normal_mae_swapped=15.0))["swap"] and not result(_agg(normal_mae_swapped=14.9))["swap"]
    assert result(_agg(normal_mae_swapped=float("nan")))["swap"] is None
    assert result(_agg(d_static=1.5))["d_static"] and not result(_agg(d_static=1.49))["d_static"]
    assert not result(_agg(d_static=1.0, d_moving=1.0))["means"]  # D_static must exceed D_moving
    assert not result(_agg(), clips[:2] + [{**clips[0], "static_min_pair_maxdiff": 1e-3}])["min_diff"]
    flat = [{"static_min_pair_maxdiff": 0.1, "d_static": 1.0, "d_moving": 2.0}]
    assert result(_agg(), clips * 2 + flat * 4)["share"] and not result(_agg(), clips + flat * 3)["share"]  # 6/10, 3/6
    assert all(v is None for k, v in result(_agg(), k=1).items() if k in ("d_static", "min_diff", "share", "means"))
    assert not result(_agg(normal_mae_b2=float("nan")))["normals"]  # an unmeasured baseline never passes


def test_clip_metrics_wiring_with_perfect_prediction():
    """The script's channel slices and baselines: a prediction equal to the GT scores 0 on every model metric."""
    from models.diffmotion import checks as diffmotion_checks

    n, mask = _hemisphere(16)
    target = -torch.ones(3, 9, 16, 16)
    target[:, 0:3] = torch.where(mask, n.float(), torch.tensor(-1.0))
    gen = torch.Generator().manual_seed(0)
    target[:, 3:9] = torch.where(mask, torch.rand(3, 6, 16, 16, generator=gen) * 2 - 1, torch.tensor(-1.0))
    frames = torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1
    base = M.training_baselines(list(target))
    samples = target[None].expand(2, -1, -1, -1, -1)
    r = diffmotion_checks.clip_metrics(target, None, samples, samples, frames, target, base)
    assert r["normal_mae_model"] == pytest.approx(0.0, abs=1e-5) and r["normal_under_11.25_model"] == 1.0
    assert r["albedo_simse_model"] == pytest.approx(0.0, abs=1e-12) and r["material_mae_model"] == pytest.approx(0.0)
    assert r["normal_mae_b1"] == pytest.approx(45.0, abs=3.0)
    assert r["albedo_simse_b3"] > 0 and r["albedo_simse_b4"] > 0 and r["material_mae_b5"] > 0
    assert math.isnan(r["normal_mae_swapped"]) and r["d_static"] < 1e-9 and r["static_min_pair_maxdiff"] == 0.0
    entries = [{"folder": "a"}, {"folder": "a"}, {"folder": "b"}]
    assert [diffmotion_checks.partner_index(entries, i) for i in range(3)] == [2, 2, 0]
