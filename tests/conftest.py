"""Shared pytest setup: markers and determinism flags (STYLE.md §3.6)."""
import os

import pytest
import torch


def pytest_configure(config):
    for name, doc in [
        ("slow", "takes more than a few seconds; run with -m slow"),
        ("gpu", "needs a CUDA device"),
        ("natten", "needs the natten package"),
        ("mitsuba", "needs the mitsuba package"),
    ]:
        config.addinivalue_line("markers", f"{name}: {doc}")


@pytest.fixture(autouse=True)
def _determinism():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
