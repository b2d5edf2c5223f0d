"""SfS guidance, LCG and tiling unit checks (mssfs §10 A5-A8), DDIM step lists and the §6.5 call counts."""
from __future__ import annotations

import math

import pytest
import torch

from data.sfs_shapes import relief_scene
from models.diffusion import ddim_timesteps_round
from models.sfs.guidance import flip_normals, integrability_loss, normals_from_height, seam_loss
from models.sfs.lcg import kmeans2, lighting_consistency
from models.sfs.tiling import tile, untile
from models.sfs.vcycle import Sampler, Schedule, Stage, expected_calls, load_schedule



@pytest.fixture(scope="module")
def reliefs():
    """8 procedural reliefs at 160 px (data/sfs_shapes.py), with their image light."""
    return [relief_scene(160, 1000 + i) for i in range(8)]


def analytic_height_normals():
    r = torch.arange(64, dtype=torch.float64)
    y, x = torch.meshgrid(r, r, indexing="ij")  # x = column, y = row
    h = 5 * torch.sin(x / 7) * torch.cos(y / 9) + x * y / 40
    return normals_from_height(h[None])


def test_integrability_sign():
    """A5: < 1e-5 in the §2.1 frame (y up), > 1e-2 with y flipped, < 1e-5 for the depth-reversed field."""
    n = analytic_height_normals()
    assert integrability_loss(n).item() < 1e-5
    y_down = n * torch.tensor([1.0, -1.0, 1.0], dtype=n.dtype).view(1, 3, 1, 1)
    assert integrability_loss(y_down).item() > 1e-2
    assert integrability_loss(flip_normals(n)).item() < 1e-5


def test_seam_floor_on_linear_field():
    """A6: normals varying exactly linearly across seams score the clamp floor 2 arccos(1 - 1e-4) = 0.0283 rad."""
    r = torch.arange(64, dtype=torch.float64)
    y, x = torch.meshgrid(r, r, indexing="ij")
    n = torch.stack([x / 100 - 0.3, 0.2 - y / 120, torch.ones_like(x)])[None]
    floor = 2 * math.acos(1 - 1e-4)
    assert abs(floor - 0.0283) < 1e-4
    assert seam_loss(n).item() == pytest.approx(floor, abs=1e-6)


def test_seam_relief_vs_flipped_tiles(reliefs):
    """A6: smooth relief GT has a small seam loss; with 50% of tiles depth-flipped it is >= 5x larger."""
    g = torch.Generator().manual_seed(0)
    ratios, gts = [], []
    for n in reliefs[:4]:
        t = tile(n[None])
        sel = torch.rand(t.shape[0], generator=g) < 0.5
        t[sel] = flip_normals(t[sel])
        gt, bad = seam_loss(n[None]).item(), seam_loss(untile(t, 160)).item()
        gts.append(gt)
        ratios.append(bad / gt)
    assert max(gts) < 0.15  # spec: ~0.047 rad on its gentler reliefs; these have 15-25° mean slant
    assert min(ratios) >= 5.0, ratios


