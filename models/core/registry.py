"""Name -> System class registry. Systems register themselves on import of models.systems."""
from __future__ import annotations

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


def get_system(name: str) -> type:
    import models.systems  # noqa: F401  (imports every system module, filling the registry)

    if name not in _SYSTEMS:
        raise KeyError(f"unknown system '{name}'; known: {', '.join(sorted(_SYSTEMS)) or 'none'}")
    return _SYSTEMS[name]


def known_systems() -> list[str]:
    import models.systems  # noqa: F401

    return sorted(_SYSTEMS)
