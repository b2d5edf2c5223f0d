"""The shipped checkpoints load strictly and reproduce stored low-resolution outputs (made by
scripts/make_reference_outputs.py on the 2-core AMD CPU) within a tolerance that other CPUs keep.

Tolerances, measured: multiplying every weight by (1 + 2e-7 z), about what a different GEMM summation order does,
moves the SfS output by up to 4.6e-4 (the guided V-cycle amplifies it) and DiffMotion's by 3.5e-6; the Omages
geometry / materials by 8e-5 / 2e-4 on average, 1.2e-3 / 2.0e-3 at the 99th percentile and up to 0.05 / 0.07 on
single pixels (x0 clipping, the occupancy threshold before G2M).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from models import load_system
from models.core.checkpoint import CheckpointError
from scripts.make_reference_outputs import (DIFFMOTION_CKPT, OMAGES_G2M_CKPT, OMAGES_N2G_CKPT, SFS_CKPT,
                                            diffmotion_reference, load_shipped, load_shipped_omages,
                                            omages_reference, sfs_reference)

REF = Path(__file__).resolve().parents[1] / "test_data" / "reference"


@pytest.fixture(scope="module")
def shipped():
    return load_shipped()


def test_load_strictly_with_expected_system(shipped):
    sfs, dm = shipped
    assert sfs.name == "sfs" and dm.name == "diffmotion"
    from safetensors import safe_open

    for system, path in ((sfs, SFS_CKPT), (dm, DIFFMOTION_CKPT)):
        with safe_open(str(path), "pt") as f:
            stored = set(f.keys())
        assert stored == set(system.export_state_dict())  # every tensor used, none missing
        assert not any(p.is_meta for p in system.parameters())
    with pytest.raises(CheckpointError, match="'sfs' checkpoint, but a 'diffmotion'"):
        load_system(SFS_CKPT, expect="diffmotion")


def test_sfs_reproduces_reference(shipped):
    ref = np.load(REF / "sfs_fast4_star.npy", allow_pickle=False)
    with torch.no_grad():
        out = sfs_reference(shipped[0])
    assert out.shape == ref.shape == (2, 3, 64, 64)
    diff = np.abs(out - ref)
    assert diff.max() <= 5e-3 and diff.mean() <= 2e-4, (diff.max(), diff.mean())
    assert np.abs(ref[0] - ref[1]).mean() > 1e-2  # the two seeds differ: the comparison has teeth


def test_diffmotion_reproduces_reference(shipped):
    ref = np.load(REF / "diffmotion_ddim3_blob32.npy", allow_pickle=False)
    with torch.no_grad():
        out = diffmotion_reference(shipped[1])
    assert out.shape == ref.shape == (1, 3, 9, 32, 32)
    np.testing.assert_allclose(out, ref, atol=1e-3, rtol=0)
    assert ref.std() > 0.1


def test_omages_load_strictly_and_reproduce_reference():
    from safetensors import safe_open

    n2g, g2m = load_shipped_omages()
    for system, path in ((n2g, OMAGES_N2G_CKPT), (g2m, OMAGES_G2M_CKPT)):
        with safe_open(str(path), "pt") as f:
            assert set(f.keys()) == set(system.export_state_dict())
    with pytest.raises(CheckpointError, match="'omages_n2g' checkpoint, but a 'omages_g2m'"):
        load_system(OMAGES_N2G_CKPT, expect="omages_g2m")
    with torch.no_grad():
        geo, mat = omages_reference(n2g, g2m)
    for out, name in ((geo, "omages_n2g_ddim3.npy"), (mat, "omages_g2m_ddim3.npy")):
        ref = np.load(REF / name, allow_pickle=False)
        assert out.shape == ref.shape
        diff = np.abs(out - ref)  # x0 clipping and the occupancy threshold make a few pixels jump: no max bound
        assert diff.mean() <= 2e-3 and np.quantile(diff, 0.99) <= 2e-2, (diff.mean(), np.quantile(diff, 0.99))
        assert np.abs(ref[0] - ref[1]).mean() > 1e-2  # a chair and a vase: the comparison has teeth
