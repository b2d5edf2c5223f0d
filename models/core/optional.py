"""Lazy imports of heavy optional dependencies with one readable error (never imported at module top)."""
from __future__ import annotations

import importlib
from types import ModuleType

# module name -> pyproject extra that installs it
EXTRAS = {
    "natten": "natten",
    "mitsuba": "render",
    "diffusers": "das",
    "transformers": "das",
    "pycolmap": "sfd",
    "xatlas": "sfd",
    "trimesh": "sfd",
    "wandb": "wandb",
    "sklearn": "analysis",
    "cv2": "analysis",
    "matplotlib": "analysis",
}


def is_available(module: str) -> bool:
    """True when `module` imports without error."""
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def require(module: str, feature: str = "", extra: str | None = None) -> ModuleType:
    """Import `module` or raise ImportError naming the feature and the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = extra or EXTRAS.get(module.split(".")[0], "all")
        what = f"{feature} needs" if feature else "this needs"
        raise ImportError(f"{what} the optional package '{module}': pip install -e '.[{extra}]' ({err})") from err
