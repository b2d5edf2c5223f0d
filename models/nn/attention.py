"""Neighborhood attention (NA) and dense attention in the heads-last layout `[B, *spatial, heads, d]`.

Backends of `neighborhood_attention`:
- "natten": natten >= 0.20 fused ops (`na1d/na2d/na3d`), the fast path on CUDA.
- "torch":  pure-PyTorch gather implementation. Memory is O(N * K) for N tokens and K = prod(kernel) window
            positions (it never builds an N x N matrix); differentiable (custom autograd Function).
- "dense":  masked dense attention through SDPA; O(N^2) memory, the readable reference for tests.
- "auto":   "natten" when q is on CUDA and natten imports, else "torch" (also, with a warning, when natten has
            no kernel for the case, e.g. an unsupported head dim).

Window rule (NATTEN's; Hassani et al. 2023, neighborhood attention): per axis, for query position i with dilation δ,
let r = i mod δ and j = i // δ be its place on the sub-grid r, r+δ, ... of length Ls = ceil((L - r) / δ).
The window start on that sub-grid is clamp(j - k//2, 0, Ls - k): near a border the window shifts inward instead of
being zero-padded, so every query sees exactly k keys per axis. Even k is allowed (start = j - k//2 inside).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "natten", "torch", "dense")


# ----------------------------------------------------------------------------------------------------------------
# Argument handling and neighbor tables
# ----------------------------------------------------------------------------------------------------------------
def _as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        out = (value,) * n
    else:
        out = tuple(int(x) for x in value)
        if len(out) != n:
            raise ValueError(f"{name} has {len(out)} entries but the input has {n} spatial dims")
    if any(x < 1 for x in out):
        raise ValueError(f"{name} must be >= 1 per axis, got {out}")
    return out


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, kernel_size, dilation):
    """Validate shapes and window arguments; return (spatial sizes, kernel tuple, dilation tuple)."""
    if q.dim() not in (4, 5, 6):
        raise ValueError(f"expected q of shape [B, *spatial, heads, d] with 1-3 spatial dims, got {tuple(q.shape)}")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"v must match q except in the last dim: q {tuple(q.shape)}, v {tuple(v.shape)}")
    if not (q.is_floating_point() and k.dtype == q.dtype and v.dtype == q.dtype):
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    n = q.dim() - 3
    sizes = tuple(q.shape[1:1 + n])
    ks = _as_tuple(kernel_size, n, "kernel_size")
    ds = _as_tuple(dilation, n, "dilation")
    for ax, (L, kk, dd) in enumerate(zip(sizes, ks, ds)):
        if kk * dd > L:
            raise ValueError(f"axis {ax}: kernel_size * dilation = {kk}*{dd} = {kk * dd} exceeds the axis length {L}")
    return sizes, ks, ds


def axis_neighbors(length: int, kernel: int, dilation: int = 1) -> Tensor:
    """Key indices [length, kernel] seen by each query position along one axis (the NATTEN border rule)."""
    if kernel * dilation > length:
        raise ValueError(f"kernel_size * dilation = {kernel * dilation} exceeds the axis length {length}")
    i = torch.arange(length)
    r, j = i % dilation, i // dilation
    sub_len = (length - r + dilation - 1) // dilation  # ceil((L - r) / δ) >= kernel because k*δ <= L
    start = torch.minimum((j - kernel // 2).clamp(min=0), sub_len - kernel)
    return r[:, None] + dilation * (start[:, None] + torch.arange(kernel)[None, :])


@functools.lru_cache(maxsize=64)
def _flat_neighbors(sizes: tuple[int, ...], kernel: tuple[int, ...], dilation: tuple[int, ...], device: str) -> Tensor:
    n = len(sizes)
    strides = [1] * n
    for a in range(n - 2, -1, -1):
        strides[a] = strides[a + 1] * sizes[a + 1]
    table = torch.zeros((), dtype=torch.long)
    for a in range(n):
        t = axis_neighbors(sizes[a], kernel[a], dilation[a]) * strides[a]  # [L_a, k_a]
        shape = [1] * (2 * n)
        shape[a], shape[n + a] = sizes[a], kernel[a]
        table = table + t.view(shape)  # broadcast to [L_1..L_n, k_1..k_n]
    # offset-major [K, N] so that each kernel offset is one contiguous index vector
    return table.reshape(math.prod(sizes), math.prod(kernel)).t().contiguous().to(device)


def neighbor_table(sizes: Sequence[int], kernel_size, dilation=1, device=None) -> Tensor:
    """Flat key index table [K, N] (K = prod(kernel), N = prod(sizes), row-major tokens) for the NA window rule."""
    n = len(sizes)
    ks, ds = _as_tuple(kernel_size, n, "kernel_size"), _as_tuple(dilation, n, "dilation")
    return _flat_neighbors(tuple(int(s) for s in sizes), ks, ds, str(torch.device(device or 'cpu')))


def neighborhood_mask(sizes: Sequence[int], kernel_size, dilation=1, device=None) -> Tensor:
    """Boolean [N, N] mask (True = query row may attend key column) for the NA window rule."""
    table = neighbor_table(sizes, kernel_size, dilation, device)
    n_tok = table.shape[1]
    mask = torch.zeros(n_tok, n_tok, dtype=torch.bool, device=table.device)
    return mask.scatter_(1, table.t(), True)


# ----------------------------------------------------------------------------------------------------------------
# Pure-PyTorch gather NA
# ----------------------------------------------------------------------------------------------------------------
def _acc(x: Tensor) -> Tensor:
    """Upcast half types to fp32 for accumulation; fp32/fp64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


