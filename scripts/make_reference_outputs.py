#!/usr/bin/env python
"""Store small fixed-seed outputs of the shipped checkpoints, which tests/test_shipped_ckpts.py reproduces.

    python scripts/make_reference_outputs.py                    # writes test_data/reference/*.npy
    python scripts/make_reference_outputs.py --out /tmp/ref     # elsewhere (e.g. to compare two machines)

Each case takes a few seconds on one CPU thread: SfS = the fast V-cycle with 4 DDIM steps on the "star" stimulus,
2 seeds (64 px output); DiffMotion = 3 DDIM steps on the "blob" test clip at 32 px, 1 seed; Omages = N2G (3 DDIM
steps, CFG 4, a chair and a vase) then G2M (3 DDIM steps) on the cleaned geometry. Re-run this only when
a change is meant to change the outputs (a new checkpoint, a sampler fix), and say so in the commit.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SFS_CKPT, DIFFMOTION_CKPT = ROOT / "ckpts" / "sfs.safetensors", ROOT / "ckpts" / "diffmotion.safetensors"
SFS_SEEDS, SFS_STEPS, SFS_STIMULUS = [0, 1], 4, "star"
DM_SEEDS, DM_STEPS, DM_SIZE, DM_CLIP = [0], 3, 32, "blob"
OMAGES_N2G_CKPT, OMAGES_G2M_CKPT = ROOT / "ckpts" / "omages_n2g.safetensors", ROOT / "ckpts" / "omages_g2m.safetensors"
OMAGES_CLASSES, OMAGES_SEEDS, OMAGES_STEPS = ["chair", "vase"], [0, 1], 3


def sfs_reference(system) -> np.ndarray:
    """Fused normals [2, 3, 64, 64] of the fast preset (seam + integrability guidance, LCG) with 4 DDIM steps."""
    from models.sfs.vcycle import load_schedule

    folder = ROOT / "test_data" / "sfs"
    stimulus = json.loads((folder / "stimuli.json").read_text())["stimuli"][SFS_STIMULUS]
    image = np.load(folder / stimulus["image"]).astype(np.float32)
    schedule = load_schedule("fast").replace(ddim_steps=SFS_STEPS)
    return system.infer({"image": image}, SFS_SEEDS, schedule=schedule)["normals"]


def diffmotion_reference(system) -> np.ndarray:
    """Normal, albedo and material predictions [1, 3 frames, 9, 32, 32] in [-1, 1] after 3 DDIM steps."""
    from run_inference import clips_from_index, load_clip

    paths = dict(clips_from_index(ROOT / "test_data" / "diffmotion"))[DM_CLIP]
    frames = load_clip(paths, DM_SIZE)
    out = system.infer({"frames": frames}, DM_SEEDS, steps=DM_STEPS)
    return np.concatenate([out["normal"], out["albedo"], out["material"]], axis=2)


def omages_reference(n2g, g2m) -> tuple[np.ndarray, np.ndarray]:
    """N2G geometry [2, 4, 64, 64] and G2M materials [2, 5, 64, 64] (model space) for a chair and a vase."""
    from models.omages.pipeline import clean_geometry

    labels = [n2g.class_names.index(c) for c in OMAGES_CLASSES]
    geo = n2g.infer({"labels": labels}, OMAGES_SEEDS, steps=OMAGES_STEPS, cfg_scale=4.0, sampler="ddim")["geometry"]
    mat = g2m.infer({"geometry": clean_geometry(geo), "labels": labels}, OMAGES_SEEDS, steps=OMAGES_STEPS,
                    sampler="ddim")["material"]
    return geo, mat


def load_shipped_omages():
    from models import load_system

    return load_system(OMAGES_N2G_CKPT, expect="omages_n2g"), load_system(OMAGES_G2M_CKPT, expect="omages_g2m")


def load_shipped():
    from models import load_system

    return load_system(SFS_CKPT, expect="sfs"), load_system(DIFFMOTION_CKPT, expect="diffmotion")


def main(argv=None) -> int:
    from models.core.cli import Parser
    from models.core.io import write_npy

    p = Parser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "test_data" / "reference"), help="folder for the .npy files")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sfs, dm = load_shipped()
    geo, mat = omages_reference(*load_shipped_omages())
    outputs = {"sfs_fast4_star.npy": sfs_reference(sfs), "diffmotion_ddim3_blob32.npy": diffmotion_reference(dm),
               "omages_n2g_ddim3.npy": geo, "omages_g2m_ddim3.npy": mat}
    for name, arr in outputs.items():
        write_npy(Path(args.out) / name, arr.astype(np.float32))
        print(f"{Path(args.out) / name}: {arr.shape}, range [{arr.min():.3f}, {arr.max():.3f}]")
    return 0


if __name__ == "__main__":
    from models.core.cli import cli_main

    cli_main(main)
