"""Self-describing safetensors export: round trip, strictness, clear errors on foreign or broken files."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import build_system, load_system
from models.core.checkpoint import CheckpointError, export_checkpoint, load_foreign, read_metadata
from models.core.config import load_config, to_dict


@pytest.fixture
def toy_export(tmp_path):
    cfg = load_config("configs/toy/tiny.json")
    system = build_system(cfg)
    path = export_checkpoint(tmp_path / "toy.safetensors", system="toy", config=to_dict(cfg),
                             state_dict=system.net.state_dict(), step=7)
    return system, path


def test_export_load_identical_outputs(toy_export):
    system, path = toy_export
    loaded = load_system(path, expect="toy")
    x, c = torch.randn(5, 2), torch.randn(5)
    assert torch.equal(system.net(x, c), loaded.net(x, c))
    assert loaded.step == 7 and loaded.cfg == system.cfg
    meta = read_metadata(path)
    assert meta["format"] == "gp3d/1" and meta["system"] == "toy" and '"hidden": 32' in meta["config"]


def test_wrong_system_and_strict_keys(toy_export, tmp_path):
    system, path = toy_export
    with pytest.raises(CheckpointError, match="'toy' checkpoint, but a 'sfs' one"):
        load_system(path, expect="sfs")
    state = system.net.state_dict()
    state.pop(next(iter(state)))
    bad = export_checkpoint(tmp_path / "missing_key.safetensors", system="toy", config=to_dict(system.cfg),
                            state_dict=state)
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_system(bad)


def test_truncated_and_foreign_files(toy_export, tmp_path):
    _, path = toy_export
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_system(cut)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a gp3d/1 checkpoint"):
        load_system(plain)
    with pytest.raises(CheckpointError, match="expected a .safetensors"):
        load_system(tmp_path / "x.ckpt") if (tmp_path / "x.ckpt").write_bytes(b"x") else None
    with pytest.raises(CheckpointError, match="not found"):
        load_system(tmp_path / "nope.safetensors")


def test_load_foreign_refuses_pickled_objects(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"model_state_dict": {"w": torch.ones(1)}, "epoch": 3}, good)
    assert load_foreign(good)["epoch"] == 3

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_foreign(evil)


def test_shipped_checkpoints_match_sha256sums():
    import hashlib

    ckpts = Path(__file__).resolve().parents[1] / "ckpts"
    listed = dict(reversed(line.split()) for line in (ckpts / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert sorted(listed) == sorted(p.name for p in ckpts.glob("*.safetensors"))
    for name, digest in listed.items():
        assert hashlib.sha256((ckpts / name).read_bytes()).hexdigest() == digest, name
