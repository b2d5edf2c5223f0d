"""Lambertian renderer invariants (mssfs spec §10 A4) and the render_diffuse.py CLI."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import render_diffuse
from data.lambertian import (MIN_LZ, flip_normals, render_lambertian, render_lambertian_np, render_random,
                             sample_albedo, sample_lights)

ROOT = Path(__file__).resolve().parents[1]



def _random_normals(b, h, w, gen):
    n = torch.randn(b, 3, h, w, generator=gen)
    return n / n.norm(dim=1, keepdim=True)


def test_normal_parallel_to_light_gives_albedo():
    g = torch.Generator().manual_seed(0)
    light = sample_lights(5, g)
    albedo = sample_albedo(5, g)
    normals = light[:, :, None, None].expand(5, 3, 4, 4).contiguous()
    img = render_lambertian(normals, light, albedo)
    assert img.shape == (5, 1, 4, 4)
    assert torch.allclose(img, albedo.view(5, 1, 1, 1).expand_as(img), atol=1e-6)


def test_back_facing_and_background_are_zero():
    light = torch.tensor([[0.3, -0.2, 0.9]])
    n = torch.zeros(1, 3, 2, 2)
    n[0, :, 0, 0] = -light[0] / light.norm()  # facing away
    n[0, :, 0, 1] = torch.tensor([0.0, 0.0, 1.0])
    img = render_lambertian(n, light, 1.0, ambient=0.05, noise_std=0.01, generator=torch.Generator().manual_seed(1))
    assert img[0, 0, 1, 0] == 0 and img[0, 0, 1, 1] == 0  # background exactly 0 even with ambient + noise
    amb = render_lambertian(n, light, 0.7, ambient=0.05)
    assert amb[0, 0, 0, 0] == torch.tensor(0.05)  # back-facing: the ambient term only, not scaled by the albedo
    lit = light[0] @ n[0, :, 0, 1] / light.norm()
    torch.testing.assert_close(amb[0, 0, 0, 1], 0.7 * lit + 0.05, atol=1e-6, rtol=0)  # lit: albedo cos + ambient
    many = torch.zeros(1, 3, 64, 64)
    many[0] = (-light[0] / light.norm()).view(3, 1, 1)  # 4096 back-facing pixels: the image is ambient + noise
    noisy = render_lambertian(many, light, 1.0, ambient=0.5, noise_std=0.02, generator=torch.Generator().manual_seed(1))
    resid = noisy - 0.5
    assert abs(resid.mean().item()) < 4 * 0.02 / 64 and abs(resid.std().item() - 0.02) < 0.1 * 0.02
    clean = render_lambertian(n, light, 1.0)
    assert clean[0, 0, 0, 0] == 0
    assert 0 <= img.min() and img.max() <= 1


def test_flip_invariance_is_exact():
    g = torch.Generator().manual_seed(2)
    n = _random_normals(4, 8, 8, g)
    light = sample_lights(4, g)
    a = render_lambertian(n, light, 0.7)
    b = render_lambertian(flip_normals(n), flip_normals(light), 0.7)
    assert torch.equal(a, b)


def test_albedo_map_and_numpy_wrapper():
    g = torch.Generator().manual_seed(3)
    n = _random_normals(2, 5, 5, g)
    light = sample_lights(2, g)
    alb = torch.rand(2, 1, 5, 5, generator=g)
    img = render_lambertian(n, light, alb)
    ref = alb * torch.einsum("bchw,bc->bhw", n, light).clamp_min(0)[:, None]
    assert torch.allclose(img, ref, atol=1e-6)
    one = render_lambertian_np(n[0].numpy(), light[0].numpy() * 3.0, 0.5)  # light normalized internally
    assert one.shape == (5, 5) and np.allclose(one, render_lambertian(n[:1], light[:1], 0.5)[0, 0].numpy(), atol=1e-6)


def test_lights_on_cap_with_uniform_tilt():
    g = torch.Generator().manual_seed(0)
    light = sample_lights(10_000, g).double()
    assert torch.allclose(light.norm(dim=1), torch.ones(10_000, dtype=torch.float64), atol=1e-6)
    assert light[:, 2].min() >= MIN_LZ - 1e-7 and MIN_LZ == pytest.approx(0.309017, abs=1e-6)
    # Rayleigh test of the tilt angles (Zar's p-value approximation)
    phi = torch.atan2(light[:, 1], light[:, 0])
    n = phi.numel()
    r_n = math.hypot(phi.cos().sum().item(), phi.sin().sum().item())
    p = math.exp(math.sqrt(1 + 4 * n + 4 * (n * n - r_n * r_n)) - (1 + 2 * n))
    assert p > 0.01
    # uniform on the cap <=> l_z uniform on [min_lz, 1] (Archimedes)
    assert abs(light[:, 2].mean().item() - (1 + MIN_LZ) / 2) < 0.01
    again = [sample_lights(7, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*again)


def test_render_random_ranges():
    g = torch.Generator().manual_seed(4)
    n = _random_normals(6, 4, 4, g)
    img, light, albedo = render_random(n, g, noise_range=(0.0, 0.01), ambient_range=(0.0, 0.05))
    assert img.shape == (6, 1, 4, 4) and light.shape == (6, 3) and albedo.shape == (6,)
    assert ((albedo >= 0.5) & (albedo <= 1)).all() and (light[:, 2] >= MIN_LZ - 1e-6).all()
    assert 0 <= img.min() and img.max() <= 1


def _sphere(res=9):
    c = (np.arange(res) + 0.5) / res * 2 - 1
    y, x = np.meshgrid(-c, c, indexing="ij")
    r2 = x * x + y * y
    n = np.stack([x, y, np.sqrt(np.clip(1 - r2, 0, None))]).astype(np.float32)
    n[:, r2 >= 1] = 0
    return n


def test_cli_round_trip_subprocess(tmp_path):
    n = _sphere()
    np.save(tmp_path / "ball.npy", n)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "render_diffuse.py"), str(tmp_path / "ball.npy"), "--out", str(out),
                        "--light", "-0.2", "0.5", "1", "--albedo", "0.8"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "ball.json").read_text())
    light = np.array([-0.2, 0.5, 1.0]) / np.linalg.norm([-0.2, 0.5, 1.0])
    assert np.allclose(meta["light"], light, atol=1e-6) and meta["albedo"] == 0.8
    img = np.load(out / "ball.npy")
    assert img.dtype == np.float32 and img.shape == (9, 9)
    assert np.allclose(img, 0.8 * np.clip(np.einsum("chw,c->hw", n, light), 0, None), atol=1e-6)
    from data.io import read_image
    assert np.allclose(read_image(out / "ball.png"), img, atol=1 / 65535)


def test_cli_bad_input_exit_code_2(tmp_path):
    np.save(tmp_path / "two.npy", np.zeros((2, 4, 4), np.float32))
    r = subprocess.run([sys.executable, str(ROOT / "render_diffuse.py"), str(tmp_path / "two.npy"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "error" in r.stderr
    bad = _sphere()
    bad[0, 4, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert _exit_code([str(tmp_path / "nan.npy"), "--out", str(tmp_path / "o")]) == 2
    assert _exit_code([str(tmp_path / "missing.npy"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def _exit_code(argv) -> int:
    """render_diffuse.py's exit status, run in-process the way its __main__ runs it."""
    from models.core.cli import cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(render_diffuse.main, argv)
    return exc.value.code


