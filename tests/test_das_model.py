"""DaS tracking transformer, checks M1-M9: zero-init exactness, branch off, copy init, gradients at init, parameter
counts and keys of the 5B config on the meta device, save/load, shapes, determinism and gradient checkpointing."""
import json

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import CogVideoXTransformer3DModel  # noqa: E402

from models.nets.das_tracking_transformer import (  # noqa: E402
    CheckpointFormatError, CogVideoXTransformer3DModelTracking, cogvideox_5b_i2v_config, is_branch_key)

TINY = dict(num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=4, time_embed_dim=8,
            text_embed_dim=16, num_layers=2, sample_width=8, sample_height=8, sample_frames=5, patch_size=2,
            temporal_compression_ratio=4, max_text_seq_length=7)


def base_model(seed=0, **kw):
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel(**{**TINY, **kw}).eval()


def inputs(seed=1, batch=2, frames=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, 8, 8, 8, generator=g)
    text = torch.randn(batch, 7, 16, generator=g)
    track = torch.randn(batch, frames, 8, 8, 8, generator=g)
    return x, text, track, torch.tensor([999, 321][:batch])


def randomise_branch(model, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.branch_modules():
            for p in module.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def test_m1_zero_init_equals_parent_bitwise():
    base = base_model()
    model = CogVideoXTransformer3DModelTracking.from_base(base, num_tracking_blocks=2).eval()
    x, text, track, t = inputs()
    with torch.no_grad():
        ref = base(x, text, t, return_dict=False)[0]
        out = model(x, text, t, tracking_maps=track, return_dict=False)[0]
    assert torch.equal(ref, out)
    # a directly constructed model too (defined weights on every path)
    torch.manual_seed(3)
    direct = CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=1).eval()
    plain = CogVideoXTransformer3DModel(**TINY).eval()
    plain.load_state_dict({k: v for k, v in direct.state_dict().items() if not is_branch_key(k)})
    with torch.no_grad():
        assert torch.equal(plain(x, text, t).sample, direct(x, text, t, tracking_maps=track).sample)


def test_m2_branch_off_is_parent_even_after_training():
    base = base_model()
    model = CogVideoXTransformer3DModelTracking.from_base(base, num_tracking_blocks=2).eval()
    randomise_branch(model)
    x, text, track, t = inputs()
    with torch.no_grad():
        ref = base(x, text, t).sample
        assert torch.equal(ref, model(x, text, t).sample)
        assert torch.equal(ref, model(x, text, t, tracking_maps=track, tracking_scale=0.0).sample)
        on = model(x, text, t, tracking_maps=track).sample
        half = model(x, text, t, tracking_maps=track, tracking_scale=0.5).sample
    assert not torch.allclose(ref, on) and not torch.allclose(on, half)


def test_m3_copies_equal_main_blocks():
    for model in (CogVideoXTransformer3DModelTracking.from_base(base_model(), num_tracking_blocks=2),
                  CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=2)):
        for i, copy in enumerate(model.transformer_blocks_copy):
            main = model.transformer_blocks[i].state_dict()
            assert all(torch.equal(v, main[k]) for k, v in copy.state_dict().items())
            assert all(a.data_ptr() != b.data_ptr() for a, b in zip(copy.parameters(),
                                                                     model.transformer_blocks[i].parameters()))
        lins = [model.initial_combine_linear, *model.combine_linears]
        assert all(not p.any() for lin in lins for p in lin.parameters())


def test_m4_gradients_at_init_and_after_one_step():
    model = CogVideoXTransformer3DModelTracking.from_base(base_model(), num_tracking_blocks=2)
    x, text, track, t = inputs()

    def backward():
        model.zero_grad(set_to_none=True)
        model(x, text, t, tracking_maps=track).sample.square().mean().backward()

    backward()
    frozen = [p for n, p in model.named_parameters() if not is_branch_key(n)]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    grads = {n: p.grad for n, p in model.named_parameters() if is_branch_key(n)}
    assert all(grads[n].abs().sum() > 0 for n in grads if n.startswith("combine_linears.") and n.endswith("weight"))
    assert all(not grads[n].any() for n in grads if not n.startswith("combine_linears."))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    opt.step()
    backward()
    zero = [n for n, p in model.named_parameters() if p.requires_grad and not p.grad.any()]
    # LayerNorm-free parameters only: every branch tensor gets gradient after the first update
    assert zero == [], zero[:5]


def test_m5_parameter_count_formula_tiny():
    for n in (1, 2):
        model = CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=n)
        model.freeze_base()
        block = sum(p.numel() for p in model.transformer_blocks[0].parameters())
        D = TINY["num_attention_heads"] * TINY["attention_head_dim"]
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == n * block + (n + 1) * (D * D + D)
        assert sum(p.numel() for p in model.parameters()) - trainable == sum(
            p.numel() for p in base_model().parameters())


@pytest.fixture(scope="module")
def meta_5b():
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=True):
        model = CogVideoXTransformer3DModelTracking(**cogvideox_5b_i2v_config())
    model.freeze_base()
    return model


