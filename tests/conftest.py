"""Shared pytest setup: markers and determinism flags (STYLE.md §3.6)."""

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


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The suite is many small ops: intra-op threads only add contention (10x slower on a busy 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
