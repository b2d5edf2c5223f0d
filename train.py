#!/usr/bin/env python
"""Alias of train_diffusion.py, the one training loop, for systems that are not diffusion models (e.g. the per-scene
Structure-from-Duplicates optimiser): `python train.py --config ...` is exactly `python train_diffusion.py --config ...`."""
from models.core.cli import cli_main
from train_diffusion import main

if __name__ == "__main__":
    cli_main(main)
