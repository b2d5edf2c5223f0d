"""A1: channel order, ranges, zeros, model-space and uint16 round trips; file and packed-set I/O with validation."""
import json

import numpy as np
import pytest

from models.omages import format as fmt
from models.omages.dataset import OmageDataset
from models.omages.encode import encode_mesh
from models.omages.procedural import make_shape


@pytest.fixture(scope="module")
def chair():
    return encode_mesh(make_shape("chair", 0).mesh_input(), res=256)


def test_channel_layout():
    assert fmt.N_CHANNELS == 12 and len(fmt.CHANNEL_NAMES) == 12
    assert (fmt.POS, fmt.OCC, fmt.NRM, fmt.ALB, fmt.MET, fmt.RGH) == (slice(0, 3), 3, slice(4, 7), slice(7, 10), 10, 11)


def test_a1_ranges_and_zeros(chair):
    for om in (chair.omage, chair.source):
        assert om.shape[-1] == 12 and om.min() >= 0.0 and om.max() <= 1.0
        occ = om[..., 3]
        assert set(np.unique(occ)) <= {0.0, 1.0}
        assert np.all(om[occ == 0] == 0.0)                 # unoccupied pixels: exactly 0 in all 12 channels
        n = om[occ == 1][:, 4:7] * 2 - 1
        assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
        p = om[occ == 1][:, :3] * 2 - 1
        assert np.abs(p).max() < 1.0 and np.isclose(np.ptp(p, axis=0).max(), 1.9999, atol=0.02)


def test_a1_model_space_and_uint16_round_trip(chair):
    x = chair.omage
    assert np.abs(fmt.to_file(fmt.to_model(x)) - x).max() <= 6e-8   # float32 rounding only
    m = fmt.to_model(x)
    assert np.all(m[x[..., 3] == 0] == -1.0)
    back = fmt.quantize(x).astype(np.float64) / 65535
    assert np.abs(back - x).max() <= 1 / 65535
    assert np.abs((back - x)[..., :3] * 2).max() <= 3.1e-5          # position error in world units


def test_npz_round_trip_and_key(tmp_path, chair):
    path = fmt.save_omage(tmp_path / "a.npz", chair.omage)
    with np.load(path, allow_pickle=False) as z:
        assert z.files == ["arr_0"] and z["arr_0"].dtype == np.uint16 and z["arr_0"].shape == (64, 64, 12)
    assert np.abs(fmt.load_omage(path) - chair.omage).max() <= 0.5 / 65535 + 1e-7
    np.save(tmp_path / "f.npy", chair.omage)                        # float files load too
    assert np.array_equal(fmt.load_omage(tmp_path / "f.npy"), chair.omage)


@pytest.mark.parametrize("arr, words", [
    (np.zeros((64, 64, 4), np.float32), "12"),
    (np.zeros((64, 32, 12), np.float32), "square"),
    (np.full((8, 8, 12), 1.5, np.float32), "[0, 1]"),
    (np.full((8, 8, 12), -0.1, np.float32), "[0, 1]"),
    (np.full((8, 8, 12), np.nan, np.float32), "nan"),
    (np.zeros((8, 8, 12), np.int32), "dtype"),
])
def test_validation_rejects(arr, words):
    with pytest.raises(fmt.OmageError, match=None) as err:
        fmt.validate(arr, "x")
    assert words.lower() in str(err.value).lower()


def test_load_rejects_pickles_and_garbage(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "key.npz", omage=np.zeros((4, 4, 12), np.float32))
    for name, words in (("obj.npy", "readable"), ("junk.npz", "readable"), ("key.npz", "arr_0")):
        with pytest.raises(fmt.OmageError) as err:
            fmt.load_omage(tmp_path / name)
        assert words in str(err.value)


def test_packed_set_and_dataset(tmp_path, chair):
    arr = np.stack([fmt.quantize(chair.omage), np.zeros((64, 64, 12), np.uint16)])
    recs = [{"id": "a", "class": "chair", "class_id": 0, "success": True},
            {"id": "b", "class": "lamp", "class_id": 2, "success": False}]
    path, meta = fmt.save_packed(tmp_path / "train_omages64.npy", arr, recs)
    assert json.loads(meta.read_text())["records"][1]["id"] == "b"
    back, r2 = fmt.load_packed(path)
    assert np.array_equal(back, arr) and r2 == recs
    ds = OmageDataset(path)
    assert len(ds) == 1 and ds.num_classes == 3                     # failed rows are skipped
    item = ds[0]
    x = item["omage"]
    assert tuple(x.shape) == (12, 64, 64) and x.dtype.is_floating_point
    assert x.min() >= -1 and x.max() <= 1 and int(item["label"]) == 0
    bg = x[3] < 0
    assert bool((x[:, bg] == -1).all())
    geo = OmageDataset(path, channels=fmt.GEOMETRY)[0]["omage"]
    assert tuple(geo.shape) == (4, 64, 64)
    flipped = OmageDataset(path, flip=True)
    assert all(np.array_equal(flipped[(0, s)]["omage"], flipped[(0, s)]["omage"]) for s in range(3))


def test_packed_mismatch_is_an_error(tmp_path, chair):
    arr = fmt.quantize(chair.omage)[None]
    path, meta = fmt.save_packed(tmp_path / "s.npy", arr, [{"id": "a"}])
    meta.write_text(json.dumps({"records": [{"id": "a"}, {"id": "b"}]}))
    with pytest.raises(fmt.OmageError, match="records"):
        fmt.load_packed(path)
