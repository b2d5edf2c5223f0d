"""Shared pytest setup: markers and determinism flags (STYLE.md §3.6)."""

from pathlib import Path

import numpy as np
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


@pytest.fixture
def motion_root(tmp_path) -> Path:
    """A synthetic DiffMotion dataset (random PNGs in the rendered layout, 2 sequences = 4 clips at 32 px)."""
    return write_motion_root(tmp_path / "motion")


def write_motion_root(root: Path, sequences: int = 2, size: int = 32) -> Path:
    """Random PNGs in the DiffMotion dataset layout, indexed with the data module's pointer builder."""
    import imageio.v3 as iio

    from data.motion_render import FRAMES, MODALITIES, build_pointer, frame_file, meta_file

    rng = np.random.default_rng(0)
    obj = root / "obj_000"
    obj.mkdir(parents=True)
    for i in range(sequences):
        for f in range(FRAMES):
            for m in MODALITIES:
                shape = (size, size) if m in ("metallic", "specular", "roughness") else (size, size, 3)
                iio.imwrite(obj / frame_file(i, f, m), rng.integers(0, 256, shape, dtype=np.uint8))
        (obj / meta_file(i)).write_text("{}")
    build_pointer(root)
    return root


