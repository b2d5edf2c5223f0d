"""Axial RoPE: split rule, pair rotation convention, norm preservation, relative-position property (§3.4, §10.2)."""
import math

import pytest
import torch

from models.nn.rope import apply_rope, grid_positions, grid_rope_angles, rope_angles, split_head_dim


@pytest.mark.parametrize("d,n_axes,expected", [
    (64, 3, [20, 22, 22]),
    (128, 3, [44, 42, 42]),
    (96, 3, [32, 32, 32]),
    (16, 2, [8, 8]),
    (32, 2, [16, 16]),
    (16, 1, [16]),
    (6, 3, [2, 2, 2]),
])
def test_split_head_dim(d, n_axes, expected):
    assert split_head_dim(d, n_axes) == expected


@pytest.mark.parametrize("d,n_axes", [(18, 2), (7, 1), (4, 3), (16, 4), (0, 1)])
def test_split_head_dim_rejects_bad_dims(d, n_axes):
    with pytest.raises(ValueError):
        split_head_dim(d, n_axes)


def test_grid_positions_row_major():
    pos = grid_positions(2, 3)
    assert pos.dtype == torch.long
    assert pos.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert grid_positions(2, 3, 4)[5].tolist() == [0, 1, 1]


def test_rope_angles_values():
    angles = rope_angles(torch.tensor([[5, 2]]), [8, 4])
    expected = [5 * 10000 ** (-i / 8) for i in (0, 2, 4, 6)] + [2 * 10000 ** (-i / 4) for i in (0, 2)]
    assert angles.shape == (1, 6) and angles.dtype == torch.float32
    torch.testing.assert_close(angles[0], torch.tensor(expected), atol=1e-6, rtol=1e-6)
    assert grid_rope_angles((3, 4, 5), 64).shape == (60, 32)


def test_apply_rope_adjacent_pair_convention():
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0, 3.0]])  # [N=1, d=5]: two pairs rotated, one channel passed through
    angles = torch.tensor([[math.pi / 2, math.pi / 2]])
    out = apply_rope(x, angles, heads_last=False)
    # (a, b) -> (a cos - b sin, b cos + a sin)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, -1.0, 0.0, 3.0]]), atol=1e-6, rtol=0)


def test_apply_rope_heads_last_equals_per_head():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 3, 16, generator=gen)  # [B, N, heads, d]
    angles = grid_rope_angles((3, 4), 16)
    per_head = apply_rope(x.transpose(1, 2), angles, heads_last=False).transpose(1, 2)
    torch.testing.assert_close(apply_rope(x, angles), per_head, atol=0, rtol=0)


def test_rotation_preserves_pair_norms_and_dtype():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 60, 4, 64, generator=gen)
    out = apply_rope(x, grid_rope_angles((3, 4, 5), 64))
    pair_norm = lambda t: t.unflatten(-1, (32, 2)).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(pair_norm(out), pair_norm(x), atol=1e-5, rtol=1e-5)
    bf = apply_rope(x.bfloat16(), grid_rope_angles((3, 4, 5), 64))
    assert bf.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="rotate"):
        apply_rope(x[..., :8], grid_rope_angles((3, 4, 5), 64))


@pytest.mark.parametrize("sizes_dim", [((40,), 16), ((16, 16), 16), ((3, 32, 32), 64), ((3, 16, 16), 128)])
def test_relative_position_property(sizes_dim):
    """<R(p) q, R(p') k> depends only on p - p' (checked on random unit vectors and random shifts)."""
    sizes, d = sizes_dim
    n_axes = len(sizes)
    gen = torch.Generator().manual_seed(0)
    n = 64
    q = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=-1)
    dims = split_head_dim(d, n_axes)
    high = torch.tensor(sizes)
    p = (torch.rand(n, n_axes, generator=gen) * high).long()
    p2 = (torch.rand(n, n_axes, generator=gen) * high).long()
    delta = (torch.rand(n, n_axes, generator=gen) * high).long()

    def dot(pq, pk):
        rq = apply_rope(q, rope_angles(pq, dims), heads_last=False)
        rk = apply_rope(k, rope_angles(pk, dims), heads_last=False)
        return (rq * rk).sum(-1)

    torch.testing.assert_close(dot(p + delta, p2 + delta), dot(p, p2), atol=1e-5, rtol=0)
    # and it is not trivially constant: changing the offset changes the logit
    assert (dot(p, p2 + 1) - dot(p, p2)).abs().max() > 1e-3


def test_cos_sin_tables_are_cached_and_exact():
    from models.nn import rope

    angles = grid_rope_angles((5, 6), 16)
    assert grid_rope_angles((5, 6), 16) is angles  # same grid, device: the same table
    assert grid_rope_angles((6, 5), 16) is not angles
    cos, sin = rope.rope_cos_sin(angles, torch.float32)
    again = rope.rope_cos_sin(angles, torch.float32)
    assert again[0] is cos and again[1] is sin  # reused, not recomputed
    assert torch.equal(cos, angles.cos()) and torch.equal(sin, angles.sin())
    assert rope.rope_cos_sin(angles, torch.float64)[0].dtype == torch.float64  # one table per dtype
    x = torch.randn(2, 30, 3, 16, generator=torch.Generator().manual_seed(0))
    first = apply_rope(x, angles)
    assert rope.rope_cos_sin(angles, torch.float32)[0] is cos and torch.equal(apply_rope(x, angles), first)
    # a copy with other values (or an in-place change) never reuses stale tables
    other = angles * 2
    torch.testing.assert_close(apply_rope(x, other, heads_last=True),
                               apply_rope(x, angles.clone().mul_(2)), atol=0, rtol=0)
    before = apply_rope(x, other)
    other.mul_(0.5)
    assert not torch.equal(apply_rope(x, other), before)
    torch.testing.assert_close(apply_rope(x, other), first, atol=0, rtol=0)


def test_inference_mode_tables_do_not_leak_into_training():
    angles = grid_rope_angles((4, 4), 16)
    x = torch.randn(1, 16, 2, 16)
    with torch.inference_mode():
        apply_rope(x, angles)  # fills an inference-mode entry
    q = x.clone().requires_grad_(True)
    apply_rope(q, angles).square().sum().backward()  # would raise if an inference tensor were saved for backward
    assert q.grad is not None and torch.isfinite(q.grad).all()
