"""The PointNet feature network: shapes, export round trip, refusal of foreign files, and (when the shipped
checkpoint is present) that it classifies the fixture shapes."""
from pathlib import Path

import numpy as np
import pytest
import torch

from models.core.checkpoint import CheckpointError, export_checkpoint
from models.omages import format as fmt
from models.omages import pointnet as pn
from models.omages.decode import decode
from models.omages.metrics import sample_surface
from models.omages.procedural import FAMILIES

CKPT = Path("ckpts/omages_pointnet.safetensors")


def test_shapes_and_feature_is_pre_relu():
    model = pn.PointNet(pn.PointNetConfig(num_classes=5)).eval()
    x = pn.normalize_clouds(torch.randn(3, 256, 3))
    assert torch.allclose(x.norm(dim=-1).amax(dim=1), torch.ones(3)) and x.mean(dim=1).abs().max() < 1e-6
    f = model.features(x)
    assert f.shape == (3, 256) and (f < 0).any()                     # taken after BN, before the ReLU
    assert model(x).shape == (3, 5)


def test_export_round_trip(tmp_path):
    model = pn.PointNet(pn.PointNetConfig(num_classes=3)).eval()
    pn.save(model, tmp_path / "p.safetensors", step=1, extra={})
    back = pn.load(tmp_path / "p.safetensors")
    x = pn.normalize_clouds(torch.randn(2, 128, 3))
    assert torch.equal(model(x), back(x))
    export_checkpoint(tmp_path / "other.safetensors", system="sfs", config={}, state_dict={"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="omages PointNet"):
        pn.load(tmp_path / "other.safetensors")


@pytest.mark.skipif(not CKPT.is_file(), reason="no trained checkpoint")
def test_shipped_checkpoint_classifies_fixtures():
    model = pn.load(CKPT)
    clouds, labels = [], []
    for fam in ("chair", "lamp", "vase", "shelf"):
        mesh = decode(fmt.load_omage(f"test_data/omages/{fam}_0.npz"))
        clouds.append(sample_surface(mesh.vertices, mesh.faces, 2048, seed=1)[0])
        labels.append(FAMILIES.index(fam))
    _, logits = pn.extract(model, np.stack(clouds).astype(np.float32))
    assert (logits.argmax(1) == np.array(labels)).sum() >= 3