# Offsets are processed in chunks whose gathered keys/values hold about this many elements: big enough that each
# op amortises its launch and thread-sync cost (which dominates on small, busy CPUs), small enough to bound memory.
CHUNK_ELEMENTS = 1 << 20


def _offset_chunks(n_win: int, per_offset: int):
    step = max(1, min(n_win, CHUNK_ELEMENTS // max(per_offset, 1)))
    return [(t, min(t + step, n_win)) for t in range(0, n_win, step)]


class _GatherNA(torch.autograd.Function):
    """Softmax attention of each query over its K gathered keys, a chunk of kernel offsets at a time.

    Saved for backward: q, k, v (the caller's tensors), the output and the probabilities [B, K, N, heads], so memory
    is O(N * heads * (d + K)) plus one chunk of gathered keys/values (about CHUNK_ELEMENTS). Half-precision inputs
    are computed in fp32. Near borders several queries share a key at the same offset, so key/value gradients are
    accumulated with index_add_.
    """

    @staticmethod
    def forward(ctx, q, k, v, table, scale):
        b, n_tok, h, d = q.shape
        n_win = table.shape[0]
        qs = (_acc(q) * scale).unsqueeze(1)  # [B, 1, N, h, d] broadcasts over offsets
        kf, vf = _acc(k), _acc(v)
        logits = qs.new_empty((b, n_win, n_tok, h))
        chunks = _offset_chunks(n_win, b * n_tok * h * max(d, v.shape[-1]))
        for t0, t1 in chunks:
            keys = kf.index_select(1, table[t0:t1].reshape(-1)).view(b, t1 - t0, n_tok, h, d)
            logits[:, t0:t1] = torch.linalg.vecdot(qs, keys)
        probs = torch.softmax(logits, dim=1)
        del logits
        out = None
        for t0, t1 in chunks:
            vals = vf.index_select(1, table[t0:t1].reshape(-1)).view(b, t1 - t0, n_tok, h, -1)
            part = (probs[:, t0:t1].unsqueeze(-1) * vals).sum(1)
            out = part if out is None else out.add_(part)
        ctx.save_for_backward(q, k, v, table, probs, out)
        ctx.scale = scale
        return out.to(q.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, table, probs, out = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        b, n_tok, h, d = q.shape
        go = _acc(grad_out)
        qs = _acc(q) * ctx.scale
        kv = torch.cat([_acc(k), _acc(v)], dim=-1)  # one gather per chunk serves both k and v
        delta = torch.linalg.vecdot(go, out).unsqueeze(1)  # sum_t p_t * dp_t, the softmax-backward shift
        dq = torch.zeros_like(qs) if need_q else None
        dkv = torch.zeros_like(kv) if (need_k or need_v) else None
        for t0, t1 in _offset_chunks(table.shape[0], b * n_tok * h * kv.shape[-1]):
            idx = table[t0:t1].reshape(-1)
            kv_g = kv.index_select(1, idx).view(b, t1 - t0, n_tok, h, -1)
            p = probs[:, t0:t1]
            ds = (p * (torch.linalg.vecdot(go.unsqueeze(1), kv_g[..., d:]) - delta)).unsqueeze(-1)
            if need_q:
                dq.add_((ds * kv_g[..., :d]).sum(1))
            if dkv is not None:
                contrib = torch.cat([ds * qs.unsqueeze(1), p.unsqueeze(-1) * go.unsqueeze(1)], dim=-1)
                dkv.index_add_(1, idx, contrib.view(b, -1, h, kv.shape[-1]))
        dq = (dq * ctx.scale).to(q.dtype) if need_q else None
        dk = dkv[..., :d].to(k.dtype) if need_k else None
        dv = dkv[..., d:].to(v.dtype) if need_v else None
        return dq, dk, dv, None, None


@torch.compiler.disable  # inductor cannot trace the chunked gather (InductorError); the rest of the net compiles
def _na_torch(q, k, v, sizes, ks, ds, scale):
    b, h = q.shape[0], q.shape[-2]
    n_tok = math.prod(sizes)
    table = neighbor_table(sizes, ks, ds, q.device)
    flat = lambda x: x.reshape(b, n_tok, h, x.shape[-1])  # noqa: E731  (a view for contiguous inputs)
    out = _GatherNA.apply(flat(q), flat(k), flat(v), table, scale)
    return out.reshape(v.shape)


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------
def dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, scale: float | None = None) -> Tensor:
    """Full softmax attention over flattened spatial dims, heads-last layout.

    q: [B, *Sq, heads, d]; k: [B, *Sk, heads, d]; v: [B, *Sk, heads, dv]. Spatial dims are flattened row-major to
    Nq and Nk tokens. mask: optional bool (True = may attend) or additive float tensor broadcastable to
    [B, heads, Nq, Nk] (an [Nq, Nk] matrix works). scale defaults to d**-0.5. Returns [B, *Sq, heads, dv].
    """
    if q.dim() < 3 or k.dim() < 3 or v.shape[:-1] != k.shape[:-1]:
        raise ValueError(f"expected [B, *spatial, heads, d] inputs, got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[-2] != k.shape[-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share batch, heads and head dim: {tuple(q.shape)} vs {tuple(k.shape)}")
    b, h = q.shape[0], q.shape[-2]
    to_heads_first = lambda x: x.reshape(b, -1, h, x.shape[-1]).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(to_heads_first(q), to_heads_first(k), to_heads_first(v),
                                         attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(*q.shape[:-1], v.shape[-1])


@functools.lru_cache(maxsize=1)
def _natten_importable() -> bool:
    from models.core.optional import is_available
    return is_available("natten")


def neighborhood_attention(q: Tensor, k: Tensor, v: Tensor, kernel_size, dilation=1, scale: float | None = None,
                           backend: str = "auto") -> Tensor:
    """Neighborhood attention with NATTEN's window rule (window shifts inward at borders; see module docstring).

    q, k: [B, *spatial, heads, d] with 1, 2 or 3 spatial dims (natten >= 0.20 heads-last layout); v: same but may
    have another last dim. kernel_size, dilation: int or one value per spatial dim; kernel_size * dilation must not
    exceed the axis length. scale defaults to d**-0.5. No attention dropout (natten's fused op has none).
    backend: "auto" | "natten" | "torch" | "dense" (see module docstring). Returns [B, *spatial, heads, dv].
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    sizes, ks, ds = _check_inputs(q, k, v, kernel_size, dilation)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if backend == "auto":
        if q.is_cuda and _natten_importable():
            try:
                return _na_natten(q, k, v, ks, ds, scale)
            except NotImplementedError as err:  # natten has no kernel for this head dim / dtype / device
                warnings.warn(f"natten cannot run this case ({err}); using the pure-PyTorch NA", stacklevel=2)
        backend = "torch"
    if backend == "torch":
        return _na_torch(q, k, v, sizes, ks, ds, float(scale))
    if backend == "dense":
        return dense_attention(q, k, v, mask=neighborhood_mask(sizes, ks, ds, q.device), scale=scale)
    return _na_natten(q, k, v, ks, ds, scale)


def _na_natten(q, k, v, ks, ds, scale):
    from models.core.optional import require
    natten = require("natten", feature="fused neighborhood attention", extra="natten")
    op = {1: natten.na1d, 2: natten.na2d, 3: natten.na3d}[len(ks)]
    return op(q, k, v, kernel_size=ks, dilation=ds, scale=float(scale))


__all__ = ["neighborhood_attention", "dense_attention", "neighborhood_mask", "neighbor_table", "axis_neighbors"]
