"""Neighborhood attention: gather NA == masked dense reference, border rule, oracles (specs/diffmotion.md §10.2)."""
import math

import pytest
import torch

from models.nn.attention import (axis_neighbors, dense_attention, neighbor_table, neighborhood_attention,
                                 neighborhood_mask)
from models.nn.rope import apply_rope, grid_rope_angles

# (spatial sizes, kernel_size, dilation): the §10.2 shapes plus 1-D, 3-D, dilated and even-kernel cases
CASES = [
    ((20,), 7, 1),
    ((21,), 3, 3),
    ((20,), 8, 1),
    ((16, 16), 7, 1),
    ((9, 13), (3, 5), 1),
    ((7, 7), 7, 1),
    ((12, 10), 3, (2, 2)),
    ((12, 10), 3, (3, 2)),
    ((12, 11), 8, 1),
    ((12, 11), (4, 6), (2, 1)),
    ((3, 10, 12), (3, 7, 7), 1),
    ((5, 9, 11), (2, 3, 4), (2, 2, 2)),
]


def _qkv(sizes, batch=2, heads=2, dim=8, dtype=torch.float32, grad=False):
    gen = torch.Generator().manual_seed(1234)
    return [torch.randn(batch, *sizes, heads, dim, generator=gen, dtype=dtype).requires_grad_(grad) for _ in range(3)]


def _naive_attention(q, k, v, mask=None):
    """Explicit softmax(QK^T/sqrt(d)) V over flattened tokens, independent of SDPA."""
    b, h, d = q.shape[0], q.shape[-2], q.shape[-1]
    qf, kf, vf = (x.reshape(b, -1, h, x.shape[-1]) for x in (q, k, v))
    logits = torch.einsum("bnhd,bmhd->bhnm", qf, kf) / math.sqrt(d)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhnm,bmhd->bnhd", logits.softmax(-1), vf).reshape(v.shape)


@pytest.mark.parametrize("sizes,kernel,dilation", CASES)
def test_torch_backend_matches_dense_reference(sizes, kernel, dilation):
    q, k, v = _qkv(sizes, grad=True)
    out = neighborhood_attention(q, k, v, kernel, dilation, backend="torch")
    ref = neighborhood_attention(q, k, v, kernel, dilation, backend="dense")
    assert out.shape == q.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    grads_ref = torch.autograd.grad(ref, (q, k, v), grad_out)
    for name, g, g_ref in zip("qkv", grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=0, msg=lambda m, name=name: f"d{name}: {m}")


def test_dense_reference_matches_naive_softmax():
    q, k, v = _qkv((9, 13))
    mask = neighborhood_mask((9, 13), (3, 5))
    torch.testing.assert_close(neighborhood_attention(q, k, v, (3, 5), backend="dense"),
                               _naive_attention(q, k, v, mask), atol=1e-5, rtol=0)


def test_gradcheck_float64():
    q, k, v = _qkv((5, 4), batch=1, heads=1, dim=3, dtype=torch.float64, grad=True)
    assert torch.autograd.gradcheck(lambda *x: neighborhood_attention(*x, (3, 2), (1, 2), backend="torch"), (q, k, v),
                                    fast_mode=True)


@pytest.mark.parametrize("sizes", [(7,), (7, 7), (3, 4, 5)])
def test_window_equal_to_grid_is_global_attention(sizes):
    q, k, v = _qkv(sizes)
    out = neighborhood_attention(q, k, v, sizes, backend="torch")
    torch.testing.assert_close(out, dense_attention(q, k, v), atol=1e-6, rtol=0)
    torch.testing.assert_close(dense_attention(q, k, v), _naive_attention(q, k, v), atol=1e-6, rtol=0)


def test_axis_neighbors_border_and_dilation_rule():
    assert axis_neighbors(10, 3)[[0, 1, 5, 8, 9]].tolist() == [[0, 1, 2], [0, 1, 2], [4, 5, 6], [7, 8, 9], [7, 8, 9]]
    # dilation 2: sub-grids {0,2,4,6,8} and {1,3,5,7,9}, the same clamp applied on each
    assert axis_neighbors(10, 3, 2)[[0, 1, 8, 9]].tolist() == [[0, 2, 4], [1, 3, 5], [4, 6, 8], [5, 7, 9]]
    # uneven sub-grids: L=9, δ=2 gives lengths 5 and 4
    assert axis_neighbors(9, 4, 2)[[6, 7, 8]].tolist() == [[2, 4, 6, 8], [1, 3, 5, 7], [2, 4, 6, 8]]
    # even kernel: start = i - k//2 inside
    assert axis_neighbors(10, 8)[[4, 5, 6]].tolist() == [list(range(8)), list(range(1, 9)), list(range(2, 10))]