def test_losses_are_per_sample_and_masked():
    """Summed per-sample losses keep gradients independent; masked-out pixels do not change the masked loss."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 3, 32, 32, generator=g), torch.randn(1, 3, 32, 32, generator=g)
    xa = a.clone().requires_grad_(True)
    (seam_loss(xa) + integrability_loss(xa)).sum().backward()
    xab = torch.cat([a, b]).requires_grad_(True)
    (seam_loss(xab) + integrability_loss(xab)).sum().backward()
    torch.testing.assert_close(xab.grad[:1], xa.grad)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:28, 2:30] = 1
    b2 = a.clone()
    b2[..., :3, :] = torch.randn(1, 3, 3, 32, generator=g)  # only background changes
    for fn in (seam_loss, integrability_loss):
        assert fn(a, mask).item() == pytest.approx(fn(b2, mask).item(), abs=1e-7)
        assert fn(a, mask).item() != pytest.approx(fn(b2).item(), abs=1e-7)


def test_lcg_oracle_restores_flipped_tiles(reliefs):
    """A7: GT with 30% of tiles flipped; LCG restores >= 90% of informative tiles (mean slant > 5°)."""
    g = torch.Generator().manual_seed(7)
    total = restored = 0
    for i, n in enumerate(reliefs):
        l = torch.tensor([float(torch.rand(1, generator=g)) * 1.2 - 0.6, float(torch.rand(1, generator=g)) * 1.2 - 0.6,
                          1.0])
        img = 0.8 * (n * (l / l.norm()).view(3, 1, 1)).sum(0).clamp_min(0)[None, None]
        t = tile(n[None])
        wrong = torch.rand(t.shape[0], generator=g) < 0.3
        t[wrong] = flip_normals(t[wrong])
        res = lighting_consistency(t, img, [torch.Generator().manual_seed(i)])
        informative = torch.rad2deg(torch.arccos(tile(n[None])[:, 2].clamp(-1, 1))).mean((1, 2)) > 5
        ok = ~(wrong ^ res.flipped[0])
        total += int(informative.sum())
        restored += int((ok & informative).sum())
    print(f"LCG oracle: restored {restored}/{total}")
    assert restored / total >= 0.9, restored / total


def test_lcg_skips_background_tiles():
    n = relief_scene(64, 3)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1
    img = (n * torch.tensor([0.3, 0.4, 0.87]).view(3, 1, 1)).sum(0).clamp_min(0)[None, None] * mask
    res = lighting_consistency(tile((n * mask[0])[None]), img, [torch.Generator().manual_seed(0)], mask=mask)
    assert not res.used[0, 8:].any() and not res.flipped[0, 8:].any()


def test_kmeans_deterministic_per_seed():
    g = torch.Generator().manual_seed(3)
    pts = torch.cat([torch.randn(20, 3, generator=g) * 0.05 + 1, torch.randn(9, 3, generator=g) * 0.05 - 1])
    l1, c1 = kmeans2(pts, torch.Generator().manual_seed(5))
    l2, c2 = kmeans2(pts, torch.Generator().manual_seed(5))
    assert torch.equal(l1, l2) and torch.equal(c1, c2)
    assert sorted(torch.bincount(l1).tolist()) == [9, 20]


def test_tiling_exact_inverse_row_major():
    """A8: untile(tile(x)) == x exactly; tile index = row_tile * (W/16) + col_tile, sample-major."""
    x = torch.randn(2, 3, 48, 64)
    t = tile(x)
    assert t.shape == (2 * 12, 3, 16, 16)
    assert torch.equal(untile(t, (48, 64)), x)
    assert torch.equal(t[1 * 4 + 2], x[0, :, 16:32, 32:48])  # sample 0, tile row 1, col 2
    assert torch.equal(t[12 + 2 * 4 + 3], x[1, :, 32:48, 48:64])


def test_ddim_lists_and_targets():
    """§5.2: the 50-step list, the 39-step restart list, and the faithful t-6 targets."""
    steps = ddim_timesteps_round(300, 50)
    assert steps[0] == 299 and steps[-1] == 0 and steps[15] == 207 and steps[40] == 55
    assert sum(t <= 232 for t in steps) == 39
    smp = Sampler(torch.nn.Identity(), load_schedule("vcycle160"))
    assert smp.restart_steps()[0] == 232 and len(smp.restart_steps()) == 39
    assert [smp._target(i, steps) for i in (0, 4, 49)] == [293, 269, -6]
    nxt = Sampler(torch.nn.Identity(), load_schedule("vcycle160_next"))
    assert [nxt._target(i, steps) for i in (0, 4, 49)] == [293, 268, -1]


class CountingNet(torch.nn.Module):
    """Differentiable stand-in eps-net that counts no-grad and with-grad calls."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)
        self.calls = {"forward": 0, "guided": 0}

    def forward(self, x, t, cond):
        self.calls["guided" if torch.is_grad_enabled() and x.requires_grad else "forward"] += 1
        return 0.1 * self.conv(torch.cat([x, cond], 1))


def test_call_counts_match_spec():
    """§6.5: first run 50 forward + 182 guided calls, restart 39 + 152; a vcycle160 sample 440 / 1702."""
    sched = load_schedule("vcycle160")
    assert expected_calls(sched) == {"forward": 440, "guided": 1702, "forward_tiles": 28361, "guided_tiles": 109248}
    net = CountingNet()
    smp = Sampler(net, sched)
    cond = torch.rand(1, 1, 16, 16)
    x = torch.randn(1, 3, 16, 16)
    smp.guided_run(x, cond, 16, 20.0, smp.steps, guidance_from=8)
    assert net.calls == {"forward": 50, "guided": 182}
    smp.guided_run(x, cond, 16, 15.0, smp.restart_steps(), guidance_from=0)
    assert net.calls == {"forward": 89, "guided": 334}
    assert smp.calls["forward"] == 89 and smp.calls["guided"] == 334
    assert all(p.requires_grad for p in net.parameters())  # restored after the run


def test_schedule_validation(tmp_path):
    bad = Schedule(stages=[Stage(res=40, eta0=1.0, start="noise")])
    with pytest.raises(ValueError):
        from models.sfs.vcycle import validate_schedule
        validate_schedule(bad)
    with pytest.raises(ValueError):
        load_schedule("no_such_preset")
    (tmp_path / "s.json").write_text('{"stages": [{"res": 32, "eta0": 1, "start": "noise"}], "bogus": 1}')
    with pytest.raises(Exception, match="bogus"):
        load_schedule(tmp_path / "s.json")
