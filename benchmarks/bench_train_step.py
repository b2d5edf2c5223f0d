#!/usr/bin/env python
"""Training-step throughput of a system on synthetic batches, with FLOPs and MFU (model FLOPs utilisation).

    python benchmarks/bench_train_step.py --config configs/diffmotion/nattn_mid.json --resolution 256 --batch 16 \
        --device cuda --precision bf16 --out results/diffmotion_step.json
    python benchmarks/bench_train_step.py --config configs/diffmotion/tiny.json --steps 2    # CPU smoke

FLOPs of one forward+backward are counted once with torch.utils.flop_counter (the matmuls and convolutions it
sees; fused natten kernels are invisible to it, so on CUDA the attention FLOPs are not counted and the MFU is a
lower bound). MFU = achieved FLOP/s / peak: pass --peak-tflops (H100/H200 SXM dense bf16: 989) or it is omitted.
"""
from __future__ import annotations

import json
import time

import torch

from models.core.cli import Parser, UserError, cli_main, finite_float, int_at_least, resolve_device, set_threads
from models.core.config import load_config
from models.core.optim import build_optimizer
from models.core.registry import get_system


def synthetic_batch(system, batch: int, resolution: int, device) -> dict:
    """A random batch in the system's training format (only systems with a known format)."""
    g = torch.Generator().manual_seed(0)
    if system.name == "diffmotion":
        return {"frames": torch.rand(batch, 3, 3, resolution, resolution, generator=g).to(device) * 2 - 1,
                "target": torch.rand(batch, 3, 9, resolution, resolution, generator=g).to(device) * 2 - 1,
                "seed": torch.arange(batch)}
    if system.name == "sfs":
        n = torch.nn.functional.normalize(torch.randn(batch, 3, 16, 16, generator=g) + torch.tensor([0, 0, 2.0])
                                          .view(3, 1, 1), dim=1)
        return {"normals": n.to(device), "seed": torch.arange(batch)}
    raise UserError(f"--config: no synthetic batch for system '{system.name}' (diffmotion, sfs)")


def count_flops(system, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss, _ = system(batch)
        loss.backward()
    system.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def main(argv=None):
    p = Parser(description=__doc__)
    p.add_argument("--config", required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--resolution", type=int_at_least(16), default=None, help="default: the config's data resolution")
    p.add_argument("--batch", type=int_at_least(1), default=2)
    p.add_argument("--steps", type=int_at_least(1), default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int_at_least(0), default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int_at_least(1), default=None)
    p.add_argument("--peak-tflops", type=finite_float(0, lo_open=True), default=None)
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    cfg = load_config(args.config, args.set)
    system = get_system(cfg.system)(cfg).to(device).train()
    if args.grad_ckpt:
        system.set_gradient_checkpointing(True)
    res = args.resolution or getattr(cfg.data, "resolution", 16)
    batch = synthetic_batch(system, args.batch, res, device)
    flops = count_flops(system, batch)
    opt = build_optimizer(system, cfg.optim)
    step_fn = torch.compile(system) if args.compile else system
    dtype = torch.bfloat16 if args.precision == "bf16" else None

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _ = step_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    sec = (time.perf_counter() - t0) / args.steps
    result = {"config": args.config, "system": cfg.system, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "precision": args.precision, "resolution": res, "batch": args.batch, "grad_ckpt": args.grad_ckpt,
              "compile": args.compile, "params": sum(p.numel() for p in system.parameters()),
              "step_s": round(sec, 5), "samples_per_s": round(args.batch / sec, 3),
              "tflop_per_step": round(flops / 1e12, 4), "achieved_tflops": round(flops / sec / 1e12, 3)}
    if args.peak_tflops:
        result["mfu"] = round(flops / sec / 1e12 / args.peak_tflops, 4)
    if device.type == "cuda":
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from models.core.io import write_text

        write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    cli_main(main)
