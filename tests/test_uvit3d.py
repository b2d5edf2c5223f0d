"""UViT3D / UViT3D-Mixer contracts (diffmotion spec §3, §10.1, §10.2.4, §11). CPU, tiny configs only."""
from __future__ import annotations

import pytest
import torch

from models.nets.uvit3d import UViT3D, build_on_meta, count_parameters
from models.nets.uvit3d_blocks import NALayer, NeighborhoodSelfAttention, TemporalAttnBlock
from uvit3d_configs import PRESETS, uvit3d_preset

EXPECTED_PARAMS = {
    "nattn_mid": 100_292_681,
    "plain_mid": 95_730_377,
    "plain_default": 42_620_297,
    "plain_deep": 170_041_353,
    "tiny": 622_345,
    "tiny_wide": 1_688_137,
}


def _count(m):
    return sum(p.numel() for p in m.parameters())


def _randomize(net: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give zero-initialised weights random values so the residual branches are active."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return net


def _inputs(bsz=1, t=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(bsz, t, 9, size, size, generator=g)
    c = torch.rand(bsz, t, 3, size, size, generator=g) * 2 - 1
    lvl = torch.rand(bsz, t, generator=g) * 3 - 2
    return z, lvl, c


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_parameter_counts(name):
    net = build_on_meta(PRESETS[name])
    assert count_parameters(net) == EXPECTED_PARAMS[name]
    assert sum(b.numel() for b in net.buffers()) == 512  # the Fourier freqs/phases, nothing else persistent
    assert sum(b.numel() for b in net.state_dict().values()) == EXPECTED_PARAMS[name] + 512


def test_per_block_counts_nattn_mid():
    """§3.9 per-block table, which localises any count error."""
    net = build_on_meta(PRESETS["nattn_mid"])
    assert len(net.state_dict()) == 388
    assert _count(net.embed_input) == 4_704
    assert _count(net.noise_level_pos_embedding) == 787_968
    assert _count(net.project_output) == 3_465
    assert [_count(b) for b in net.down_blocks[0]] == [314_112, 314_112, 203_328, 415_616, 184_640, 203_328, 166_080]
    assert [_count(b) for b in net.down_blocks[1]] == [960_000, 960_000, 517_248, 1_070_848, 443_008, 517_248,
                                                        663_936]
    assert [_count(b) for b in net.down_blocks[2]] == [2_364_032] * 3 + [2_654_976]
    assert [_count(b) for b in net.mid_blocks] == [8_267_008] * 8
    assert [_count(level) for level in net.up_blocks] == [9_746_688, 5_132_096, 1_801_120]
    assert _count(net.up_blocks[0][0]) == 2_654_592


def test_state_dict_names_follow_appendix_a():
    sd = build_on_meta(PRESETS["nattn_mid"]).state_dict()
    shapes = {
        "embed_input.proj.weight": (96, 12, 2, 2),
        "project_output.proj.weight": (96, 9, 2, 2),
        "noise_level_pos_embedding.timesteps.freqs": (256,),
        "noise_level_pos_embedding.timesteps.phases": (256,),
        "noise_level_pos_embedding.embedding.linear_1.weight": (768, 256),
        "noise_level_pos_embedding.embedding.linear_2.weight": (768, 768),
        "down_blocks.0.1.emb_layer.weight": (192, 768, 1, 1),
        "down_blocks.0.0.in_layers.0.weight": (96,),
        "down_blocks.0.0.in_layers.2.weight": (96, 96, 3, 3),
        "down_blocks.1.1.out_norm.bias": (192,),
        "down_blocks.1.0.out_rest.1.weight": (192, 192, 3, 3),
        "up_blocks.2.2.out_rest.1.weight": (96, 96, 3, 3),
        "down_blocks.0.5.emb_layer.weight": (192, 768),
        "down_blocks.0.2.mlp.fc1.weight": (288, 96),
        "up_blocks.1.6.mlp.fc2.weight": (192, 576),
        "down_blocks.0.3.self_attn.norm.emb_layer.weight": (192, 768, 1, 1),
        "down_blocks.0.3.self_attn.norm.norm.weight": (96,),
        "down_blocks.0.3.self_attn.qkv_proj.weight": (288, 96),
        "down_blocks.0.3.self_attn.q_norm.weight": (16,),
        "up_blocks.1.4.self_attn.k_norm.weight": (32,),
        "down_blocks.0.3.self_attn.out_proj.weight": (96, 96),
        "up_blocks.2.4.out_rest.1.weight": (96, 96, 3, 3),
        "down_blocks.1.4.attn_block.norm.emb_layer.weight": (384, 768),
        "down_blocks.1.4.attn_block.norm.norm.weight": (192,),
        "up_blocks.2.5.attn_block.proj.weight": (288, 96),
        "up_blocks.2.5.attn_block.q_norm.weight": (16,),
        "down_blocks.0.4.attn_block.out.weight": (96, 96),
        "down_blocks.0.6.conv.weight": (192, 96, 3, 3),
        "down_blocks.2.3.conv.weight": (768, 384, 3, 3),
        "up_blocks.0.0.conv.weight": (384, 768, 3, 3),
        "up_blocks.2.0.conv.weight": (96, 192, 3, 3),
        "down_blocks.2.0.norm.emb_layer.weight": (768, 768),
        "down_blocks.2.0.fused_attn_mlp_proj.weight": (2688, 384),
        "mid_blocks.7.q_norm.weight": (128,),
        "mid_blocks.7.attn_out.bias": (768,),
        "up_blocks.0.3.mlp_out.2.weight": (384, 1536),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "down_blocks.0.3.self_attn.qkv_proj.bias" not in sd
    assert not any("rope" in k for k in sd)  # RoPE tables are computed, never stored


def test_spec_shape_trace_at_256_on_meta():
    """§3.8 level shapes for the faithful model, traced without allocating (meta tensors)."""
    with torch.device("meta"):
        net = UViT3D(PRESETS["nattn_mid"])
        z, lvl, c = torch.empty(1, 3, 9, 256, 256), torch.empty(1, 3), torch.empty(1, 3, 3, 256, 256)
    seen = {}
    hooks = [net.embed_input.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o.shape))]
    for i, level in enumerate(net.down_blocks):
        hooks.append(level[-1].register_forward_hook(lambda m, i_, o, i=i: seen.__setitem__(f"down{i}", o.shape)))
    hooks.append(net.down_blocks[0][3].self_attn.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("na0", args[0].shape)))
    out = net(z, lvl, c)
    assert tuple(out.shape) == (1, 3, 9, 256, 256)
    assert tuple(seen["stem"]) == (3, 96, 128, 128) == tuple(seen["na0"])
    assert [tuple(seen[f"down{i}"]) for i in range(3)] == [(3, 192, 64, 64), (3, 384, 32, 32), (3, 768, 16, 16)]


