"""Neighborhood attention vs dense masked attention: time and peak memory of forward + backward.

Each (grid size, backend) case runs in fresh child processes (one for timing, one for memory) so that one case's
allocator state cannot hide or inflate another's peak. Memory is measured as follows:
- CPU: the kernel's resident-set high-water mark (VmHWM). The memory child runs the warm-up steps (one-off lazy
  initialisation), resets the mark to the current RSS (write "5" to /proc/self/clear_refs, Linux >= 4.0), runs one
  forward+backward step and reports VmHWM minus the RSS at the reset. This counts every page the step touched
  (autograd buffers, masks, gathers, temporaries), which decides whether a job fits in RAM; the q/k/v inputs,
  libraries and one-off initialisation are excluded. That child starts glibc with a fixed MALLOC_MMAP_THRESHOLD_
  so every large buffer is mmap'd and returned on free; otherwise pages kept from the warm-up would be reused without
  raising RSS. The fixed threshold makes allocation slower (page faults), so timing runs in a separate child with
  the default allocator.
- CUDA: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), minus the memory held by the inputs.

Backends: "torch" (our gather NA), "dense" (SDPA over all tokens with the boolean NA mask, the O(N^2) reference)
and "natten" (fused kernels, only on CUDA). Example:
    python benchmarks/bench_attention.py --sizes 64 128 --heads 1 --dim 32 --out benchmarks/results/attention_cpu.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.core.cli import Parser, UserError, cli_main, int_at_least  # noqa: E402


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def run_case(args, size: int, backend: str, mode: str) -> dict:
    """One case in this process. mode "time": medians of timed reps; mode "memory": peak of one fwd+bwd step."""
    import torch

    from models.nn.attention import neighborhood_attention

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, size, size, args.heads, args.dim)
    q, k, v = (torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() for _ in range(3))
    grad_out = torch.randn(shape, generator=gen).to(device, dtype)

    def step(backward: bool):
        out = neighborhood_attention(q, k, v, args.kernel, backend=backend)
        if backward:
            out.backward(grad_out)
            q.grad = k.grad = v.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(args.warmup, 1) if mode == "memory" else args.warmup):
        step(False)
        step(True)
    row = dict(size=size, backend=backend, threads=torch.get_num_threads())
    if mode == "memory":
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the RSS high-water mark to the current RSS
            base = _rss_kib("VmRSS") * 1024
        step(True)
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_kib("VmHWM") * 1024
        return dict(row, peak_mib=(peak - base) / 2**20)
    for name, backward in (("fwd", False), ("fwd_bwd", True)):
        reps = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            step(backward)
            reps.append(time.perf_counter() - t0)
        row[name + "_ms"] = 1e3 * statistics.median(reps)
        row[name + "_min_ms"] = 1e3 * min(reps)
    return row


def run_child(args, size: int, backend: str) -> dict:
    """Run the timing and the memory measurement in two fresh processes and merge their rows."""
    row = {}
    for mode in ("time", "memory"):
        cmd = [sys.executable, __file__, "--_child", json.dumps([size, backend, mode])] + _forward_args(args)
        env = dict(os.environ)
        if mode == "memory":  # fixed threshold: every big buffer is mmap'd and unmapped on free (see docstring)
            env["MALLOC_MMAP_THRESHOLD_"] = "262144"
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return dict(size=size, backend=backend, error=f"{mode} run exit {proc.returncode}: {tail[0][:100]}")
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return row


def _forward_args(args) -> list[str]:
    out = []
    for key in ("heads", "dim", "kernel", "batch", "reps", "warmup", "dtype", "device", "threads"):
        out += [f"--{key}", str(getattr(args, key))]
    return out


def hardware(device: str, threads: int) -> str:
    import torch

    if threads:
        torch.set_num_threads(threads)

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    desc = (f"{cpu}, {os.cpu_count()} logical CPUs visible, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")
    if device.startswith("cuda"):
        desc += f", GPU {torch.cuda.get_device_name()}"
    return desc


def markdown_table(rows: list[dict], args) -> str:
    lines = [f"heads={args.heads}, head_dim={args.dim}, batch={args.batch}, window={args.kernel}x{args.kernel}, "
             f"dtype={args.dtype}, device={args.device}; times are medians (and minima) of {args.reps} reps after "
             f"{args.warmup} warm-up; peak = extra peak memory of the step (see the docstring of bench_attention.py)",
             "",
             "| grid (tokens) | backend | fwd ms | fwd+bwd ms | (min) | peak MiB | fwd+bwd speedup vs dense "
             "| memory vs dense |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    dense = {r["size"]: r for r in rows if r["backend"] == "dense" and "error" not in r}
    for r in rows:
        grid = f"{r['size']}x{r['size']} ({r['size'] ** 2})"
        if "error" in r:
            lines.append(f"| {grid} | {r['backend']} | failed: {r['error']} | | | | | |")
            continue
        ref = dense.get(r["size"])
        speed = f"{ref['fwd_bwd_ms'] / r['fwd_bwd_ms']:.1f}x" if ref else "n/a"
        mem = f"{r['peak_mib'] / ref['peak_mib']:.3f}x" if ref and ref["peak_mib"] > 0 else "n/a"
        lines.append(f"| {grid} | {r['backend']} | {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} "
                     f"| {r['fwd_bwd_min_ms']:.1f} | {r['peak_mib']:.1f} | {speed} | {mem} |")
    return "\n".join(lines) + "\n"


BACKENDS = ("torch", "dense", "natten")


def build_parser() -> Parser:
    parser = Parser(prog="bench_attention.py", description=__doc__)
    parser.add_argument("--sizes", type=int_at_least(1), nargs="+", default=[64, 128],
                        help="square grid sides (tokens = side^2)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=None,
                        help="default: torch dense (+ natten on CUDA)")
    parser.add_argument("--kernel", type=int_at_least(1), default=7, help="window side (odd, <= every grid side)")
    parser.add_argument("--heads", type=int_at_least(1), default=1)
    parser.add_argument("--dim", type=int_at_least(1), default=32, help="head dim")
    parser.add_argument("--batch", type=int_at_least(1), default=1)
    parser.add_argument("--reps", type=int_at_least(1), default=3, help="timed repetitions (the median is reported)")
    parser.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed forward+backward steps first")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report here (atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    return parser


def check_args(args) -> None:
    """Every flag checked before the first child process starts."""
    from data.io import check_output_path
    from models.core.cli import resolve_device

    args.device = str(resolve_device(args.device))
    if args.kernel % 2 == 0:
        raise UserError(f"--kernel {args.kernel}: the window side must be odd")
    if args.kernel > min(args.sizes):
        raise UserError(f"--kernel {args.kernel}: larger than the grid side {min(args.sizes)} (--sizes)")
    if "natten" in (args.backends or ()) and not args.device.startswith("cuda"):
        raise UserError("--backends natten: natten's fused kernels need --device cuda")
    if args.out is not None:
        check_output_path(args.out, "--out", folder=False)
        if args.out.exists() and not args.overwrite:
            raise UserError(f"--out {args.out}: exists already (pick another name, or --overwrite)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args._child:
        size, backend, mode = json.loads(args._child)
        print(json.dumps(run_case(args, size, backend, mode)))
        return 0
    check_args(args)

    backends = args.backends or (["torch", "dense"] + (["natten"] if args.device.startswith("cuda") else []))
    rows = []
    for size in args.sizes:
        for backend in backends:
            row = run_child(args, size, backend)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    table = markdown_table(rows, args)
    print(table)
    if args.out:
        from data.io import write_text

        now = datetime.datetime.now().isoformat(timespec="seconds")
        report = (f"# Neighborhood attention benchmark\n\n- date: {now}\n"
                  f"- command: `python {' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`\n"
                  f"- hardware: {hardware(args.device, args.threads)}\n\n{table}")
        write_text(args.out, report)
    return 0


if __name__ == "__main__":
    cli_main(main)
