"""Typed configs: strict keys, type checks, overrides (STYLE.md §3.2)."""
import json

import pytest

from models.core.config import ConfigError, OptimConfig, apply_overrides, from_dict, load_config, to_dict
from models.core.seeding import parse_seeds
from models.systems.toy import ToyConfig


def test_from_dict_nested_and_tuples():
    cfg = from_dict(ToyConfig, {"net": {"hidden": 8}, "optim": {"betas": [0.9, 0.95]}})
    assert cfg.net.hidden == 8 and cfg.optim.betas == (0.9, 0.95) and cfg.net.depth == 3


@pytest.mark.parametrize("data, needle", [
    ({"nett": {}}, "unknown key(s) nett"),
    ({"net": {"hiden": 3}}, "config.net: unknown key(s) hiden"),
    ({"optim": {"lr": "fast"}}, "config.optim.lr: expected a number"),
    ({"train": {"steps": 1.5}}, "expected an integer"),
    ({"optim": {"betas": [0.9]}}, "expected 2 items"),
])
def test_bad_configs_are_errors(data, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        from_dict(ToyConfig, data)


def test_overrides_parse_json_values():
    data = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=1e-4", "train.steps=3", "optim.schedule=cosine"])
    cfg = from_dict(ToyConfig, data)
    assert cfg.optim.lr == 1e-4 and cfg.train.steps == 3 and cfg.optim.schedule == "cosine"
    with pytest.raises(ConfigError):
        apply_overrides({}, ["no_equals_sign"])


def test_load_config_round_trip(tmp_path):
    cfg = load_config("configs/toy/tiny.json", ["net.hidden=16"])
    assert cfg.net.hidden == 16
    path = tmp_path / "c.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert load_config(path) == cfg
    path.write_text(json.dumps({"system": "nope"}))
    with pytest.raises(ConfigError, match="unknown system 'nope'"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")


@pytest.mark.parametrize("section, values, needle", [
    ("optim", {"lr": -1e-4}, "need lr >= 0"),
    ("optim", {"eps": 0.0}, "eps > 0"),
    ("optim", {"warmup_steps": -1}, "warmup_steps >= 0"),
    ("optim", {"ema_decay": 1.0}, "0 <= ema_decay < 1"),
    ("optim", {"grad_clip": -1.0}, "grad_clip >= 0"),
    ("optim", {"schedule": "linear"}, "must be 'constant' or 'cosine'"),
    ("train", {"steps": 0}, "must be >= 1"),
    ("train", {"batch_size": 0}, "must be >= 1"),
])
def test_out_of_range_values_are_errors(section, values, needle):
    """Values of the right type but outside their range are refused when the config is built (not at step 1000)."""
    with pytest.raises(ConfigError, match=needle):
        from_dict(ToyConfig, {section: values})
    edge = {"optim": {"lr": 0.0, "ema_decay": 0.0, "grad_clip": 0.0, "warmup_steps": 0, "schedule": "cosine"},
            "train": {"steps": 1, "batch_size": 1}}[section]
    from_dict(ToyConfig, {section: edge})  # the boundary values themselves are allowed
    assert OptimConfig().schedule == "constant" and OptimConfig().ema_decay == 0.999  # documented defaults


def test_parse_seeds():
    assert parse_seeds("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_seeds("5") == [5]
    for bad in ["", "a", "3-1", "-2"]:
        with pytest.raises(ValueError):
            parse_seeds(bad)