def test_border_shift_every_query_sees_k_keys():
    """Values = one-hot token ids, so the output row is the attention distribution over keys."""
    sizes, kern = (16, 16), 7
    n_tok = 256
    q, k, _ = _qkv(sizes, batch=1, heads=1)
    v = torch.eye(n_tok).reshape(1, *sizes, 1, n_tok)
    probs = neighborhood_attention(q, k, v, kern, backend="torch").reshape(n_tok, n_tok)
    support = probs > 0
    assert (support.sum(1) == kern * kern).all()
    assert torch.equal(support, neighborhood_mask(sizes, kern))
    first = torch.zeros(sizes, dtype=torch.bool)
    first[:kern, :kern] = True
    last = torch.zeros(sizes, dtype=torch.bool)
    last[-kern:, -kern:] = True
    interior = torch.zeros(sizes, dtype=torch.bool)
    interior[5:12, 7:14] = True  # centred on (8, 10)
    assert torch.equal(support[0].reshape(sizes), first)  # corner (0, 0)
    assert torch.equal(support[1 * 16 + 2].reshape(sizes), first)  # still inside the shifted window
    assert torch.equal(support[-1].reshape(sizes), last)
    assert torch.equal(support[8 * 16 + 10].reshape(sizes), interior)
    torch.testing.assert_close(probs.sum(1), torch.ones(n_tok))


def test_interior_shift_equivariance_with_rope():
    """Rolling the input by (3, 3) moves interior NA+RoPE outputs exactly (§3.6, §10.2.4)."""
    sizes, kern, shift = (16, 16), 7, 3
    q, k, v = _qkv(sizes, batch=1, heads=2, dim=8)
    angles = grid_rope_angles(sizes, 8).reshape(*sizes, 4)

    def block(q, k, v):
        return neighborhood_attention(apply_rope(q, angles), apply_rope(k, angles), v, kern, backend="torch")

    out = block(q, k, v)
    rolled = block(*(torch.roll(x, (shift, shift), dims=(1, 2)) for x in (q, k, v)))
    lo, hi = kern // 2, sizes[0] - kern // 2  # positions whose window is centred in both copies
    interior = (slice(None), slice(lo + shift, hi), slice(lo + shift, hi))
    moved = (slice(None), slice(lo, hi - shift), slice(lo, hi - shift))
    torch.testing.assert_close(rolled[interior], out[moved], atol=1e-5, rtol=0)
    # negative control: an absolute position embedding added to q breaks the equivariance
    absolute = torch.randn(1, *sizes, 1, 8, generator=torch.Generator().manual_seed(1))
    out_abs = block(q + absolute, k, v)
    rolled_abs = block(torch.roll(q, (shift, shift), dims=(1, 2)) + absolute,
                       *(torch.roll(x, (shift, shift), dims=(1, 2)) for x in (k, v)))
    assert (rolled_abs[interior] - out_abs[moved]).abs().max() > 1e-3


def test_bf16_forward_and_backward_run():
    q32, k32, v32 = _qkv((16, 16))
    q, k, v = (x.bfloat16().requires_grad_() for x in (q32, k32, v32))
    out = neighborhood_attention(q, k, v, 7, backend="torch")
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    ref = neighborhood_attention(q.float(), k.float(), v.float(), 7, backend="dense")
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=0)
    out.float().square().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()


def test_scale_argument():
    q, k, v = _qkv((9, 9))
    out = neighborhood_attention(q, k, v, 5, scale=0.3, backend="torch")
    torch.testing.assert_close(out, neighborhood_attention(q, k, v, 5, scale=0.3, backend="dense"), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, neighborhood_attention(q * 0.3 * math.sqrt(8), k, v, 5, backend="torch"),
                               atol=1e-5, rtol=0)


