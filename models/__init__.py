"""Shared model package: `build_system(cfg)` and `load_system(path)` are the two entry points."""
from __future__ import annotations

from models.core.checkpoint import CheckpointError, load_system
from models.core.registry import get_system


def build_system(cfg):
    """Instantiate the System named by `cfg.system` with freshly initialised weights."""
    return get_system(cfg.system)(cfg)


__all__ = ["build_system", "load_system", "CheckpointError"]
