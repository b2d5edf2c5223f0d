"""scripts/convert_legacy_ckpt.py: the original SfS and DiffMotion checkpoints become our self-describing exports."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from models import build_system, load_system
from models.core.checkpoint import read_metadata
from models.core.config import load_config
from models.nets.sfs_patch_unet import PatchUNet
from models.sfs.legacy import our_key
from tests.cli_corpus import assert_user_error, snapshot

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/convert_legacy_ckpt.py"
KEYS = Path(__file__).with_name("mssfs_original_keys.txt")


def _script():
    spec = importlib.util.spec_from_file_location("convert_legacy_ckpt", ROOT / SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def original_sfs_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the original UNet's 293 names and shapes, random values."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for line in KEYS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split(" ", 1)
            out[name] = torch.randn(eval(shape), generator=gen) * 0.1  # noqa: S307 (our own file of tuples)
    return out


def run_main(argv, capsys):
    rc = _script().main([str(a) for a in argv])
    return rc, capsys.readouterr()


def assert_refused(argv, capsys, watch: Path, mentions: str):
    before = snapshot(watch)
    rc, cap = run_main(argv, capsys)
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and mentions in lines[0], cap.err
    assert "Traceback" not in cap.err and snapshot(watch) == before


def test_spec_key_list_is_the_original_unet():
    state = original_sfs_state()
    assert len(state) == 293 and sum(v.numel() for v in state.values()) == 2_573_075


def test_key_map_renames_by_hand():
    """A few renames written out independently of the map's rules (one per rule)."""
    expected = {
        "time_mlp.1.weight": "time_mlp.0.weight",
        "time_mlp.3.bias": "time_mlp.2.bias",
        "downs.1.0.mlp.1.weight": "downs.1.0.time_mlp.1.weight",
        "ups.2.1.res_conv.bias": "ups.2.1.skip.bias",
        "downs.0.2.fn.fn.to_out.1.weight": "downs.0.2.fn.to_out.1.weight",
        "ups.3.2.fn.norm.bias": "ups.3.2.norm.bias",
        "mid_attn.fn.fn.to_qkv.weight": "mid_attn.fn.to_qkv.weight",
        "downs.0.3.1.weight": "downs.0.3.conv.weight",
        "ups.1.3.1.bias": "ups.1.3.conv.bias",
        "downs.3.3.weight": "downs.3.3.weight",
        "final_conv.bias": "final_conv.bias",
    }
    assert {k: our_key(k) for k in expected} == expected


def test_sfs_convert_gives_the_same_unet_output(tmp_path, capsys):
    original = original_sfs_state()
    src = tmp_path / "patch_unet_aug_default.ckpt"
    torch.save(original, src)
    out = tmp_path / "sfs_original.safetensors"
    rc, cap = run_main([src, "--out", out], capsys)  # --system auto
    assert rc == 0, cap.err
    meta = read_metadata(out)
    assert meta["system"] == "sfs" and meta["source"] == src.name and meta["step"] == "0"
    system = load_system(out, expect="sfs")

    direct = PatchUNet().eval()  # the paper's default net, loaded straight from the original tensors
    direct.load_state_dict({our_key(k): v for k, v in original.items()}, strict=True)
    gen = torch.Generator().manual_seed(1)
    x, cond = torch.randn(3, 3, 16, 16, generator=gen), torch.rand(3, 1, 16, 16, generator=gen)
    t = torch.tensor([0, 150, 299])
    with torch.no_grad():
        want = direct(x, t, cond)
        got = system.net(x, t, cond)
    assert torch.equal(got, want) and want.abs().mean() > 1e-3
    for name, value in original.items():  # and every tensor arrived unchanged
        assert torch.equal(system.net.state_dict()[our_key(name)], value)


