"""Training throughput on CPU: data loading per item vs batched, and fp32 vs bf16-autocast training steps.

For each system (SfS and DiffMotion, small configs) in one run, side by side:
- data: samples/s of building a micro-batch the way the training loop does, `default_collate([ds[k] for k in keys])`
  (per item) vs `ds.get_batch(keys)` (batched, when the dataset has it), with the two results checked equal;
- steps: samples/s of a full training step (forward, backward, AdamW) on one prepared micro-batch, in fp32 and under
  `torch.autocast("cpu", torch.bfloat16)` (fast only where the CPU has bf16 instructions: AVX-512-BF16 or AMX).

SfS maps are generated in memory (a few maps at the config's resolution: crop sampling does not depend on the number
of maps); DiffMotion clips are rendered with the numpy backend into a temporary folder.

    python benchmarks/bench_train_throughput.py --out benchmarks/results/train_throughput.md
    git show <commit>:data/sfs.py > /tmp/sfs_before.py    # optional: time an older SfS sampler beside the new one
    python benchmarks/bench_train_throughput.py --sfs-baseline /tmp/sfs_before.py --out ...
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.core.cli import Parser, UserError, cli_main, existing_file, int_at_least  # noqa: E402


def cpu_info() -> dict:
    """Model name and the bf16-relevant instruction-set flags from /proc/cpuinfo."""
    info = {"model": platform.processor() or "unknown", "flags": set()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and info["model"] in ("unknown", "x86_64", ""):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                info["flags"] = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    want = ("avx512f", "avx512_bf16", "amx_bf16")
    info["bf16_flags"] = {f: f in info["flags"] for f in want}
    return info


def rate(fn, samples: int, reps: int, min_s: float = 1.0) -> float:
    """samples/s of fn() (one warm-up call; at least `reps` calls and `min_s` seconds; best of the timed calls)."""
    fn()
    best, total, n = float("inf"), 0.0, 0
    while n < reps or total < min_s:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, n = min(best, dt), total + dt, n + 1
    return samples / best


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def data_rows(name, dataset, keys, reps, per_sample: int = 1, unit: str = "") -> list[dict]:
    collate = torch.utils.data.default_collate
    rows = [{"system": name, "what": "data, per item (default_collate)", "batch": len(keys),
             "rate": rate(lambda: collate([dataset[k] for k in keys]), len(keys), reps)}]
    if hasattr(dataset, "get_batch"):
        equal = same(dataset.get_batch(keys), collate([dataset[k] for k in keys]))
        rows.append({"system": name, "what": "data, batched (get_batch)", "batch": len(keys),
                     "rate": rate(lambda: dataset.get_batch(keys), len(keys), reps),
                     "note": "bitwise equal to per item" if equal else "DIFFERS from per item"})
    else:
        rows.append({"system": name, "what": "data, batched", "batch": len(keys), "rate": None,
                     "note": "n/a: the dataset has no get_batch (per-clip PNG decoding)"})
    for r in rows:
        r["per_sample"], r["unit"] = per_sample, unit
    return rows


def step_rows(name, system, batch, reps, cpu_bf16: bool) -> list[dict]:
    """fp32 vs bf16-autocast training steps (forward + backward + AdamW) on one micro-batch."""
    params = list(system.trainable().values())
    opt = torch.optim.AdamW(params, lr=1e-4)
    n = len(batch["seed"])

    def step(dtype):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                loss, _ = system(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    system.train()
    fp32 = rate(step(None), n, reps)
    bf16 = rate(step(torch.bfloat16), n, reps)
    note = f"bf16 / fp32 = {bf16 / fp32:.2f}x" + ("" if cpu_bf16 else " (no bf16 instructions on this CPU)")
    return [{"system": name, "what": "train step, fp32", "batch": n, "rate": fp32},
            {"system": name, "what": "train step, bf16 autocast", "batch": n, "rate": bf16, "note": note}]


def sfs_rows(config: Path, batch: int, n_maps: int, tile: int, reps: int, cpu_bf16: bool,
             baseline: Path | None, steps: bool = True) -> list[dict]:
    import numpy as np

    from data.sfs import SfsCropDataset, generate_maps
    from models import build_system
    from models.core.config import load_config

    cfg = load_config(config)
    data_cfg = dataclasses.replace(cfg.data, num_maps=n_maps)
    maps = generate_maps(data_cfg, "train", workers=1)
    if tile > n_maps:  # a cache much larger than the CPU caches, as in training: reads miss like the real ones do
        reps_ = -(-tile // n_maps)
        maps = {"levels": {r: np.tile(a, (reps_, 1, 1, 1))[:tile] for r, a in maps["levels"].items()},
                "family": np.tile(maps["family"], reps_)[:tile], "seeds": np.arange(tile)}
        data_cfg = dataclasses.replace(data_cfg, num_maps=tile)
    ds = SfsCropDataset(data_cfg, "train", maps=maps)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0)).tolist()
    keys = [(order[i % len(ds)], 1000 + i) for i in range(batch)]
    k = data_cfg.crops_per_map
    name = f"sfs ({config.stem}: {data_cfg.resolution} px, {k} crops/item, {len(ds)} maps)"
    rows = []
    if baseline is not None:  # an older data/sfs.py, timed on the same maps and keys
        spec = importlib.util.spec_from_file_location("sfs_baseline", baseline)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["sfs_baseline"] = mod
        spec.loader.exec_module(mod)
        old = mod.SfsCropDataset(mod.SfsDataConfig(**dataclasses.asdict(data_cfg)), "train", maps=maps)
        row = data_rows(name, old, keys, reps, k, "tiles")[0]
        equal = same(torch.utils.data.default_collate([old[q] for q in keys]), ds.get_batch(keys))
        row.update(what=f"data, per item, baseline {baseline.name}",
                   note="bitwise equal to get_batch" if equal else "differs from get_batch")
        rows.append(row)
    rows += data_rows(name, ds, keys, reps, k, "tiles")
    rows[-1]["train_batch"] = cfg.train.batch_size  # items per optimizer step in this config
    if not steps:
        return rows
    torch.manual_seed(0)
    system = build_system(cfg)
    step_batch = {**ds.get_batch(keys), "seed": torch.arange(batch)}
    for r in step_rows(name, system, step_batch, reps, cpu_bf16):
        rows.append({**r, "per_sample": k, "unit": "tiles"})
    return rows


def diffmotion_rows(config: Path, batch: int, reps: int, cpu_bf16: bool, steps: bool = True) -> list[dict]:
    from data.motion_render import generate
    from models import build_system
    from models.core.config import load_config

    cfg = load_config(config)
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, 2, max(1, (batch + 3) // 4), resolution=cfg.data.resolution, spp=4, backend="numpy", seed=0,
                 progress=False)
        torch.manual_seed(0)
        system = build_system(cfg)
        ds = system.train_dataset("train", root=tmp)
        keys = [(i % len(ds), 1000 + i) for i in range(batch)]
        name = f"diffmotion ({config.stem}: {cfg.data.resolution} px, 3-frame clips)"
        rows = data_rows(name, ds, keys, reps)
        step_batch = {**torch.utils.data.default_collate([ds[k] for k in keys]), "seed": torch.arange(batch)}
    return rows + (step_rows(name, system, step_batch, reps, cpu_bf16) if steps else [])


def render(rows: list[dict], info: dict, args, took: float) -> str:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["bf16_flags"].items())
    lines = [
        "# Training throughput on CPU (data loading and training steps)",
        "",
        f"- command: `python benchmarks/bench_train_throughput.py {' '.join(sys.argv[1:])}`",
        f"- date: {datetime.date.today().isoformat()}; torch {torch.__version__}; {args.threads} thread(s); "
        f"run took {took:.0f} s",
        f"- CPU: {info['model']}, {os.cpu_count()} cores, shared with other jobs ({flags}). bf16 autocast on CPU is "
        "fast only with AVX-512-BF16 or AMX-BF16; without them it is emulated and usually slower than fp32.",
        "- rates are the best of repeated timings (a shared machine: other jobs slow some calls); samples are "
        "dataset items (an SfS item = K tiles of 16x16, a DiffMotion item = one clip).",
        "",
        "| system | what | micro-batch | samples/s | tiles/s | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rt = "n/a" if r["rate"] is None else f"{r['rate']:.1f}"
        tiles = f"{r['rate'] * r['per_sample']:.0f}" if r["rate"] is not None and r.get("unit") == "tiles" else ""
        lines.append(f"| {r['system']} | {r['what']} | {r['batch']} | {rt} | {tiles} | {r.get('note', '')} |")
    checks = [r for r in rows if r.get("train_batch") and r["rate"] is not None]
    if checks:
        lines += ["", "Data-loading ceiling in optimizer steps/s on one thread (batched sampler alone; the target for "
                  "the faithful recipe is 10-30 steps/s of its 256 items = 4,096 tiles):", ""]
        for r in checks:
            sps = r["rate"] / r["train_batch"]
            verdict = "pass" if sps >= 10 else "FAIL"
            lines.append(f"- {r['system']}: {sps:.1f} steps/s of {r['train_batch']} items ({verdict} against >= 10)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--sfs-configs", nargs="*", default=[str(ROOT / "configs" / "sfs" / c) for c in ("cpu.json",
                                                                                                  "faithful.json")])
    p.add_argument("--sfs-batch", type=int_at_least(1), default=64, help="SfS items per micro-batch")
    p.add_argument("--sfs-maps", type=int_at_least(1), default=16, help="SfS maps generated for the measurement")
    p.add_argument("--sfs-tile", type=int_at_least(1), default=1024,
                   help="repeat the generated maps up to this many (a cache larger than the CPU caches)")
    p.add_argument("--sfs-baseline", default=None, help="an older data/sfs.py whose per-item path is timed too")
    p.add_argument("--diffmotion-configs", nargs="*",
                   default=[str(ROOT / "configs" / "diffmotion" / c) for c in ("tiny.json", "cpu64.json")])
    p.add_argument("--diffmotion-batch", type=int_at_least(1), default=4, help="DiffMotion clips per micro-batch")
    p.add_argument("--reps", type=int_at_least(1), default=3, help="timed calls per measurement (at least 1 s)")
    p.add_argument("--no-steps", action="store_true", help="time data loading only")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the Markdown table here (default: print only)")
    args = p.parse_args(argv)
    sfs_cfgs = [existing_file(c, "--sfs-configs") for c in args.sfs_configs]
    dm_cfgs = [existing_file(c, "--diffmotion-configs") for c in args.diffmotion_configs]
    baseline = existing_file(args.sfs_baseline, "--sfs-baseline") if args.sfs_baseline else None
    if args.out is not None and not str(args.out).endswith(".md"):
        raise UserError(f"--out {args.out}: expected a .md file")
    torch.set_num_threads(args.threads)
    info = cpu_info()
    cpu_bf16 = info["bf16_flags"]["avx512_bf16"] or info["bf16_flags"]["amx_bf16"]
    t0 = time.perf_counter()
    rows = []
    for cfg in sfs_cfgs:
        rows += sfs_rows(cfg, args.sfs_batch, args.sfs_maps, args.sfs_tile, args.reps, cpu_bf16, baseline,
                         not args.no_steps)
    for cfg in dm_cfgs:
        rows += diffmotion_rows(cfg, args.diffmotion_batch, args.reps, cpu_bf16, not args.no_steps)
    text = render(rows, info, args, time.perf_counter() - t0)
    print(text)
    if args.out is not None:
        from data.io import write_text

        print(f"wrote {write_text(args.out, text)}")
    return 0


if __name__ == "__main__":
    cli_main(main)