def test_tiny_level_shapes_with_hooks():
    net = UViT3D(uvit3d_preset("tiny")).eval()
    shapes = []
    for name, mod in net.named_modules():
        parts = name.split(".")
        depth = 2 if parts[0] == "mid_blocks" else 3
        if parts[0] in ("down_blocks", "up_blocks", "mid_blocks") and len(parts) == depth:
            mod.register_forward_hook(lambda m, i, o, name=name: shapes.append((name, tuple(o.shape))))
    z, lvl, c = _inputs(bsz=2)
    with torch.no_grad():
        out = net(z, lvl, c)
    got = dict(shapes)
    assert out.shape == (2, 3, 9, 32, 32)
    assert got["down_blocks.0.0"] == (6, 32, 16, 16) and got["down_blocks.0.5"] == (6, 32, 8, 8)
    assert got["down_blocks.1.4"] == (6, 32, 8, 8) and got["down_blocks.1.5"] == (6, 64, 4, 4)
    assert got["down_blocks.2.0"] == (6, 64, 4, 4) and got["down_blocks.2.1"] == (6, 64, 2, 2)
    assert got["mid_blocks.0"] == (6, 64, 2, 2)
    assert got["up_blocks.0.0"] == (6, 64, 4, 4) and got["up_blocks.1.0"] == (6, 32, 8, 8)
    assert got["up_blocks.2.0"] == (6, 32, 16, 16) and got["up_blocks.2.5"] == (6, 32, 16, 16)


@pytest.mark.parametrize("name", ["tiny", "tiny_wide"])
def test_fresh_init_outputs_exactly_zero(name):
    net = UViT3D(uvit3d_preset(name))
    out = net(*_inputs(bsz=2))
    assert out.shape == (2, 3, 9, 32, 32)
    assert out.abs().max().item() == 0.0


def test_plain_variant_runs_and_is_zero():
    cfg = uvit3d_preset("tiny", level_types=("res", "res", "transformer", "transformer"))
    out = UViT3D(cfg)(*_inputs())
    assert out.abs().max().item() == 0.0


def test_bad_inputs_raise_clear_errors():
    net = UViT3D(uvit3d_preset("tiny"))
    z, lvl, c = _inputs()
    with pytest.raises(ValueError, match="exactly 3"):
        net(z[:, :2], lvl[:, :2], c[:, :2])
    with pytest.raises(ValueError, match="square"):
        net(z[..., :16], lvl, c[..., :16])
    with pytest.raises(ValueError, match="multiple of 16"):
        net(z[..., :24, :24], lvl, c[..., :24, :24])
    z16, lvl16, c16 = _inputs(size=16)
    with pytest.raises(ValueError, match="neighborhood"):  # L1 map 4x4 < 7x7 window
        net(z16, lvl16, c16)
    with pytest.raises(ValueError, match="noise_level"):
        net(z, lvl[:, :1], c)
    with pytest.raises(ValueError, match="cond"):
        net(z, lvl, c[:, :, :1])
    with pytest.raises(ValueError, match="head dim multiple of 4"):
        uvit3d_preset("tiny", heads=4, channels=(24, 32, 64, 64), gn_groups=8)