def test_m5_m6_5b_counts_and_keys_on_meta(meta_5b):
    trainable = sum(p.numel() for p in meta_5b.parameters() if p.requires_grad)
    total = sum(p.numel() for p in meta_5b.parameters())
    assert (trainable, total - trainable, total) == (2_558_922_240, 5_570_479_680, 8_129_401_920)
    state = meta_5b.state_dict()
    assert len(state) == 1495 and sum(map(is_branch_key, state)) == 470
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["patch_embed.pos_embedding"] == (1, 17776, 3072)
    assert shapes["patch_embed.proj.weight"] == (3072, 32, 2, 2)
    assert shapes["patch_embed.text_proj.weight"] == (3072, 4096)
    assert shapes["time_embedding.linear_1.weight"] == (512, 3072)
    assert shapes["norm_out.linear.weight"] == (6144, 512) and shapes["proj_out.weight"] == (64, 3072)
    for prefix, n in (("transformer_blocks.", 42), ("transformer_blocks_copy.", 18)):
        block_keys = [k for k in state if k.startswith(prefix) and k.split(".")[0] + "." == prefix]
        assert len(block_keys) == 24 * n
        assert shapes[f"{prefix}{n - 1}.norm1.linear.weight"] == (18432, 512)
        assert shapes[f"{prefix}{n - 1}.attn1.norm_q.weight"] == (64,)
        assert shapes[f"{prefix}{n - 1}.ff.net.0.proj.weight"] == (12288, 3072)
        assert shapes[f"{prefix}{n - 1}.ff.net.2.weight"] == (3072, 12288)
        assert shapes[f"{prefix}{n - 1}.attn1.to_out.0.weight"] == (3072, 3072)
    assert shapes["combine_linears.17.weight"] == shapes["initial_combine_linear.weight"] == (3072, 3072)
    assert "combine_linears.18.weight" not in shapes


def save_folder(model, path):
    model.save_pretrained(path, safe_serialization=True)
    return path


def test_m6_from_base_missing_keys_and_strict_loads(tmp_path):
    base = base_model()
    save_folder(base, tmp_path / "base")
    model = CogVideoXTransformer3DModelTracking.from_base(tmp_path / "base", num_tracking_blocks=2)
    with torch.no_grad():
        x, text, track, t = inputs()
        assert torch.equal(base(x, text, t).sample, model(x, text, t, tracking_maps=track).sample)
    # a base folder is never loaded as a DaS checkpoint, and a DaS folder is not a base
    with pytest.raises(CheckpointFormatError, match="from_base"):
        CogVideoXTransformer3DModelTracking.from_pretrained(tmp_path / "base")
    randomise_branch(model)
    save_folder(model, tmp_path / "das")
    with pytest.raises(CheckpointFormatError, match="already a DaS"):
        CogVideoXTransformer3DModelTracking.from_base(tmp_path / "das")
    # a synthetic DaS state dict (branch keys of the released layout) loads strictly
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "das" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    assert sum(map(is_branch_key, state)) == 2 * 24 + 2 * 2 + 2
    del state["combine_linears.1.bias"]
    save_file(state, str(weights))
    with pytest.raises(Exception, match="combine_linears.1.bias"):
        CogVideoXTransformer3DModelTracking.from_pretrained(tmp_path / "das")


def test_branch_state_dict_round_trip_and_refusals():
    model = CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=2)
    randomise_branch(model)
    branch = model.branch_state_dict()
    assert set(branch) == {k for k in model.state_dict() if is_branch_key(k)}
    other = CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=2)
    other.load_branch_state_dict(branch)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in branch.items())
    truncated = dict(list(branch.items())[:-3])
    with pytest.raises(CheckpointFormatError, match="3 missing"):
        other.load_branch_state_dict(truncated)
    wrong = dict(branch, **{"initial_combine_linear.bias": torch.zeros(3)})
    with pytest.raises(CheckpointFormatError, match="another shape"):
        other.load_branch_state_dict(wrong)
    with pytest.raises(ValueError, match="num_tracking_blocks"):
        CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=3)


def test_m7_save_load_round_trip_bitwise(tmp_path):
    model = CogVideoXTransformer3DModelTracking.from_base(base_model(), num_tracking_blocks=1)
    randomise_branch(model)
    save_folder(model, tmp_path / "das")
    config = json.loads((tmp_path / "das" / "config.json").read_text())
    assert config["_class_name"] == "CogVideoXTransformer3DModelTracking" and config["num_tracking_blocks"] == 1
    again = CogVideoXTransformer3DModelTracking.from_pretrained(tmp_path / "das")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_m8_shapes_and_sequence_length():
    model = CogVideoXTransformer3DModelTracking(**TINY, num_tracking_blocks=1).eval()
    seen = []
    model.transformer_blocks_copy[0].register_forward_hook(
        lambda m, args, kw, out: seen.append((kw["hidden_states"].shape, kw["encoder_hidden_states"].shape)),
        with_kwargs=True)
    x, text, track, t = inputs(frames=3)
    with torch.no_grad():
        out = model(x, text, t, tracking_maps=track).sample
    assert out.shape == (2, 3, 4, 8, 8)
    (video_seq, text_seq), = seen
    assert video_seq[1] + text_seq[1] == 7 + 3 * (8 // 2) * (8 // 2)
    with pytest.raises(ValueError, match="tracking_maps"):
        model(x, text, t, tracking_maps=track[:, :2])


def test_m9_determinism_and_gradient_checkpointing():
    model = CogVideoXTransformer3DModelTracking.from_base(base_model(), num_tracking_blocks=2)
    randomise_branch(model)
    model.train()
    x, text, track, t = inputs()

    def run():
        model.zero_grad(set_to_none=True)
        out = model(x, text, t, tracking_maps=track).sample
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    out1, g1 = run()
    out2, g2 = run()
    assert torch.equal(out1, out2) and all(torch.equal(g1[k], g2[k]) for k in g1)
    model.enable_gradient_checkpointing()
    out3, g3 = run()
    assert (out3 - out1).abs().max() <= 1e-6
    assert all((g3[k] - g1[k]).abs().max() <= 1e-6 for k in g1)
