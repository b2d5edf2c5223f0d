"""DiffMotion data: renderer layout, resumability, loader contract and augmentations (specs/diffmotion.md §5.2-5.3, §10.1.6)."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from data import motion_render as mr
from data import motion_shapes as shp
from data.io import read_image
from data.motion import (MotionDataConfig, MotionDataset, decode_target_maps, encode_target_maps, foreground_mask,
                         load_pointer)

REPO = Path(__file__).resolve().parents[1]


def _render(root, n_obj=2, res=32, **kw):
    return mr.generate(root, n_obj, 1, resolution=res, backend="numpy", seed=0, progress=False, **kw)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion") / "train"
    _render(root)  # 2 sequences x 5 frames at 32^2 -> 4 clips
    return root


def _cfg(root, **kw):
    return MotionDataConfig(root=str(root), resolution=32, aug_static=0.0, aug_reverse=0.0, **kw)


def test_layout_and_pointer(tiny_root):
    entries = load_pointer(tiny_root)
    assert len(entries) == 4  # 2 clips per sequence
    for folder in ("obj_00000", "obj_00001"):
        files = sorted(p.name for p in (tiny_root / folder).iterdir())
        assert files == sorted(mr.sequence_files(0) + [mr.meta_file(0)])
        clips = [e for e in entries if e["folder"] == folder]
        assert [c["frames"] for c in clips] == [[0, 1, 2], [2, 3, 4]]
        assert clips[0]["paths"][2] == clips[1]["paths"][0]  # frame 2 is shared
        assert clips[1]["paths"][2]["roughness"] == f"{folder}/0_motion_4_roughness.png"


def test_item_contract_and_channel_order(tiny_root):
    ds = MotionDataset(_cfg(tiny_root))
    item = ds[(1, 0)]
    assert item["frames"].shape == (3, 3, 32, 32) and item["target"].shape == (3, 9, 32, 32)
    assert item["frames"].dtype == torch.float32 and item["target"].dtype == torch.float32
    for x in item.values():
        assert x.min() >= -1 and x.max() <= 1
    paths = ds.entries[1]["paths"]
    for t in range(3):
        png = {m: read_image(tiny_root / paths[t][m]) for m in mr.MODALITIES}
        assert torch.allclose(item["frames"][t], torch.from_numpy(png["rgb"].transpose(2, 0, 1)) * 2 - 1)
        order = [png["normal"][..., c] for c in range(3)] + [png["albedo"][..., c] for c in range(3)]
        order += [png[m] for m in ("metallic", "specular", "roughness")]
        assert torch.allclose(item["target"][t], torch.from_numpy(np.stack(order)) * 2 - 1)


def test_static_and_reverse_augmentations(tiny_root):
    plain = MotionDataset(_cfg(tiny_root))
    static = MotionDataset(replace(_cfg(tiny_root), aug_static=1.0))
    rev = MotionDataset(replace(_cfg(tiny_root), aug_reverse=1.0))
    base = plain[(0, 0)]
    picked = set()
    for seed in range(6):
        it = static[(0, seed)]
        for k in ("frames", "target"):  # all 3 frames identical in all 6 modalities
            assert torch.equal(it[k][0], it[k][1]) and torch.equal(it[k][1], it[k][2])
        t = next(t for t in range(3) if torch.equal(it["frames"][0], base["frames"][t]))
        assert torch.equal(it["target"][0], base["target"][t])  # RGB and GT come from the same frame
        picked.add(t)
    assert len(picked) > 1  # the static frame is drawn per seed
    it = rev[(0, 3)]
    assert torch.equal(it["frames"], base["frames"].flip(0)) and torch.equal(it["target"], base["target"].flip(0))


def test_determinism_by_key(tiny_root):
    ds = MotionDataset(replace(_cfg(tiny_root), aug_static=0.2, aug_reverse=0.5))
    a, b = ds[(2, 17)], ds[(2, 17)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    augs = [ds.augmentation(2, s)[1:] for s in range(400)]
    assert 0.12 < np.mean([s for s, _ in augs]) < 0.28 and 0.4 < np.mean([r for _, r in augs]) < 0.6
    assert ds.augmentation(2, 5) == ds.augmentation(2, 5) and len({ds.augmentation(2, s)[0].__repr__() for s in range(50)}) > 2


def test_normals_unit_on_foreground_and_background_zero(tiny_root):
    ds = MotionDataset(_cfg(tiny_root))
    tgt = ds[(0, 0)]["target"]
    fg = foreground_mask(tgt)
    assert 0.05 < fg.float().mean() < 0.9
    assert ((tgt[:, :3].norm(dim=1) - 1).abs()[fg] < 0.02).all()
    bg = ~fg.unsqueeze(1).expand_as(tgt)
    assert (tgt[bg] == -1).all()  # GT background: PNG value 0 in every map (spec §2.5)
    assert (ds[(0, 0)]["frames"][~fg.unsqueeze(1).expand(3, 3, 32, 32)] < -0.9).mean(dtype=torch.float32) > 0.95


def test_encode_decode_roundtrip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 9, 8, 8, generator=g) * 2 - 1
    enc = encode_target_maps(x)
    assert enc["normal"].shape == (2, 8, 8, 3) and enc["roughness"].shape == (2, 8, 8)
    dec = torch.stack([decode_target_maps({k: v[i] for k, v in enc.items()}) for i in range(2)])
    assert (dec - x).abs().max() <= 1 / 255 + 1e-6
    trunc = encode_target_maps(x, truncate=True)
    assert (trunc["albedo"].astype(int) <= enc["albedo"].astype(int)).all()


def test_resume_rerenders_half_written_sequence(tmp_path):
    root = tmp_path / "d"
    _render(root)
    seq = root / "obj_00001"
    before = (seq / "0_motion_3_normal.png").read_bytes()
    (seq / mr.meta_file(0)).unlink()  # crash after moving some files, before the marker was written
    (seq / "0_motion_3_normal.png").unlink()
    (seq / ".tmp_0_999").mkdir()
    (seq / ".tmp_0_999" / "0_motion_4_rgb.png").write_bytes(b"junk")
    complete, partial = mr.scan_sequences(root)
    assert partial == [("obj_00001", 0)] and complete == [("obj_00000", 0)]
    with pytest.raises(FileNotFoundError, match="obj_00001/0"):
        MotionDataset(_cfg(root))  # the stale pointer still lists it: named as half-rendered
    assert len(mr.build_pointer(root)) == 2  # a rebuilt pointer never lists a partial sequence
    stats = _render(root)
    assert stats["rendered"] == 1 and stats["skipped"] == 1 and stats["partial"] == [] and stats["clips"] == 4
    assert not list(seq.glob(".tmp_*"))
    assert (seq / "0_motion_3_normal.png").read_bytes() == before  # deterministic by seed
    assert len(MotionDataset(_cfg(root))) == 4


def test_clear_errors(tiny_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="pointer file not found"):
        MotionDataset(_cfg(tmp_path))
    ds = MotionDataset(replace(_cfg(tiny_root), resolution=64))
    with pytest.raises(ValueError, match="expected 64x64"):
        ds[(0, 0)]
    with pytest.raises(ValueError, match="unknown split"):
        MotionDataset(_cfg(tiny_root), split="bogus")
    held = MotionDataset(replace(_cfg(tiny_root), held_out_root=str(tiny_root), aug_static=1.0), split="held_out")
    assert held.p_static == 0.0  # held-out clips are read as rendered


def test_scene_specs_are_seeded():
    a, b = mr.sample_scene(3, 1, 0), mr.sample_scene(3, 1, 0)
    assert a == b
    c, h = mr.sample_scene(3, 1, 1), mr.sample_scene(3, 1, 0, held_out=True)
    assert c["shape"] == a["shape"] and c["texture_seed"] != a["texture_seed"]  # one shape per object folder
    assert h["shape"]["seed"] != a["shape"]["seed"] and h["texture_seed"] != a["texture_seed"]
    assert 2 <= abs(a["motion"]["dtheta_deg"]) <= 6 and 30 <= a["camera"]["fov"] <= 40


@pytest.mark.parametrize("family", shp.MESH_FAMILIES)
def test_procedural_meshes(family):
    m = shp.make_mesh(np.random.default_rng(0), family, nu=48, nv=24)
    r = np.linalg.norm(m.vertices, axis=1)
    assert abs(r.max() - 1) < 1e-5 and m.faces.max() < len(m.vertices)
    assert np.allclose(np.linalg.norm(m.normals, axis=1), 1, atol=1e-4)
    assert (m.normals * (m.vertices - m.vertices.mean(0))).sum(1).mean() > 0  # outward
    assert m.uvs.min() >= 0 and m.uvs.max() <= 1


def test_textures_and_envmap():
    rng = np.random.default_rng(1)
    for fam in shp.TEXTURE_FAMILIES:
        tex, _ = shp.make_base_color(rng, fam, size=32)
        assert tex.shape == (32, 32, 3) and tex.min() >= 0 and tex.max() <= 1
    env, info = shp.make_environment(rng, h=32, kind="sky")
    d, dom = shp.envmap_directions(32)
    assert abs(dom.sum() - 4 * np.pi) < 1e-2 and env.shape == (32, 64, 3) and len(info["lights"]) == 1


def test_cli_help():
    r = subprocess.run([sys.executable, str(REPO / "scripts/render_motion.py"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--held-out" in r.stdout and "--backend" in r.stdout


@pytest.mark.mitsuba
def test_mitsuba_sequence_scalar_rgb(tmp_path):
    pytest.importorskip("mitsuba")
    stats = mr.generate(tmp_path, 1, 1, resolution=32, spp=8, backend="mitsuba", variant="scalar_rgb", seed=0, progress=False)
    assert stats["clips"] == 2
    ds = MotionDataset(_cfg(tmp_path))
    it = ds[(0, 0)]
    fg = foreground_mask(it["target"])
    assert fg.float().mean() > 0.05
    assert ((it["target"][:, :3].norm(dim=1) - 1).abs()[fg] < 0.02).all()
    assert (it["frames"].permute(1, 0, 2, 3)[:, ~fg] <= -0.9).float().mean() > 0.9  # black background


@pytest.mark.mitsuba
def test_mitsuba_matches_numpy_on_a_sphere():
    """Both backends must agree on GT geometry and conventions: unit sphere, same camera, rotation and textures."""
    pytest.importorskip("mitsuba")
    spec = mr.sample_scene(0, 0, 0, backend="numpy")
    spec["shape"] = {"family": "ellipsoid", "seed": 1}
    th, ph = shp._sphere_grid(128, 64)
    P = np.stack(np.broadcast_arrays(np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)), -1)
    r = mr.MitsubaRenderer("scalar_rgb")
    r._mesh_cache = {("ellipsoid", None, 1): shp.finish_mesh(*shp.grid_mesh(P), "sphere")}
    assets = mr.scene_assets(spec, tex_size=64)
    sdf = {"prims": [{"kind": "ellipsoid", "c": [0, 0, 0], "radii": [1, 1, 1], "R": np.eye(3).tolist()}], "scale": 1.0, "smooth": 0.1}
    rot, basis = shp.rotation_y(0.7), mr.camera_basis(spec["camera"])
    a = mr.encode_frame(basis=basis, **r.render_frame(spec, assets, rot, 32, 8, spp_gt=16))
    b = mr.encode_frame(basis=basis, **mr.render_frame_numpy(spec, assets, sdf, rot, 32, ss=4))
    fa, fb = a["normal"].sum(-1) > 0, b["normal"].sum(-1) > 0
    assert (fa == fb).mean() > 0.98
    both = fa & fb
    for k in ("normal", "albedo", "roughness", "metallic", "specular"):
        assert np.abs(a[k].astype(int) - b[k].astype(int))[both].mean() < 3, k
    n = a["normal"].astype(float) / 255 * 2 - 1  # x right, y up, z toward the viewer
    assert n[:, 20:, 0][both[:, 20:]].mean() > 0.3 and n[:12, :, 1][both[:12]].mean() > 0.3 and n[..., 2][both].min() > -0.2


@pytest.mark.mitsuba
def test_mitsuba_user_mesh_without_uv(tmp_path):
    pytest.importorskip("mitsuba")
    m = shp.make_mesh(np.random.default_rng(3), "torus", nu=24, nv=12)
    obj = tmp_path / "ring.obj"
    obj.write_text("".join(f"v {x} {y} {z}\n" for x, y, z in m.vertices * 3 + 1)
                   + "".join(f"f {a} {b} {c}\n" for a, b, c in m.faces + 1))
    stats = mr.generate(tmp_path / "d", 1, 1, resolution=16, spp=4, seed=0, user_meshes=(str(obj),), mesh_fraction=1.0,
                        progress=False)
    assert stats["clips"] == 2
    meta = json.loads((tmp_path / "d" / "obj_00000" / mr.meta_file(0)).read_text())
    assert meta["shape"]["family"] == "file"
