"""Procedural SfS normal maps, the cached dataset with its crops and augmentations, and test_data/sfs (§11, §7)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data.lambertian import flip_normals, render_lambertian
from data.sfs import (CropSource, SfsCropDataset, SfsDataConfig, area_downsample, augment, cache_path, load_maps,
                      map_seed, mirror_normals, rot90_normals, sample_crop_batch, sample_crops)
from data.sfs_shapes import (OBJECT, RELIEF, normal_map, normals_from_height, object_scene, pixel_grid, relief_scene,
                             slant_deg)

ROOT = Path(__file__).resolve().parents[1]



def _unit_fg(n):
    fg = (n != 0).any(0)
    return fg, (n.norm(dim=0)[fg] - 1).abs().max().item() if fg.any() else 0.0


@pytest.mark.parametrize("family", ["object", "relief"])
def test_maps_deterministic_unit_and_background(family):
    a, fa = normal_map(11, 48, family)
    b, _ = normal_map(11, 48, family)
    c, _ = normal_map(12, 48, family)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32 and torch.isfinite(a).all()
    fg, err = _unit_fg(a)
    assert err < 1e-4
    assert (a[:, ~fg] == 0).all()
    if family == "relief":
        assert fg.all() and fa == RELIEF
    else:
        assert fa == OBJECT and 0 < fg.float().mean() < 1


def test_object_foreground_fraction_and_facing():
    fracs = []
    for seed in range(6):
        n = object_scene(48, seed)
        fg = (n != 0).any(0)
        fracs.append(fg.float().mean().item())
        assert (n[2][fg] > -0.2).float().mean() > 0.99  # visible surfaces face the camera
    assert 0.3 <= float(np.median(fracs)) <= 0.7 and min(fracs) > 0.15


def test_relief_slant_statistics():
    means = [slant_deg(relief_scene(64, seed))[...].mean().item() for seed in range(8)]
    assert 14 <= float(np.median(means)) <= 26, means


def test_normals_from_height_frame():
    x, y = pixel_grid(32)
    z = 0.3 * x - 0.2 * y  # rises to the right, falls upward
    n = normals_from_height(z, spacing=2 / 32)
    ref = torch.tensor([-0.3, 0.2, 1.0]) / math.sqrt(0.3 ** 2 + 0.2 ** 2 + 1)
    assert torch.allclose(n, ref[:, None, None].expand_as(n), atol=1e-5)


def _bumpy_height(res=24):
    x, y = pixel_grid(res)
    return torch.sin(3 * x + 1) * torch.cos(2 * y) + 0.4 * x * y ** 2 + 0.2 * x


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_matches_rotated_height_field(k):
    z = _bumpy_height()
    n = normals_from_height(z)
    assert torch.allclose(rot90_normals(n, k), normals_from_height(torch.rot90(z, k, dims=(-2, -1))), atol=1e-6)
    # counter-clockwise: the top-right pixel moves to the top-left corner
    assert torch.rot90(z, 1, dims=(-2, -1))[0, 0] == z[0, -1]


def test_mirror_matches_mirrored_height_field():
    z = _bumpy_height()
    assert torch.allclose(mirror_normals(normals_from_height(z)), normals_from_height(torch.flip(z, (-1,))), atol=1e-6)


def test_depth_flip_only_for_reliefs():
    n = normals_from_height(_bumpy_height(16))[None].repeat(64, 1, 1, 1)
    fam = torch.tensor([OBJECT, RELIEF] * 32)
    out = augment(n, fam, torch.Generator().manual_seed(0), dihedral=False, depth_flip=True)
    assert torch.equal(out[fam == OBJECT], n[fam == OBJECT])
    flipped = [torch.equal(o, flip_normals(n[0])) for o in out[fam == RELIEF]]
    assert 5 < sum(flipped) < 27 and all(f or torch.equal(o, n[0]) for f, o in zip(flipped, out[fam == RELIEF]))


def test_area_downsample():
    n = torch.zeros(1, 3, 12, 12)
    n[:, 2, :, :6] = 1.0  # left half: flat foreground, right half background
    d = area_downsample(n, 8)
    assert d.shape == (1, 3, 8, 8)
    assert torch.equal(d[0, 2, :, :4], torch.ones(8, 4)) and (d[0, :, :, 4:] == 0).all()
    m = normal_map(3, 48, "object")[0][None]
    dm = area_downsample(m, 32)
    fg = (dm != 0).any(1)
    assert (dm.norm(dim=1)[fg] - 1).abs().max() < 1e-5
    assert abs(fg.float().mean() - (m != 0).any(1).float().mean()) < 0.05


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfs_cache")
    cfg = SfsDataConfig.tiny()
    return cfg, root, load_maps(cfg, "train", root, workers=0)


def test_cache_round_trip_and_splits(tiny):
    cfg, root, data = tiny
    path = cache_path(cfg, "train", root)
    assert path.is_file() and path.name.startswith("sfs_train_n8_r64")
    again = load_maps(cfg, "train", root, build=False)
    for r in cfg.levels:
        assert again["levels"][r].dtype == np.float16 and again["levels"][r].shape == (8, 3, r, r)
        assert np.array_equal(again["levels"][r], data["levels"][r])
    assert list(data["family"]) == [RELIEF, OBJECT] * 4
    train = {map_seed(cfg, "train", i) for i in range(cfg.num_maps)}
    held = {map_seed(cfg, "heldout", i) for i in range(cfg.heldout_maps)}
    assert not train & held
    with pytest.raises(FileNotFoundError):
        load_maps(cfg, "heldout", root, build=False)


def test_dataset_items_keyed_by_index_and_seed(tiny):
    cfg, root, data = tiny
    ds = SfsCropDataset(cfg, "train", root)
    assert len(ds) == 8
    a, b, c = ds[(3, 7)], ds[(3, 7)], ds[(3, 8)]
    assert a["normals"].shape == (cfg.crops_per_map, 3, 16, 16) and a["normals"].dtype == torch.float32
    assert torch.equal(a["normals"], b["normals"]) and not torch.equal(a["normals"], c["normals"])
    assert (a["family"] == int(data["family"][3])).all()
    for i in range(len(ds)):
        item = ds[(i, 0)]
        n = item["normals"]
        fg = (n != 0).any(1)
        frac = fg.float().mean(dim=(1, 2))
        assert ((frac >= cfg.min_foreground) | (frac == 0)).all()
        assert (frac == 0).sum() <= int(cfg.max_background * cfg.crops_per_map)
        assert (n.norm(dim=1)[fg] - 1).abs().max() < 1e-5


def test_batched_crop_sampler(tiny):
    cfg, _, data = tiny
    levels = [torch.from_numpy(data["levels"][r]) for r in cfg.levels]
    fam = torch.from_numpy(data["family"].astype(np.int64))
    out = sample_crops(levels, fam, 40, torch.Generator().manual_seed(0), cfg)
    assert out["normals"].shape == (40, 3, 16, 16)
    assert set(out["level"].tolist()) <= {0, 1, 2} and len(set(out["map"].tolist())) > 3
    frac = (out["normals"] != 0).any(1).float().mean(dim=(1, 2))
    assert ((frac >= cfg.min_foreground) | (frac == 0)).all() and (frac == 0).sum() <= 4


def test_get_batch_equals_items_one_by_one(tiny):
    """The batched path (what the training loop calls) is bitwise the per-item path, whatever the batch holds."""
    cfg, root, _ = tiny
    ds = SfsCropDataset(cfg, "train", root)
    keys = [(i % len(ds), 100 + 7 * i) for i in range(12)] + [(3, 7), (3, 7)]
    batch = ds.get_batch(keys)
    assert set(batch) == {"normals", "family", "level"}
    assert batch["normals"].shape == (len(keys), cfg.crops_per_map, 3, 16, 16)
    items = torch.utils.data.default_collate([ds[k] for k in keys])
    for name in batch:
        assert batch[name].dtype == items[name].dtype and torch.equal(batch[name], items[name]), name
    assert torch.equal(batch["normals"].view(torch.int32), items["normals"].view(torch.int32))  # signed zeros too
    other = ds.get_batch([(5, 1), (3, 7)])  # same key, other neighbours, other position in the batch
    assert torch.equal(other["normals"][1], batch["normals"][-1])
    assert len(set(batch["level"].flatten().tolist())) == 3
    with pytest.raises(IndexError, match="out of range"):
        ds.get_batch([(0, 1), (len(ds), 1)])
    with pytest.raises(ValueError, match="at least one key"):
        ds.get_batch([])


@pytest.mark.parametrize("flags", [(True, True), (False, True), (True, False), (False, False)])
def test_batched_sampler_with_augmentation_flags(tiny, flags):
    cfg, _, data = tiny
    cfg = SfsDataConfig(**{**cfg.__dict__, "augment": flags[0], "depth_flip": flags[1]})
    source = CropSource([torch.from_numpy(data["levels"][r]) for r in cfg.levels], cfg.crop_size)
    fam = torch.from_numpy(data["family"].astype(np.int64))
    seeds = [3, 4, 5]
    both = sample_crop_batch(source, fam, 6, [torch.Generator().manual_seed(s) for s in seeds], cfg)
    for b, s in enumerate(seeds):
        one = sample_crops(source.levels, fam, 6, torch.Generator().manual_seed(s), cfg)
        assert all(torch.equal(both[k][b], one[k]) for k in one)


def test_crop_source_gathers_the_right_windows(tiny):
    """Windows read through the strided views equal plain slicing of the maps; foreground counts from the summed-area
    tables equal direct counts, also where the running sums pass 2^15 (an all-foreground 192 px map)."""
    cfg, _, data = tiny
    levels = [torch.from_numpy(data["levels"][r]) for r in cfg.levels]
    big = torch.ones(2, 3, 192, 192, dtype=torch.float16)
    big[1, :, :40] = 0
    for lv in (levels, [big, big[:, :, :128, :128].contiguous()]):
        source = CropSource(lv, 16)
        n, r = lv[0].shape[0], [t.shape[-1] for t in lv]
        gen = torch.Generator().manual_seed(0)
        lev = torch.randint(0, len(lv), (64,), generator=gen)
        maps = torch.randint(0, n, (64,), generator=gen)
        span = torch.tensor(r)[lev] - 15
        yy, xx = (torch.rand(64, generator=gen) * span).long(), (torch.rand(64, generator=gen) * span).long()
        lev[:2], yy[:2], xx[:2] = 0, r[0] - 16, r[0] - 16  # bottom-right corners: the largest running sums
        crops = source.gather(maps, lev, yy, xx)
        counts = source.foreground_counts(maps, lev, yy, xx, 16)
        for j in range(64):
            want = lv[lev[j]][maps[j], :, yy[j]:yy[j] + 16, xx[j]:xx[j] + 16]
            assert torch.equal(crops[j], want)
            assert counts[j] == (want != 0).any(0).sum()


def test_test_data_stimuli_consistent():
    folder = ROOT / "test_data" / "sfs"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 3e6
    index = json.loads((folder / "stimuli.json").read_text())["stimuli"]
    assert {"circles", "rings", "snake", "star", "object0", "object1", "object2", "object3"} <= set(index)
    assert index["circles"]["size"] == 160
    for name, s in index.items():
        img = torch.from_numpy(np.load(folder / s["image"]))
        n = torch.from_numpy(np.load(folder / s["normals"]))
        assert img.dtype == torch.float32 and n.shape == (3, *img.shape)
        light = torch.tensor(s["light"])
        assert torch.allclose(render_lambertian(n[None], light[None], s["albedo"])[0, 0], img, atol=1e-6)
        if s["kind"] == "relief":
            twin = torch.from_numpy(np.load(folder / s["normals_flip"]))
            assert torch.equal(twin, flip_normals(n))
            # The stored image was rendered on another CPU: compare within rounding, not bitwise.
            torch.testing.assert_close(render_lambertian(twin[None], torch.tensor(s["light_flip"])[None], 1.0)[0, 0],
                                       img, atol=1e-6, rtol=0)
        else:
            mask = np.load(folder / s["mask"]).astype(bool)
            assert np.array_equal(mask, (n != 0).any(0).numpy())


def test_sphere_tracing_agrees_with_analytic_ellipsoid():
    import data.sfs_shapes as S
    rng = np.random.default_rng(0)
    p = {"kind": "ellipsoid", "center": np.array([0.1, -0.05, 0.0]), "rot": S._rotation(rng),
         "axes": np.array([0.6, 0.35, 0.45]), "bound": 0.6}
    scene = S._Scene([p], 0.0, None)
    exact = S._render_scene(scene, 40)  # analytic intersection
    scene.k = 1e-9  # a one-primitive "smooth union" takes the sphere-tracing path
    traced = S._render_scene(scene, 40)
    fa, fb = (exact != 0).any(0), (traced != 0).any(0)
    both = fa & fb
    assert (fa ^ fb).sum() <= 0.02 * fa.sum()
    cos = (exact * traced).sum(0)[both]
    assert torch.rad2deg(torch.acos(cos.clamp(-1, 1))).mean() < 0.2
