"""A small vanilla PointNet (Qi et al. 2017, Fig. 2 without the T-Nets: the data are axis-aligned) whose 256-d
penultimate features give a weight-free substitute for the paper's p-FID (P-FID-proc), trained here on the procedural
train split."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

SYSTEM = "omages_pointnet"


@dataclass
class PointNetConfig:
    num_classes: int = 8
    points: int = 2048
    dropout: float = 0.3


class PointNet(nn.Module):
    """Shared MLP 3-64-128-1024 (BN + ReLU), global max-pool, FC 1024-512 (BN, ReLU), FC 512-256 (BN) = the
    feature, then ReLU, dropout and the class logits."""

    def __init__(self, cfg: PointNetConfig = PointNetConfig()):
        super().__init__()
        self.cfg = cfg

        def pw(i, o):
            return nn.Sequential(nn.Conv1d(i, o, 1, bias=False), nn.BatchNorm1d(o), nn.ReLU(inplace=True))

        self.point_mlp = nn.Sequential(pw(3, 64), pw(64, 128), pw(128, 1024))
        self.fc1 = nn.Sequential(nn.Linear(1024, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Linear(512, 256, bias=False), nn.BatchNorm1d(256))
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(cfg.dropout), nn.Linear(256, cfg.num_classes))

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """[B, N, 3] normalised clouds -> [B, 256] features (after BN, before the ReLU)."""
        x = self.point_mlp(points.transpose(1, 2)).amax(dim=2)
        return self.fc2(self.fc1(x))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(points))


def normalize_clouds(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Zero centroid, unit max radius per cloud (Point-E's evaluator convention)."""
    p = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    p = p - p.mean(dim=-2, keepdim=True)
    return p / p.norm(dim=-1).amax(dim=-1).clamp_min(1e-12)[..., None, None]


@torch.no_grad()
def extract(model: PointNet, clouds: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, 256], logits [N, K]) of normalised clouds, in eval mode."""
    model.eval()
    feats, logits = [], []
    for s in range(0, len(clouds), batch):
        x = normalize_clouds(clouds[s:s + batch])
        f = model.features(x)
        feats.append(f.numpy())
        logits.append(model.head(f).numpy())
    return np.concatenate(feats).astype(np.float64), np.concatenate(logits)


def save(model: PointNet, path, *, step: int, extra: dict) -> None:
    from models.core.checkpoint import export_checkpoint

    export_checkpoint(path, system=SYSTEM, config=asdict(model.cfg), state_dict=model.state_dict(), step=step,
                      extra=extra)


def load(path) -> PointNet:
    """Rebuild the frozen feature network from its safetensors export (strict keys)."""
    import json

    from models.core.checkpoint import CheckpointError, read_checkpoint

    meta, state = read_checkpoint(path)
    if meta.get("system") != SYSTEM:
        raise CheckpointError(f"{path}: a '{meta.get('system')}' checkpoint, not the omages PointNet")
    model = PointNet(PointNetConfig(**json.loads(meta["config"])))
    model.load_state_dict(state, strict=True)
    return model.eval()
