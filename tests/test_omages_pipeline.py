"""The Omages generation pipeline and its checks: geometry cleaning before G2M, normals that follow the charts, the
validity rules one by one, distribution-metric sanity, the per-class-mean material baseline, and the generate CLI
end to end on tiny trained checkpoints (plus its bad inputs: one line, exit 2, nothing written)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cli_corpus import ROOT, assert_user_error, run_cli
from models.omages import evaluation as ev
from models.omages import format as fmt
from models.omages import pipeline as pl
from models.omages.decode import decode


def _plate_geometry(n_charts=1, size=20, res=64, z=0.0):
    """Model-space (4, res, res) geometry: `n_charts` flat square charts laid out along the image diagonal."""
    g = np.full((4, res, res), -1.0, np.float32)
    for k in range(n_charts):
        r0 = 1 + k * (size + 1)
        rr, cc = np.mgrid[0:size, 0:size]
        g[0, r0:r0 + size, r0:r0 + size] = -0.9 + 1.8 * cc / (size - 1)
        g[1, r0:r0 + size, r0:r0 + size] = -0.9 + 1.8 * rr / (size - 1)
        g[2, r0:r0 + size, r0:r0 + size] = z + 0.1 * k
        g[3, r0:r0 + size, r0:r0 + size] = 1.0
    return g


def _mesh(g):
    clean = pl.clean_geometry(g[None])[0]
    return pl.assemble(clean, np.zeros((5,) + g.shape[1:], np.float32))[1]


def test_clean_geometry_binarises_occupancy_and_resets_background():
    rng = np.random.default_rng(0)
    raw = rng.uniform(-1.3, 1.3, (2, 4, 64, 64)).astype(np.float32)
    clean = pl.clean_geometry(raw)
    occ = raw[:, 3] > 0
    assert set(np.unique(clean[:, 3])) == {-1.0, 1.0}
    assert np.array_equal(clean[:, 3] > 0, occ)
    assert (clean[:, :3][np.broadcast_to(~occ[:, None], clean[:, :3].shape)] == -1).all()
    inside = np.broadcast_to(occ[:, None], raw[:, :3].shape)
    assert np.array_equal(clean[:, :3][inside], np.clip(raw[:, :3], -1, 1)[inside])


def test_check_geometry_rejects_wrong_shapes():
    for bad in (np.zeros((2, 3, 64, 64), np.float32), np.zeros((4, 64, 64), np.float32),
                np.zeros((1, 4, 32, 32), np.float32), np.zeros((1, 4, 64, 64), np.uint16)):
        with pytest.raises(pl.UserError, match="shape"):
            pl.check_geometry(bad)


def test_assembled_normals_point_outwards_not_to_one_octant():
    """A closed box in six charts: every filled normal points away from the box centre (zero normals would orient all
    faces towards -x-y-z)."""
    res, s = 64, 16
    g = np.full((4, res, res), -1.0, np.float32)
    t = np.linspace(-0.5, 0.5, s)
    u, v = np.meshgrid(t, t, indexing="ij")
    faces = [(u, v, 0 * u + 0.5), (v, u, 0 * u - 0.5), (0 * u + 0.5, v, u), (0 * u - 0.5, u, v),
             (v, 0 * u + 0.5, u), (u, 0 * u - 0.5, v)]
    for k, xyz in enumerate(faces):
        r0, c0 = 1 + (k // 3) * (s + 2), 1 + (k % 3) * (s + 2)
        for ch in range(3):
            g[ch, r0:r0 + s, c0:c0 + s] = xyz[ch]
        g[3, r0:r0 + s, c0:c0 + s] = 1.0
    om, mesh = pl.assemble(pl.clean_geometry(g[None])[0], np.zeros((5, res, res), np.float32))
    occ = om[..., fmt.OCC] >= 0.5
    n = om[occ][:, fmt.NRM] * 2 - 1
    p = om[occ][:, fmt.POS] * 2 - 1
    assert ((n * p).sum(1) > 0).mean() > 0.99
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-3)
    assert np.array_equal(fmt.clean(om), om)          # background stays exactly 0


def test_validity_pass_case():
    g = _plate_geometry(2)
    v = ev.validity(g, _mesh(g))
    assert v["valid"] and v["n_charts"] == 2 and v["n_faces"] >= 200


def test_validity_fails_each_rule():
    empty = np.full((4, 64, 64), -1.0, np.float32)
    assert not ev.validity(empty, _mesh(empty))["charts"]
    many = np.full((4, 64, 64), -1.0, np.float32)
    many[:, ::4, ::4] = 1.0                                      # 256 isolated pixels = 256 charts
    assert not ev.validity(many, _mesh(many))["charts"]
    small = _plate_geometry(1, size=8)                           # 98 faces
    assert not ev.validity(small, _mesh(small))["faces"]
    far = _plate_geometry(1)
    far[0, 5, 5] = 1.2                                           # an occupied pixel outside [-1.05, 1.05]
    v = ev.validity(far, _mesh(far))
    assert not v["xyz_in_bounds"] and v["charts"] and v["faces"]
    spiky = _plate_geometry(1, size=30)
    spiky[2, 3:27:3, 3:27:3] = 0.9                               # 64 spikes: their triangles have long edges
    v = ev.validity(spiky, _mesh(spiky))
    assert not v["long_edges"] and v["long_fraction"] > 0.01
    nan = _plate_geometry(1)
    nan[1, 4, 4] = np.nan
    assert not ev.validity(nan, _mesh(nan))["no_nan"]
    for v in (ev.validity(far, _mesh(far)), ev.validity(nan, _mesh(nan))):
        assert not v["valid"]


def test_distribution_metrics_separate_shapes_from_noise():
    """Two independent draws of the same shape family are hard to tell apart (1-NNA near 50 %), noise is not (~100 %)."""
    rng = np.random.default_rng(0)

    def plates(n, seed):
        r = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            g = _plate_geometry(1, size=24, z=float(r.uniform(-0.3, 0.3)))
            out.append(ev.surface_cloud(_mesh(g), 256, int(r.integers(1 << 30))))
        return np.stack(out)

    a, b = plates(12, 1), plates(12, 2)
    noise = ev.omage_clouds(ev.noise_omages(12, seed=int(rng.integers(100))), 256)
    same = ev.distribution(a, b, a)["gen"]
    vs_noise = ev.distribution(noise, b, a)["gen"]
    assert same["nna_cd"] <= 0.75 and vs_noise["nna_cd"] >= 0.95
    assert same["mmd_cd"] < vs_noise["mmd_cd"] and same["cov_cd"] > vs_noise["cov_cd"]


def test_class_mean_baseline_and_material_errors():
    gt = np.zeros((4, 8, 8, 12), np.float32)
    gt[..., fmt.OCC] = 1.0
    labels = np.array([0, 0, 1, 1])
    gt[0, ..., fmt.ALB], gt[1, ..., fmt.ALB] = 0.2, 0.4        # class 0 mean 0.3
    gt[2, ..., fmt.ALB], gt[3, ..., fmt.ALB] = 0.8, 0.6        # class 1 mean 0.7
    gt[..., fmt.MET] = np.array([0, 1, 0, 1])[:, None, None]
    gt[..., fmt.RGH] = 0.5
    means = ev.class_mean_albedo(gt, labels, 2)
    assert np.allclose(means, [[0.3] * 3, [0.7] * 3])
    m = ev.material_errors(gt.copy(), gt, labels, means)
    assert m["albedo_l1"] == 0 and m["albedo_gain"] == 1 and m["metallic_accuracy"] == 1 and m["roughness_mae"] == 0
    base = ev.material_errors(np.where(np.arange(12) >= 7, 0.0, gt), gt, labels, means)
    assert np.isclose(base["albedo_l1_baseline"], 0.1) and base["metallic_accuracy"] == 0.5
    assert np.isclose(base["roughness_mae"], 0.5)
    rows = ev.verdicts({"material": m, "validity_rate": 0.5})
    assert [ok for *_, ok in rows] == [False, True, True, True]
    # drawing each pixel from its class's pixels: class 0 is half 0.2 / half 0.4, so a 0.2 pixel scores 0 or 0.2
    draw = ev.class_draw_albedo_l1(gt, labels, gt, labels)
    assert 0.06 < draw < 0.14
    assert ev.class_draw_albedo_l1(gt[[0, 0]], np.array([0, 0]), gt[[0]], np.array([0])) == 0


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    """The real systems' tiny configs, trained 2 steps through the project's loop."""
    d = tmp_path_factory.mktemp("omages_ckpts")
    out = {}
    for name, cfg in (("n2g", "tiny.json"), ("g2m", "g2m_tiny.json")):
        res = subprocess.run([sys.executable, str(ROOT / "train_diffusion.py"), "--config",
                              str(ROOT / "configs" / "omages" / cfg), "--out", str(d / name), "--cpu", "--no-demo"],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        out[name] = d / name / "model.safetensors"
    return out


@pytest.mark.slow
def test_generate_cli_writes_meshes_sheets_and_reuses_geometry(tmp_path, tiny_ckpts):
    common = ["--n2g", tiny_ckpts["n2g"], "--g2m", tiny_ckpts["g2m"], "--steps", "3", "--threads", "1"]
    out = tmp_path / "gen"
    res = run_cli("scripts/omages_generate.py", *common, "--classes", "class0,class2", "--per-class", "1",
                  "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "samples.json").read_text())
    assert [r["class"] for r in summary["samples"]] == ["class0", "class2"]
    for r in summary["samples"]:
        assert (out / f"{r['name']}.glb").read_bytes()[:4] == b"glTF"
        assert fmt.load_omage(out / f"{r['name']}.npz").shape == (64, 64, 12)
        assert (out / f"{r['name']}.png").is_file()
    assert (out / "grid.png").is_file() and (out / "COMPLETE.json").is_file()
    # materials only: the stored geometry is reused, so geometry and occupancy are unchanged
    again = tmp_path / "remat"
    res = run_cli("scripts/omages_generate.py", *common, "--geometry", out / "geometry.npz", "--seeds", "7,8",
                  "--out", again)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = np.load(out / "geometry.npz"), np.load(again / "geometry.npz")
    assert np.array_equal(a["geometry"], b["geometry"]) and list(b["seeds"]) == [7, 8]
    first = fmt.load_omage(out / "000_class0_s0.npz")
    second = fmt.load_omage(again / "000_class0_s7.npz")
    assert np.array_equal(first[..., fmt.GEOMETRY], second[..., fmt.GEOMETRY])


def test_generate_cli_rejects_negative_cfg(tmp_path):
    assert_user_error("scripts/omages_generate.py", ["--cfg-scale", "-1", "--out", tmp_path / "out"], watch=tmp_path,
                      mentions=">= 0")


@pytest.mark.slow
def test_generate_cli_bad_inputs(tmp_path, tiny_ckpts):
    np.savez(tmp_path / "geo3.npz", geometry=np.zeros((2, 3, 64, 64), np.float32), labels=np.zeros(2),
             seeds=np.zeros(2))
    common = ["--n2g", tiny_ckpts["n2g"], "--g2m", tiny_ckpts["g2m"], "--out", tmp_path / "out"]
    assert_user_error("scripts/omages_generate.py", [*common, "--classes", "chair"], watch=tmp_path / "out",
                      mentions="valid: class0")
    assert_user_error("scripts/omages_generate.py", [*common, "--geometry", tmp_path / "geo3.npz"],
                      watch=tmp_path / "out", mentions="(N, 4, 64, 64)")
    assert_user_error("scripts/omages_generate.py", [*common[:2], "--g2m", tiny_ckpts["n2g"], "--out",
                      tmp_path / "out"], watch=tmp_path / "out", mentions="'omages_g2m' one is needed")
