"""Structure from Duplicates, input side: label encoding (A1), N checks (A2), instance-id map, crops."""
import numpy as np
import pytest

from models.core.cli import UserError
from models.sfd import crops, segmentation as S


def _random_labels(n, rng, size=96):
    labels = rng.integers(0, n + 1, (size, size))
    labels[:2] = 0  # background
    labels[2, : n + 1] = np.arange(n + 1)  # every label present
    return labels


@pytest.mark.parametrize("n", [1, 2, 6, 10, 70])
def test_a1_encode_decode_round_trip(n):
    labels = _random_labels(n, np.random.default_rng(n))
    img = S.encode_labels(labels, n)
    assert img.dtype == np.uint8 and img.max() == 255
    inst = S.decode_labels(img)
    assert inst.n == n and inst.encoding == "k/N*255"
    np.testing.assert_array_equal(inst.labels, labels)


def test_a1_original_truncation_values():
    # N = 6 gives {0, 42, 85, 127, 170, 212, 255}: the original truncates k/N*255
    assert S.encode_value(np.arange(7), 6).tolist() == [0, 42, 85, 127, 170, 212, 255]


def test_a1_rounded_encoding_also_decodes():
    n = 6
    labels = _random_labels(n, np.random.default_rng(0))
    img = np.rint(labels * 255 / n).astype(np.uint8)  # another tool may round instead of truncate
    np.testing.assert_array_equal(S.decode_labels(img).labels, labels)


def test_integer_labels_and_arbitrary_ids():
    labels = _random_labels(4, np.random.default_rng(1))
    inst = S.decode_labels(labels.astype(np.uint8))
    assert inst.encoding == "integer" and inst.n == 4
    np.testing.assert_array_equal(inst.labels, labels)
    labels = _random_labels(3, np.random.default_rng(1))
    ids = np.array([0, 7, 300, 12])[labels].astype(np.uint16)  # 16-bit ids from some segmenter
    inst = S.decode_labels(ids)
    assert inst.source_values == [7, 12, 300]
    np.testing.assert_array_equal(inst.labels, np.array([0, 1, 3, 2])[labels])


def test_a2_n_mismatch_raises(tmp_path):
    from data.io import write_png

    labels = _random_labels(6, np.random.default_rng(2))
    path = tmp_path / "seg.png"
    write_png(path, S.encode_labels(labels, 6))
    assert S.load_instances(path, expect_n=6).n == 6
    with pytest.raises(UserError, match="holds 6 instances but --instances 5"):
        S.load_instances(path, expect_n=5)
    labels[labels == 3] = 0  # an instance without pixels changes N in the file
    write_png(path, S.encode_labels(labels, 6))
    with pytest.raises(UserError, match="not k/N"):
        S.load_instances(path, expect_n=6)


@pytest.mark.parametrize("values,match", [
    ([0, 10, 20, 255], "not k/N"),
    ([0, 100, 255, 254], "not k/N"),
    ([5, 255], "no background"),
])
def test_bad_label_values(values, match):
    img = np.array(values, np.uint8)[np.random.default_rng(0).integers(0, len(values), (16, 16))]
    img[0, : len(values)] = values
    with pytest.raises(UserError, match=match):
        S.decode_labels(img)


def test_single_instance_is_refused(tmp_path):
    from data.io import write_png

    img = np.zeros((32, 32), np.uint8)
    img[8:20, 8:20] = 255
    write_png(tmp_path / "one.png", img)
    with pytest.raises(UserError, match="only 1 instance"):
        S.load_instances(tmp_path / "one.png")


def test_keep_relabels_and_records_ids():
    labels = _random_labels(5, np.random.default_rng(3))
    inst = S.decode_labels(S.encode_labels(labels, 5))
    kept = inst.keep([2, 5, 4])
    assert kept.n == 3 and kept.source_values == [inst.source_values[1], inst.source_values[4], inst.source_values[3]]
    np.testing.assert_array_equal(kept.labels == 0, ~np.isin(labels, [2, 4, 5]))
    np.testing.assert_array_equal(kept.labels[labels == 5], 2)


def test_resize_labels_samples_pixel_centres():
    labels = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(S.resize_labels(labels, 2), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(S.resize_labels(labels, 8)[::2, ::2], labels)


def test_crops_are_pure_shifts_and_masked():
    rng = np.random.default_rng(4)
    rgb = rng.integers(1, 255, (200, 200, 3)).astype(np.uint8)
    labels = np.zeros((200, 200), np.int32)
    labels[10:60, 150:199] = 1
    labels[120:190, 5:40] = 2
    out, size = crops.crop_instances(rgb, labels, 2)
    assert size == 128  # ceil(70 / 0.75 / 64) * 64
    for c in out:
        ys, xs = np.nonzero(c.mask)
        np.testing.assert_array_equal(c.image[ys, xs], rgb[ys + c.y0, xs + c.x0])
        assert (c.image[~c.mask] == 0).all()
        assert c.mask.sum() == (labels == c.label).sum()
    with pytest.raises(UserError, match="does not fit"):
        crops.crop_instances(rgb, labels, 2, crop_size=64)