class _Planted:
    """Unpickling this would create a file: proof that the converter never unpickles objects."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_refused(tmp_path):
    state = original_sfs_state()
    marker = tmp_path / "unpickled.txt"
    state["extra"] = _Planted(marker)
    torch.save(state, tmp_path / "evil.ckpt")
    assert_user_error(SCRIPT, [tmp_path / "evil.ckpt", "--out", tmp_path / "x.safetensors"], watch=tmp_path,
                      mentions="weights_only")
    assert not marker.exists()


def test_missing_key_and_wrong_shape_are_one_line(tmp_path, capsys):
    state = original_sfs_state()
    del state["ups.1.0.res_conv.weight"]
    torch.save(state, tmp_path / "missing.ckpt")
    assert_refused([tmp_path / "missing.ckpt", "--system", "sfs", "--out", tmp_path / "x.safetensors"], capsys,
                   tmp_path, "1 missing (e.g. ['ups.1.0.res_conv.weight'])")
    state = original_sfs_state()
    state["mid_block1.block1.proj.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(state, tmp_path / "shape.ckpt")
    assert_refused([tmp_path / "shape.ckpt", "--out", tmp_path / "x.safetensors"], capsys, tmp_path,
                   "mid_block1.block1.proj.weight: shape (128, 128, 1, 1) in the checkpoint, (128, 128, 3, 3)")


def test_other_bad_inputs(tmp_path, capsys):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "unknown.ckpt")
    assert_refused([tmp_path / "unknown.ckpt", "--out", tmp_path / "x.safetensors"], capsys, tmp_path,
                   "cannot tell which system")
    assert_refused([tmp_path / "absent.ckpt", "--out", tmp_path / "x.safetensors"], capsys, tmp_path, "not found")
    torch.save(original_sfs_state(), tmp_path / "ok.ckpt")
    assert_refused([tmp_path / "ok.ckpt", "--out", tmp_path / "x.pt"], capsys, tmp_path, ".safetensors")
    assert_refused([tmp_path / "ok.ckpt", "--system", "diffmotion", "--out", tmp_path / "x.safetensors"], capsys,
                   tmp_path, "this is a 'sfs' checkpoint, not 'diffmotion'")
    (tmp_path / "taken.safetensors").write_bytes(b"keep")
    assert_refused([tmp_path / "ok.ckpt", "--out", tmp_path / "taken.safetensors"], capsys, tmp_path, "--overwrite")
    assert (tmp_path / "taken.safetensors").read_bytes() == b"keep"


def test_diffmotion_still_converts_with_auto_detection(tmp_path, capsys):
    tiny = ROOT / "configs" / "diffmotion" / "tiny.json"
    torch.manual_seed(0)
    system = build_system(load_config(tiny))
    with torch.no_grad():
        for p in system.net.parameters():
            p.normal_(0, 0.02)
    ours = system.net.state_dict()
    torch.save({"epoch": 7, "model_state_dict": {f"module.{k}": v for k, v in ours.items()}},
               tmp_path / "u_vit3d_mixer_e7.ckpt")
    out = tmp_path / "dm.safetensors"
    rc, cap = run_main([tmp_path / "u_vit3d_mixer_e7.ckpt", "--config", tiny, "--out", out], capsys)
    assert rc == 0, cap.err
    loaded = load_system(out, expect="diffmotion")
    assert loaded.step == 7
    got = loaded.net.state_dict()
    assert got.keys() == ours.keys() and all(torch.equal(got[k], ours[k]) for k in ours)


def test_source_digest_recorded(tmp_path, capsys):
    import hashlib

    torch.save(original_sfs_state(2), tmp_path / "a.ckpt")
    rc, cap = run_main([tmp_path / "a.ckpt", "--out", tmp_path / "a.safetensors", "--step", "5"], capsys)
    assert rc == 0, cap.err
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta["source_sha256"] == hashlib.sha256((tmp_path / "a.ckpt").read_bytes()).hexdigest()
    assert meta["step"] == "5" and meta["ema"].startswith("none")