def test_forward_other_sizes_and_grad_checkpointing():
    """Checkpointing gives the same values and gradients (RoPE from the live shape: 32x32 is not the nominal 256)."""
    torch.manual_seed(0)
    net = _randomize(UViT3D(uvit3d_preset("tiny", dropouts=(0.0,) * 4))).train()
    z, lvl, c = _inputs(size=32)
    out = net(z, lvl, c)
    out.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    assert out.abs().max() > 0
    net.zero_grad()
    net.cfg.grad_checkpointing = True
    out2 = net(z, lvl, c)
    out2.square().mean().backward()
    torch.testing.assert_close(out2, out, rtol=0, atol=1e-6)
    for g1, p in zip(grads, net.parameters()):
        torch.testing.assert_close(p.grad, g1, rtol=1e-5, atol=1e-6)


def test_temporal_attention_residual_flag():
    """Faithful block replaces x by the attention output (no identity skip); the fix is exactly x at init."""
    torch.manual_seed(0)
    x, emb = torch.randn(6, 32, 4, 4), torch.randn(6, 64)
    faithful = TemporalAttnBlock(32, 64, heads=2, residual=False)
    fixed = TemporalAttnBlock(32, 64, heads=2, residual=True)
    fixed.load_state_dict(faithful.state_dict())
    assert torch.equal(fixed(x, emb, 3), x)
    rel = (faithful(x, emb, 3) - x).norm() / x.norm()
    assert rel > 0.5


def _shift_error(module, x, emb, margin, shift=3, pos=None):
    """max |f(roll(x))[p] - f(x)[p - shift]| over positions p with a margin in both copies."""
    xin = x if pos is None else x + pos
    xr = torch.roll(x, (shift, shift), dims=(2, 3))
    xr_in = xr if pos is None else xr + pos
    with torch.no_grad():
        y, yr = module(xin, emb), module(xr_in, emb)
    size = x.shape[-1]
    lo, hi = margin + shift, size - margin  # p in [lo, hi) keeps p and p - shift away from both borders
    return (yr[..., lo:hi, lo:hi] - y[..., lo - shift:hi - shift, lo - shift:hi - shift]).abs().max().item()


def test_na_block_interior_shift_equivariance():
    """§10.2.4: roll by (3, 3) moves the interior output exactly; an absolute position embedding breaks it."""
    torch.manual_seed(0)
    attn = _randomize(NeighborhoodSelfAttention(32, 64, heads=2, groups=8, kernel=7, backend="torch"), std=0.2)
    x, emb = torch.randn(2, 32, 20, 20), torch.randn(2, 64)
    assert _shift_error(attn, x, emb, margin=3) <= 1e-5
    pos = torch.randn(1, 32, 20, 20)  # negative control: learned absolute positions
    assert _shift_error(attn, x, emb, margin=3, pos=pos) > 1e-3


def test_na_layer_wiring():
    """NALayer = x + Conv0(SiLU(FiLM(GN(NA-block(x))))): the outer residual is x (so at init, with the last conv
    zero, the layer is exactly the identity even when its attention is trained), the attention output is what the
    branch sees, and the embedding modulates it. (The full layer is not shift-equivariant once trained: the
    GroupNorm after the attention pools over the whole frame, border windows included; measured error 0.13.)"""
    torch.manual_seed(0)
    x, emb = torch.randn(2, 32, 20, 20), torch.randn(2, 64)
    layer = NALayer(32, 64, heads=2, groups=8, kernel=7, backend="torch").eval()
    _randomize(layer.self_attn, std=0.2)
    with torch.no_grad():
        assert torch.equal(layer(x, emb, 1), x)  # residual from x, not from the attention output
        _randomize(layer.out_rest, seed=1, std=0.2)
        out = layer(x, emb, 1)
        assert (out - x).abs().mean() > 1e-2
        assert (layer(x, torch.randn(2, 64), 1) - out).abs().mean() > 1e-3  # FiLM: the embedding matters
        layer.self_attn.out_proj.weight.zero_()  # attention branch off: the block passes x on unchanged
        assert (layer(x, emb, 1) - out).abs().mean() > 1e-3


@pytest.mark.slow
def test_faithful_model_runs_at_64():
    """The 100M faithful model on a 64x64 clip (level maps 32/16/8/4): shape and exact-zero output at init."""
    net = UViT3D(uvit3d_preset("nattn_mid")).eval()
    with torch.no_grad():
        out = net(*_inputs(size=64))
    assert out.shape == (1, 3, 9, 64, 64) and out.abs().max().item() == 0.0
