#!/usr/bin/env python
"""Print what this machine offers: torch, devices, bf16, natten (fused or not), mitsuba variants, optional packages."""
from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from models.core.cli import Parser, cli_main  # noqa: E402


def rows():
    import torch

    yield "python", platform.python_version()
    yield "torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})"
    cuda = torch.cuda.is_available()
    yield "device", torch.cuda.get_device_name(0) if cuda else f"CPU x{torch.get_num_threads()} threads"
    yield "bf16", str(cuda and torch.cuda.is_bf16_supported())
    for name in ["accelerate", "safetensors", "natten", "mitsuba", "diffusers", "wandb", "sklearn", "cv2", "pycolmap",
                 "xatlas", "gdown"]:
        try:
            mod = importlib.import_module(name)
            version = getattr(mod, "__version__", "installed")
        except Exception as err:  # report, never fail
            version = f"missing ({type(err).__name__})"
        if name == "natten" and not version.startswith("missing"):
            version += " (fused kernels: CUDA)" if cuda else " (CPU: forward only; our torch NA is used)"
        if name == "mitsuba" and not version.startswith("missing"):
            variants = mod.variants()
            version += f" variants: {', '.join(v for v in variants if v in ('scalar_rgb', 'cuda_ad_rgb', 'llvm_ad_rgb'))}"
        yield name, version


def main(argv=None) -> int:
    Parser(prog="check_env.py", description=__doc__).parse_args(argv)
    table = list(rows())
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    cli_main(main)
