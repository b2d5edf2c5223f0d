"""DaS pipeline checks P1-P5 on tiny components (tiny CogVideoX VAE, tiny T5, tiny transformer, all random), the
system's training batch conventions and the learning check of the shipped toy model (slow)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import AutoencoderKLCogVideoX, CogVideoXImageToVideoPipeline, CogVideoXTransformer3DModel  # noqa: E402

from models.das.pipeline import DaSImageToVideoPipeline, dpm_scheduler, guidance_weights  # noqa: E402
from models.nets.das_tracking_transformer import CogVideoXTransformer3DModelTracking  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE, FRAMES = 32, 9  # latents 3 x 4 x 4


def components():
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1,
                                 norm_num_groups=2, scaling_factor=0.7).eval()
    base = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=4,
                                       time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=4,
                                       sample_height=4, sample_frames=FRAMES, patch_size=2,
                                       temporal_compression_ratio=4, max_text_seq_length=7).eval()
    return vae, base


def make(das=True, branch_random=False):
    vae, base = components()
    if not das:
        return CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=base,
                                             scheduler=dpm_scheduler())
    model = CogVideoXTransformer3DModelTracking.from_base(base, num_tracking_blocks=1).eval()
    if branch_random:
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for m in model.branch_modules():
                for p in m.parameters():
                    p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return DaSImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=model,
                                   scheduler=dpm_scheduler())


def call_args(batch=1, seeds=(0,), **kw):
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(1, 7, 16, generator=g).expand(batch, -1, -1)
    neg = torch.randn(1, 7, 16, generator=g).expand(batch, -1, -1)
    track = torch.rand(FRAMES, SIZE, SIZE, 3, generator=g)
    image = torch.rand(batch, 3, SIZE, SIZE, generator=g)  # drawn last: image 0 is the same for every batch size
    track[0, 0, 0] = 0.0
    track[0, 0, 1] = 1.0
    args = dict(image=image, prompt_embeds=emb, negative_prompt_embeds=neg, height=SIZE, width=SIZE,
                num_frames=FRAMES, num_inference_steps=3, guidance_scale=3.0, output_type="np",
                generator=[torch.Generator().manual_seed(s) for s in seeds])
    args.update(kw)
    return args, track


def test_p1_zero_init_parity_with_diffusers_bitwise():
    args, track = call_args()
    plain = make(das=False)
    plain.set_progress_bar_config(disable=True)
    ref = plain(**args).frames
    args, track = call_args()
    out = make()(**args, tracking_video=track, progress=False)
    assert ref.shape == out.shape == (1, FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(ref, out)


class Recorder:
    def __init__(self, pipe):
        self.calls, self.inner = [], pipe.transformer.forward
        pipe.transformer.forward = self

    def __call__(self, *a, **kw):
        self.calls.append(kw)
        return self.inner(*a, **kw)


def test_p2_cfg_bookkeeping():
    for guidance, n in ((1.0, 1), (3.0, 2)):
        pipe = make(branch_random=True)
        rec = Recorder(pipe)
        args, track = call_args(batch=2, seeds=(0, 1), guidance_scale=guidance)
        pipe(**args, tracking_video=track, progress=False)
        for kw in rec.calls:
            assert kw["hidden_states"].shape[0] == 2 * n and kw["tracking_maps"].shape[0] == 2 * n
            if n == 2:  # the tracking signal is identical in the unconditional and conditional halves
                u, c = kw["tracking_maps"].chunk(2)
                assert torch.equal(u, c)
    pipe = make(branch_random=True)
    rec = Recorder(pipe)
    args, track = call_args(tracking_guidance=2.0)
    pipe(**args, tracking_video=track, progress=False)
    assert [kw["tracking_maps"] is None for kw in rec.calls] == [False, True] * 3


COMPAT_50 = [2.29, 2.54, 6.97, 6.42, 2.79, 4.27, 1.04, 4.17, 1.62, 6.98, 1.00, 2.87, 6.98, 1.63, 4.33, 2.44, 6.38,
             6.01, 3.45, 3.20, 1.65, 6.61, 1.19, 4.30, 6.99, 1.52, 1.76, 1.06, 4.13, 1.48, 2.00, 5.95, 4.14, 6.53,
             6.14, 7.00, 6.17, 1.12, 2.10, 6.69, 7.00, 2.34, 6.21, 1.25, 7.00, 6.86, 1.06, 1.00, 1.00, 1.12]


def test_p3_dynamic_cfg_compat_and_ramp():
    sched = dpm_scheduler()
    sched.set_timesteps(50)
    ts = sched.timesteps.tolist()
    assert ts[:2] == [999, 979] and ts[-1] == 19
    w = guidance_weights(6.0, ts, "compat")
    assert np.abs(np.array(w) - COMPAT_50).max() <= 0.005 + 1e-9
    # the expression of diffusers' CogVideoX pipelines, evaluated independently
    ref = [1 + 6.0 * ((1 - math.cos(math.pi * ((50 - t) / 50) ** 5.0)) / 2) for t in ts]
    assert np.abs(np.array(w) - ref).max() <= 1e-9
    ramp = guidance_weights(6.0, ts, "ramp")
    assert ramp[0] == 1.0 and abs(ramp[-1] - 7.0) < 1e-12 and all(b >= a for a, b in zip(ramp, ramp[1:]))
    assert guidance_weights(6.0, ts, "off") == [6.0] * 50
    with pytest.raises(ValueError):
        guidance_weights(6.0, ts, "dynamic")


def test_p4_tracking_range_reaching_the_vae():
    for mode, lo in (("pm1", -1.0), ("01_compat", 0.0)):
        pipe = make()
        seen, inner = [], pipe.vae.encode
        pipe.vae.encode = lambda x, *a, **k: (seen.append(x.clone()), inner(x, *a, **k))[1]
        args, track = call_args(num_inference_steps=1)
        pipe(**args, tracking_video=track, tracking_range=mode, progress=False)
        full = [x for x in seen if x.shape[2] == FRAMES]  # the tracking video (the images are single frames)
        assert len(full) == 1 and full[0].min() == lo and full[0].max() == 1.0
        assert all(x.min() >= -1 for x in seen)


@pytest.mark.parametrize("steps", [3, 7])
def test_p5_steps_honoured(steps):
    for guidance in (1.0, 4.0):
        pipe = make()
        rec = Recorder(pipe)
        args, track = call_args(num_inference_steps=steps, guidance_scale=guidance)
        pipe(**args, tracking_video=track, progress=False)
        assert len(rec.calls) == steps
        assert rec.calls[0]["hidden_states"].shape[0] == (2 if guidance > 1 else 1)


def test_seeded_tracking_encoding_and_per_sample_seeds():
    pipe = make(branch_random=True)
    args, track = call_args(num_inference_steps=2, output_type="latent")
    a = pipe(**args, tracking_video=track, progress=False)
    args, _ = call_args(num_inference_steps=2, output_type="latent")
    b = pipe(**args, tracking_video=track, progress=False)
    assert torch.equal(a, b)
    args, _ = call_args(num_inference_steps=2, output_type="latent")
    mode = pipe(**args, tracking_video=track, tracking_encode="mode", progress=False)
    assert not torch.equal(a, mode)
    args, _ = call_args(batch=2, seeds=(0, 5), num_inference_steps=2, output_type="latent")
    both = pipe(**args, tracking_video=track, progress=False)  # element 0 has the same image as above
    # seed 0's sample does not depend on its batch neighbours
    assert (both[0] - a[0]).abs().max() < 1e-5 and (both[1] - a[0]).abs().max() > 1e-3


def test_bad_tracking_video_is_refused():
    pipe = make()
    args, track = call_args(num_inference_steps=1)
    with pytest.raises(ValueError, match="tracking video is"):
        pipe(**args, tracking_video=track[:5], progress=False)
    args, track = call_args(num_inference_steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipe(**args, tracking_video=track * 2, progress=False)


# ------------------------------------------------------------------------------------------------ system
def tiny_system(**overrides):
    from models.core.config import load_config
    from models.core.registry import get_system

    cfg = load_config(ROOT / "configs/das/tiny.json", [f"{k}={v}" for k, v in overrides.items()])
    return get_system("das")(cfg)


def test_system_trains_branch_only_and_exports_it():
    system = tiny_system()
    names = set(system.trainable())
    assert names and all(n.startswith(("transformer_blocks_copy.", "combine_linears.", "initial_combine_linear."))
                         for n in names)
    assert set(system.export_state_dict()) == set(system.net.branch_state_dict())
    batch = {k: torch.stack([v[k] for v in (system.train_dataset()[(i, i)] for i in range(2))])
             for k in ("video", "tracking")}
    batch.update(prompt=["a", "b"], seed=torch.tensor([1, 2]))
    loss1, _ = system(batch)
    loss2, _ = system(batch)
    assert torch.isfinite(loss1) and torch.equal(loss1, loss2)  # randomness comes from the per-sample seeds
    loss1.backward()
    assert all(p.grad is None for n, p in system.net.named_parameters() if n not in names)


def test_flip_mirrors_tracking_colours():
    from models.das.training import flip_tracking

    track = np.zeros((2, 4, 6, 3), np.float32)
    track[:, 1, 1] = (0.2, 0.5, 0.7)
    out = flip_tracking(track)
    assert np.allclose(out[:, 1, 4], (0.8, 0.5, 0.7)) and out[:, 1, 1].max() == 0 and out.sum() == pytest.approx(4.0)


@pytest.mark.slow
def test_learning_check_of_the_shipped_toy_model():
    from models import load_system
    from models.das.training import learning_check

    path = ROOT / "ckpts" / "das_toy.safetensors"
    if not path.is_file():
        pytest.skip("ckpts/das_toy.safetensors not trained")
    result = learning_check(load_system(path), clips=64)
    assert result["ground_truth"]["r"] >= 0.99 and result["ground_truth"]["epe_ratio"] <= 0.05
    assert result["enabled"]["r"] >= 0.8 and result["enabled"]["epe_ratio"] <= 0.35
    assert abs(result["disabled"]["r"]) <= 0.3 and result["disabled"]["epe_ratio"] >= 0.7


# ------------------------------------------------------------------------------------------------ CLI and data
def fake_das_folder(root: Path, das: bool = True) -> Path:
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        (root / name).mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "CogVideoXTransformer3DModelTracking" if das else "CogVideoXTransformer3DModel"}
    if das:
        config["num_tracking_blocks"] = 18
    (root / "transformer" / "config.json").write_text(json.dumps(config))
    return root


@pytest.mark.slow  # four subprocesses, about 20 s on a busy 2-core CPU
def test_generate_cli_bad_inputs(tmp_path):
    from data.io import write_png
    from tests.cli_corpus import assert_user_error

    out = tmp_path / "evals"
    out.mkdir()
    write_png(tmp_path / "img.png", np.zeros((48, 72, 3), np.uint8))
    np.savez(tmp_path / "short.npz", video=np.zeros((5, 48, 72, 3), np.uint8))
    common = ["--image", str(tmp_path / "img.png"), "--prompt", "p", "--out-dir", str(out)]
    script = "scripts/das_generate.py"
    assert_user_error(script, ["transfer", "--model", str(tmp_path / "none"), "--tracking", "t.mp4", *common],
                      watch=tmp_path, mentions="--model")
    base = fake_das_folder(tmp_path / "base", das=False)
    assert_user_error(script, ["transfer", "--model", str(base), "--tracking", "t.mp4", *common], watch=tmp_path,
                      mentions="from_base")
    das = fake_das_folder(tmp_path / "das")
    assert_user_error(script, ["mesh", "--model", str(das), "--tracking", str(tmp_path / "short.npz"), *common],
                      watch=tmp_path, mentions="49x480x720")
    assert_user_error(script, ["transfer", "--model", str(das), "--tracking", "t.mp4", "--image", "x.png",
                               "--out-dir", str(out)], watch=tmp_path, mentions="--prompt")


def write_dataset(root: Path, lengths=(6, 3)) -> Path:
    from models.das.video import write_mp4

    (root / "videos").mkdir(parents=True)
    (root / "tracking").mkdir()
    for i, n in enumerate(lengths):
        clip = toy_clip_u8(i, n)
        write_mp4(root / "videos" / f"{i:05d}.mp4", clip["video"])
        write_mp4(root / "tracking" / f"{i:05d}_tracking.mp4", clip["tracking"])
    (root / "prompt.txt").write_text("".join(f"clip {i}\n" for i in range(len(lengths))))
    (root / "videos.txt").write_text("".join(f"videos/{i:05d}.mp4\n" for i in range(len(lengths))))
    (root / "trackings.txt").write_text("".join(f"tracking/{i:05d}_tracking.mp4\n\n" for i in range(len(lengths))))
    return root


def toy_clip_u8(seed, frames):
    from models.das.training import toy_clip

    c = toy_clip(seed, 16, frames)
    return {k: (c[k] * 255).round().astype(np.uint8) for k in ("video", "tracking")}


def test_folder_dataset_layout_short_clips_and_errors(tmp_path):
    from models.core.cli import UserError
    from models.das.training import FolderDataset

    root = write_dataset(tmp_path / "data")
    with pytest.warns(UserWarning, match="skipped 1 clip"):
        ds = FolderDataset(root, frames=4, height=8, width=12)
    assert len(ds) == 1
    a, b = ds[(0, 7)], ds[(0, 7)]
    assert a["video"].shape == (4, 8, 12, 3) and a["tracking"].shape == (4, 8, 12, 3)
    assert torch.equal(a["video"], b["video"]) and a["prompt"] == "clip 0"
    assert a["video"].min() >= -1 and a["video"].max() <= 1
    (root / "prompt.txt").unlink()
    with pytest.raises(UserError, match="prompt.txt"):
        FolderDataset(root, frames=4, height=8, width=12)


def test_cached_latent_mode(tmp_path):
    from models.das.training import ToySquares, encode_cache

    system = tiny_system()
    files = encode_cache(system, ToySquares(3, 8, 3), tmp_path / "cache")
    assert len(files) == 3
    cached = tiny_system(**{"data.kind": "cached"}).train_dataset(root=tmp_path / "cache")
    batch = torch.utils.data.default_collate([cached[(i, 0)] for i in range(2)])
    batch["seed"] = torch.tensor([1, 2])
    loss, _ = system(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.any() for p in system.trainable().values())


def test_bf16_frozen_base_keeps_fp32_branch_masters():
    from models.core.cli import UserError

    system = tiny_system(frozen_dtype="bfloat16")
    assert {p.dtype for p in system.trainable().values()} == {torch.float32}
    assert {p.dtype for n, p in system.net.named_parameters() if not p.requires_grad} == {torch.bfloat16}
    ds = system.train_dataset()
    batch = {k: torch.stack([ds[(i, i)][k] for i in range(2)]) for k in ("video", "tracking")}
    batch.update(prompt=["a", "b"], seed=torch.tensor([1, 2]))
    with pytest.raises(UserError, match="--precision bf16"):
        system(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = system(batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in system.trainable().values())


def test_system_on_a_base_folder_trains_exports_and_reloads(tmp_path):
    """The real-weights path on tiny random components: from_base on a diffusers folder (transformer/, vae/,
    scheduler/), one training step, a branch-only export naming the base, load_system = base + branch."""
    from models import load_system
    from models.core.checkpoint import export_checkpoint
    from models.core.config import to_dict

    vae, _ = components()
    torch.manual_seed(0)
    base = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=8, out_channels=4,
                                       time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=2,
                                       sample_height=2, sample_frames=5, patch_size=2, temporal_compression_ratio=4,
                                       max_text_seq_length=8)
    folder = tmp_path / "cogvideox"
    base.save_pretrained(folder / "transformer")
    vae.save_pretrained(folder / "vae")
    dpm_scheduler().save_config(folder / "scheduler")
    net = {"in_channels": 8, "out_channels": 4, "sample_width": 2, "sample_height": 2, "sample_frames": 5,
           "temporal_compression_ratio": 4}
    system = tiny_system(base=str(folder), vae="base", **{f"net.{k}": v for k, v in net.items()},
                         **{"data.frames": 5, "data.height": 16, "data.width": 16})
    ds = system.train_dataset()
    batch = {k: torch.stack([ds[(i, i)][k] for i in range(2)]) for k in ("video", "tracking")}
    batch.update(prompt=["a", "b"], seed=torch.tensor([1, 2]))
    loss, _ = system(batch)
    loss.backward()
    torch.optim.SGD(list(system.trainable().values()), lr=0.5).step()
    state = system.export_state_dict()
    assert set(state) == set(system.net.branch_state_dict())
    path = export_checkpoint(tmp_path / "das.safetensors", system="das", config=to_dict(system.cfg),
                             state_dict=state, extra=system.export_metadata())
    again = load_system(path)
    ref = {k: v for k, v in system.net.state_dict().items()}
    assert all(torch.equal(ref[k], v) for k, v in again.net.state_dict().items())
    inputs = system.example_inputs()
    a = system.infer(inputs, [0], steps=2)["video"]
    b = again.infer(inputs, [0], steps=2)["video"]
    assert a.shape[0] == 1 and a.shape[2:] == (16, 16, 3) and np.array_equal(a, b)
    (folder / "transformer" / "config.json").write_text(json.dumps({**json.loads(
        (folder / "transformer" / "config.json").read_text()), "num_layers": 1}))
    from models.core.cli import UserError

    with pytest.raises(UserError):
        tiny_system(base=str(folder), vae="base", **{f"net.{k}": v for k, v in net.items()})