def test_cpu_auto_backend_never_calls_natten(monkeypatch):
    """On CPU "auto" is the gather path even when natten imports (its CPU forward has no backward), and it is a
    correct NA (equal to the dense reference)."""
    import models.nn.attention as attn

    def fused(*args):
        raise AssertionError("auto dispatched a CPU tensor to natten")

    monkeypatch.setattr(attn, "_natten_importable", lambda: True)
    monkeypatch.setattr(attn, "_na_natten", fused)
    q, k, v = _qkv((9, 9))
    out = neighborhood_attention(q, k, v, 3)
    torch.testing.assert_close(out, neighborhood_attention(q, k, v, 3, backend="dense"), atol=1e-5, rtol=0)
    with pytest.raises(AssertionError, match="dispatched"):  # the patch is live: an explicit request reaches it
        neighborhood_attention(q, k, v, 3, backend="natten")


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=(6, 6), kernel_size=7), "exceeds the axis length"),
    (dict(sizes=(12, 12), kernel_size=3, dilation=(5, 1)), "exceeds the axis length"),
    (dict(sizes=(12, 12), kernel_size=(3, 3, 3)), "kernel_size has 3 entries"),
    (dict(sizes=(12, 12), kernel_size=0), "must be >= 1"),
    (dict(sizes=(12, 12), kernel_size=3, dilation=0), "must be >= 1"),
    (dict(sizes=(12, 12), kernel_size=3, backend="flash"), "backend must be one of"),
    (dict(sizes=(2, 3, 4, 5), kernel_size=1), "1-3 spatial dims"),
    (dict(sizes=(), kernel_size=1), "1-3 spatial dims"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    sizes = kwargs.pop("sizes")
    q = torch.randn(1, *sizes, 2, 4)
    with pytest.raises(ValueError, match=match):
        neighborhood_attention(q, q, q, **kwargs)


def test_mismatched_inputs_raise_value_error():
    q = torch.randn(1, 8, 8, 2, 4)
    with pytest.raises(ValueError, match="k must have q's shape"):
        neighborhood_attention(q, q[:, :7], q, 3)
    with pytest.raises(ValueError, match="v must match q"):
        neighborhood_attention(q, q, q[..., :1, :], 3)
    with pytest.raises(ValueError, match="floating dtype"):
        neighborhood_attention(q, q, q.double(), 3)


def test_neighbor_table_is_cached_and_shaped():
    table = neighbor_table((9, 13), (3, 5))
    assert table.shape == (15, 9 * 13) and table is neighbor_table((9, 13), (3, 5))


# ---------------------------------------------------------------------------------------------------------------
# natten (optional): CPU forward parity via its flex backend, and fused CUDA parity
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.natten
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # CPU flex is unfused; that's the point
@pytest.mark.parametrize("sizes,kernel,dilation", CASES)
def test_natten_cpu_forward_matches_reference(sizes, kernel, dilation):
    pytest.importorskip("natten")
    q, k, v = _qkv(sizes, dim=8)  # natten's flex path needs a power-of-two head dim >= 8
    ref = neighborhood_attention(q, k, v, kernel, dilation, backend="dense")
    try:
        out = neighborhood_attention(q, k, v, kernel, dilation, backend="natten")
    except (NotImplementedError, RuntimeError) as err:
        pytest.skip(f"natten has no CPU forward here: {type(err).__name__}: {str(err)[:120]}")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.natten
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("sizes,kernel,dilation", [((16, 16), 7, 1), ((9, 13), (3, 5), 1), ((32, 32), 7, 1),
                                                    ((12, 10), 3, (3, 2)), ((3, 10, 12), (3, 7, 7), 1),
                                                    ((64,), 8, 1)])
def test_natten_fused_matches_reference_on_cuda(sizes, kernel, dilation, dtype, atol):
    pytest.importorskip("natten")
    q, k, v = (x.cuda().to(dtype) for x in _qkv(sizes, dim=32))
    ref = neighborhood_attention(q.float(), k.float(), v.float(), kernel, dilation, backend="torch")
    out = neighborhood_attention(q, k, v, kernel, dilation)  # auto -> natten on CUDA
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=0)
    torch.testing.assert_close(neighborhood_attention(q, k, v, kernel, dilation, backend="natten").float(), ref,
                               atol=atol, rtol=0)
