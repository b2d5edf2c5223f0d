"""Name -> System class registry. Every module of the models.systems package is imported on first lookup, so a new
system registers itself by existing (no list to edit, and models.core imports no system)."""
from __future__ import annotations

import importlib
import pkgutil

_SYSTEMS: dict[str, type] = {}


def register_system(name: str):
    """Class decorator: make a System constructible by its config's `system` name."""

    def wrap(cls):
        if name in _SYSTEMS and _SYSTEMS[name] is not cls:
            raise ValueError(f"system '{name}' registered twice")
        cls.name = name
        _SYSTEMS[name] = cls
        return cls

    return wrap


def _discover() -> None:
    import models.systems as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def get_system(name: str) -> type:
    if name not in _SYSTEMS:
        _discover()
    if name not in _SYSTEMS:
        raise KeyError(f"unknown system '{name}'; known: {', '.join(sorted(_SYSTEMS)) or 'none'}")
    return _SYSTEMS[name]
