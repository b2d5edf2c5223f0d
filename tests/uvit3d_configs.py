"""UViT3D configurations for the tests, read from their one source: the `net` section of configs/diffmotion/*.json."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.core.config import load_config
from models.nets.uvit3d import UViT3DConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "diffmotion"
PRESETS: dict[str, UViT3DConfig] = {p.stem: load_config(p).net for p in sorted(CONFIGS.glob("*.json"))}


def uvit3d_preset(name: str, **overrides) -> UViT3DConfig:
    """The `net` of configs/diffmotion/<name>.json, optionally with fields replaced."""
    return replace(PRESETS[name], **overrides)
