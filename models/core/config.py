"""Typed dataclass configs, JSON presets and `--set key=value` overrides.

What is trained lives in the config; how it runs (devices, batch per GPU, paths) lives in CLI flags.
Unknown keys are errors everywhere, like nanoGPT's configurator.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from models.core.cli import UserError


class ConfigError(UserError, ValueError):
    """A config file or override that does not match the dataclass schema."""


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warm-up from 0, in optimizer steps
    schedule: str = "constant"  # "constant" | "cosine" (decays to 0 at train.steps)
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    ema_decay: float = 0.999  # EMA of the exported weights; 0 = export the raw weights

    def __post_init__(self):
        if not self.lr >= 0 or not self.eps > 0 or not self.weight_decay >= 0 or self.warmup_steps < 0:
            raise ConfigError(f"optim: need lr >= 0, eps > 0, weight_decay >= 0, warmup_steps >= 0 (got {self})")
        if not 0 <= self.ema_decay < 1 or not self.grad_clip >= 0:
            raise ConfigError(f"optim: need 0 <= ema_decay < 1 and grad_clip >= 0 (got {self.ema_decay}, "
                              f"{self.grad_clip})")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule must be 'constant' or 'cosine', got {self.schedule!r}")


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    batch_size: int = 8  # GLOBAL samples per optimizer step (split over processes and accumulation)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"train.steps and train.batch_size must be >= 1 (got {self.steps}, {self.batch_size})")


def _coerce(tp, value, where: str):
    """Check/convert a JSON value into the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else typing.Any
            items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if tp is typing.Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    """Dataclass -> plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def to_json(cfg) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def parse_override(text: str) -> tuple[list[str], object]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 1e-4); the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"bad override '{text}': use key.sub=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set nested keys of a config dict from `key.sub=value` strings (validated later by from_dict)."""
    data = json.loads(json.dumps(data))
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"bad override '{text}': '{part}' is not a section")
        node[path[-1]] = value
    return data


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or "system" not in data:
        raise ConfigError(f"{path}: a config must be a JSON object with a 'system' key")
    return data


def load_config(path: str | Path, overrides: list[str] | None = None):
    """Read a JSON preset, apply overrides, and build the owning system's typed config."""
    from models.core.registry import get_system

    data = apply_overrides(read_json(path), overrides or [])
    try:
        cls = get_system(data["system"]).Config
    except KeyError as err:
        raise ConfigError(f"{path}: {err.args[0]}") from None
    return from_dict(cls, data, where=Path(path).name)


__all__ = [
    "ConfigError", "OptimConfig", "TrainConfig", "from_dict", "to_dict", "to_json", "apply_overrides", "load_config",
    "read_json", "field",
]