def test_cli_16bit_png_and_random_light_seeded(tmp_path):
    cv2 = pytest.importorskip("cv2")  # Pillow cannot write (or read back) 16-bit colour PNGs
    n = _sphere(12)
    rgb = np.where((n != 0).any(0)[..., None], (n.transpose(1, 2, 0) + 1) / 2, 0.0)
    cv2.imwrite(str(tmp_path / "ball.png"), np.round(rgb[..., ::-1] * 65535).astype(np.uint16))
    args = [str(tmp_path / "ball.png"), "--out", str(tmp_path / "o"), "--random-light", "--seed", "7",
            "--format", "npy"]
    assert render_diffuse.main(args) == 0
    meta = json.loads((tmp_path / "o" / "ball.json").read_text())
    assert meta["light"][2] >= MIN_LZ - 1e-6 and 0.5 <= meta["albedo"] <= 1
    img = np.load(tmp_path / "o" / "ball.npy")
    ref = meta["albedo"] * np.clip(np.einsum("chw,c->hw", n, np.array(meta["light"])), 0, None)
    assert np.allclose(img, ref, atol=1e-4)  # 16-bit quantization of the normals
    assert not (tmp_path / "o" / "ball.png").exists()
    first = img.copy()
    assert _exit_code(args) == 2  # a second run into the same --out never silently overwrites
    assert render_diffuse.main(args + ["--overwrite"]) == 0
    assert np.array_equal(np.load(tmp_path / "o" / "ball.npy"), first)


def test_cli_8bit_png_and_mask(tmp_path):
    from data.io import write_png
    n = _sphere(12)
    rgb = np.where((n != 0).any(0)[..., None], (n.transpose(1, 2, 0) + 1) / 2, 0.0)
    write_png(tmp_path / "ball.png", rgb, bits=8)
    mask = np.zeros((12, 12), np.float32)
    mask[:, :6] = 1
    np.save(tmp_path / "mask.npy", mask)
    args = [str(tmp_path / "ball.png"), "--out", str(tmp_path / "o"), "--light", "0", "0", "1", "--albedo", "1",
            "--fg-tol", "0.03", "--mask", str(tmp_path / "mask.npy"), "--format", "npy"]
    assert render_diffuse.main(args) == 0
    img = np.load(tmp_path / "o" / "ball.npy")
    assert (img[:, 6:] == 0).all() and (img[:, :6] > 0).sum() > 10
    assert _exit_code(args[:-4] + ["--mask", str(tmp_path / "nope.npy"), "--overwrite"]) == 2
