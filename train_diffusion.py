#!/usr/bin/env python
"""The one training loop for every system (diffusion models and per-scene optimisers alike; `train.py` is an alias).

    python train_diffusion.py --config configs/toy/tiny.json --out runs/toy
    accelerate launch --config_file scripts/accelerate/4gpu_bf16.yaml train_diffusion.py --config configs/diffmotion/nattn_mid.json

What is trained comes from the JSON config (+ `--set key=value`); how it runs comes from the flags. Re-running the same
command resumes from the newest complete checkpoint in `--out` (slurm requeue friendly). Each optimizer step sees the
same global batch, with the same per-sample noise, whatever the number of processes or accumulation steps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import torch

from models.core.checkpoint import CheckpointError, export_checkpoint, read_checkpoint, read_metadata
from models.core.cli import Parser, UserError, cli_main, existing_file, int_at_least
from models.core.config import load_config, to_dict, to_json
from models.core.ema import EMA
from models.core.optim import build_optimizer, lr_at
from models.core.registry import get_system
from models.core.run_state import (RunLock, check_run_record, checkpoint_dirs, remove_debris, resume_latest,
                                   save_training_state)
from models.core.seeding import derive_seed


def parse_args(argv=None):
    p = Parser(description=__doc__)
    p.add_argument("--config", required=True, help="JSON preset, e.g. configs/sfs/cpu.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-4")
    p.add_argument("--out", help="run directory (default runs/<config name>); re-running resumes from it")
    p.add_argument("--data-root", help="dataset folder (overrides the config's data root where the system has one)")
    p.add_argument("--init-from", metavar="CKPT", help="start from an exported checkpoint (fine-tuning, stage "
                   "chaining); ignored when the run resumes")
    p.add_argument("--init-map", nargs="*", default=[], metavar="SRC=DST", help="load only keys starting with SRC "
                   "from --init-from, renamed to start with DST (a later stage from part of an earlier one)")
    p.add_argument("--batch-per-gpu", type=int_at_least(1), help="micro-batch per process (default: global batch / "
                   "processes); the rest is gradient accumulation")
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default=None,
                   help="autocast precision (default: what `accelerate launch`/its config says, else no)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on Ampere+ GPUs (faster, less exact)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow to start, esp. on CPU)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing (less memory, ~30%% slower)")
    p.add_argument("--num-workers", type=int_at_least(0), default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="run seed (init, data order, noise); recorded")
    p.add_argument("--save-every", type=int_at_least(1), default=500, help="steps between checkpoint + export")
    p.add_argument("--keep", type=int_at_least(1), default=2, help="training-state checkpoints to keep")
    p.add_argument("--demo-every", type=int_at_least(0), default=0, help="steps between demo samples (0 = at saves)")
    p.add_argument("--no-demo", action="store_true", help="skip demo samples")
    p.add_argument("--log-every", type=int_at_least(1), default=10, help="steps between log lines")
    p.add_argument("--wandb", metavar="PROJECT", help="log to wandb (off by default; WANDB_MODE=offline works)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and run plan, then exit")
    p.add_argument("--_sigkill-at-step", dest="sigkill_at", type=int, help=argparse.SUPPRESS)  # fault tests
    p.add_argument("--_sigkill-before-export", dest="sigkill_export", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches of (index, seed) keys, a pure function of the step.

    Global sample g of the run is item perm_e[g mod N] of epoch e = g // N, with its own seed; step s covers
    g in [s*B, (s+1)*B). Resuming at any step therefore replays exactly the same data and noise.
    """

    def __init__(self, n_items, global_batch, micro_batch, accum, rank, world, seed, start_step, end_step):
        self.n, self.B, self.micro, self.accum = n_items, global_batch, micro_batch, accum
        self.rank, self.world, self.seed = rank, world, seed
        self.start, self.end = start_step, end_step
        self._perm_epoch, self._perm = -1, None

    def _index(self, g):
        epoch = g // self.n
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=gen), epoch
        return int(self._perm[g % self.n])

    def __iter__(self):
        for step in range(self.start, self.end):
            for m in range(self.accum):
                first = step * self.B + (m * self.world + self.rank) * self.micro
                yield [(self._index(g), derive_seed(self.seed, "item", g)) for g in range(first, first + self.micro)]

    def __len__(self):
        return (self.end - self.start) * self.accum


class KeyedBatches(torch.utils.data.Dataset):
    """A micro-batch per list of keys: the dataset's own `get_batch` when it has one (batched ops), else collated
    items; adds each sample's noise seed, derived from its item seed (so noise follows the sample, not the rank)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, keys):
        if hasattr(self.dataset, "get_batch"):
            batch = self.dataset.get_batch(keys)
        else:
            batch = torch.utils.data.default_collate([self.dataset[k] for k in keys])
        batch["seed"] = torch.tensor([derive_seed(s, "noise") for _, s in keys], dtype=torch.int64)
        return batch


def truncate_log(path: Path, step: int) -> None:
    """After a resume, drop log lines of steps that will be recomputed."""
    from data.io import write_text

    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        write_text(path, "".join(ln + "\n" for ln in keep))


def init_from(system, path: str, mapping: list[str]) -> dict:
    """Load (part of) an export into a fresh system; returns the lineage record of the parent."""
    meta, weights = read_checkpoint(existing_file(path, "--init-from checkpoint"))
    if meta["system"] != system.name:
        raise CheckpointError(f"{path}: a '{meta['system']}' checkpoint cannot start a '{system.name}' run")
    target = system.export_state_dict()
    if mapping:
        pairs = []
        for item in mapping:
            src, sep, dst = item.partition("=")
            if not sep:
                raise UserError(f"--init-map {item!r}: expected SRC=DST (key prefixes)")
            pairs.append((src, dst))
        weights = {dst + k[len(src):]: v for k, v in weights.items() for src, dst in pairs if k.startswith(src)}
        if not weights:
            raise CheckpointError(f"{path}: --init-map {' '.join(mapping)} selects no keys")
        bad = sorted(k for k, v in weights.items() if k not in target or target[k].shape != v.shape)
        if bad:
            raise CheckpointError(f"{path}: mapped keys missing or of another shape in this system: {bad[:3]}")
        system.exported_module().load_state_dict(weights, strict=False)
    else:
        try:
            system.load_export(weights)
        except RuntimeError:
            raise CheckpointError(f"{path}: weights do not match the network of this config "
                                  f"(use --init-map to load a part)") from None
    parents = json.loads(meta.get("lineage", "[]"))
    parent = {"ckpt": str(path), "system": meta["system"], "step": int(meta.get("step", 0)), "keys": len(weights)}
    return {"lineage": parents + [parent], "steps_before": sum(p["step"] for p in parents + [parent])}


def plan(cfg, args) -> dict:
    """What a run would do (--dry-run): parameters on the meta device, launch settings, batch split."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        system = get_system(cfg.system)(cfg)
    if args.grad_ckpt:
        system.set_gradient_checkpointing(True)
    trainable = sum(p.numel() for p in system.trainable().values())
    total = sum(p.numel() for p in system.parameters())
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("ACCELERATE_NUM_PROCESSES", "1")))
    micro = args.batch_per_gpu or max(1, cfg.train.batch_size // world)
    env = os.environ
    backend = ("fsdp" if env.get("ACCELERATE_USE_FSDP") == "true" else "deepspeed"
               if env.get("ACCELERATE_USE_DEEPSPEED") == "true" else "ddp" if world > 1 else "single")
    return {"config": to_dict(cfg), "plan": {
        "system": cfg.system, "parameters": total, "trainable": trainable, "frozen": total - trainable,
        "processes": world, "backend": backend, "fsdp_sharding": env.get("FSDP_SHARDING_STRATEGY"),
        "deepspeed_zero_stage": env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"),
        "precision": args.precision or env.get("ACCELERATE_MIXED_PRECISION", "no"),
        "global_batch": cfg.train.batch_size, "batch_per_gpu": micro,
        "grad_accum": cfg.train.batch_size // max(1, world * micro), "grad_ckpt": args.grad_ckpt,
        "ema": bool(system.use_ema and cfg.optim.ema_decay)}}


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.set)
    cls = get_system(cfg.system)
    if args.dry_run:
        print(json.dumps(plan(cfg, args), indent=2))
        return 0

    # ---- validate everything before anything is written
    from accelerate import Accelerator, PartialState
    from accelerate.utils import broadcast_object_list, set_seed
    from tqdm.auto import tqdm

    run_dir = Path(args.out or Path("runs") / Path(args.config).stem)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: exists and is not a folder")
    use_cpu = args.cpu or not torch.cuda.is_available()
    world = PartialState(cpu=use_cpu).num_processes
    B = cfg.train.batch_size  # global batch (EDM2: the hyperparameter does not change with the GPU count)
    micro = args.batch_per_gpu or B // world
    if micro < 1 or B % (world * micro):
        raise UserError(f"train.batch_size={B} is not divisible by {world} processes x --batch-per-gpu {micro}")
    accum = B // (world * micro)
    # cpu=True lets a CPU-only machine run several gloo processes under `accelerate launch --multi_gpu`.
    accelerator = Accelerator(mixed_precision=args.precision, cpu=use_cpu, gradient_accumulation_steps=accum,
                              log_with="wandb" if args.wandb else None)
    rank, main_proc = accelerator.process_index, accelerator.is_main_process
    log = accelerator.print
    log(f"{world} process(es) on {accelerator.device}, precision {accelerator.mixed_precision}, "
        f"batch {B} = {world} x {micro} x {accum} accumulation")
    if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not cpu_has_bf16():
        log("note: this CPU has no native bf16 (avx512_bf16/amx); bf16 autocast will be slow here")

    set_seed(args.seed)  # identical initial weights on every process
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    system = cls(cfg)
    if args.grad_ckpt:
        system.set_gradient_checkpointing(True)
    resuming = bool(checkpoint_dirs(run_dir))
    lineage = {"lineage": [], "steps_before": 0}
    if args.init_from and not resuming:
        lineage = init_from(system, args.init_from, args.init_map)
        log(f"initialised from {args.init_from} (step {lineage['lineage'][-1]['step']})")
    if not resuming:
        system.check_start()
    with accelerator.main_process_first():  # caches are built once, by the main process
        dataset = system.train_dataset("train", root=args.data_root)
    if len(dataset) == 0:
        raise UserError(f"the '{cfg.system}' training set is empty (--data-root {args.data_root})")
    optim = cfg.optim
    params = system.trainable()
    ema = EMA(params, optim.ema_decay) if system.use_ema and optim.ema_decay else None
    opt = build_optimizer(system, optim)
    if args.compile:
        net = system.exported_module()
        net.forward = torch.compile(net.forward)  # keeps state_dict keys free of `_orig_mod.`
    model, opt = accelerator.prepare(system, opt)
    params = list(params.values())
    if ema is not None:
        ema.to(accelerator.device)

    # ---- from here on the run folder is ours
    lock = RunLock(run_dir) if main_proc else None
    record = {"config": to_dict(cfg), "seed": args.seed, **lineage}
    to_write = check_run_record(run_dir, record)
    if main_proc:
        from data.io import write_text

        if to_write is not None:
            write_text(run_dir / "run.json", json.dumps(to_write, indent=2) + "\n")
            write_text(run_dir / "config.json", to_json(cfg) + "\n")
        with open(run_dir / "cmdline.txt", "a") as f:
            f.write(" ".join(sys.argv) + "\n")
        remove_debris(run_dir)
    accelerator.wait_for_everyone()
    token = broadcast_object_list([secrets.token_hex(4)])[0]  # unique temporary names, one per launch
    resumed = resume_latest(accelerator, run_dir, ema, log)
    if resumed is not None:
        record = json.loads((run_dir / "run.json").read_text())
    step = resumed["step"] if resumed else 0
    if main_proc:
        truncate_log(run_dir / "log.jsonl", step)
    system = accelerator.unwrap_model(model)
    steps = cfg.train.steps

    def export(at_step):
        if not main_proc:
            return
        weights = system.export_state_dict()
        if ema is not None:
            weights.update(ema.state_dict())
        export_checkpoint(run_dir / "model.safetensors", system=cfg.system, config=system.export_config(),
                          state_dict=weights, step=at_step, ema=f"warmup-ema:{optim.ema_decay}" if ema is not None else "raw",
                          extra={"seed": args.seed, "lineage": json.dumps(record["lineage"]),
                                 "total_steps": record["steps_before"] + at_step, **system.export_metadata()})

    def save(at_step):
        save_training_state(accelerator, run_dir, at_step, token, ema, {"seed": args.seed}, args.keep)
        if args.sigkill_export == at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        export(at_step)
        accelerator.wait_for_everyone()

    def demo(at_step):
        if args.no_demo or not main_proc:
            return
        system.eval()
        with torch.no_grad(), (ema.swapped_into(params) if ema is not None else contextlib.nullcontext()):
            for path in system.demo(run_dir / "samples", at_step):
                tqdm.write(f"demo sample: {path}")
        system.train()

    if step > 0 and export_step(run_dir) != step:  # killed between the checkpoint rename and the export
        log(f"exporting step {step} (the export was missing or older than the newest checkpoint)")
        export(step)
        accelerator.wait_for_everyone()

    sampler = StepBatchSampler(len(dataset), B, micro, accum, rank, world, args.seed, step, steps)
    loader = torch.utils.data.DataLoader(KeyedBatches(dataset), sampler=sampler, batch_size=None,
                                         num_workers=args.num_workers, pin_memory=not use_cpu)
    if args.wandb and main_proc:
        accelerator.init_trackers(args.wandb, config=to_dict(cfg), init_kwargs={"wandb": {"dir": str(run_dir)}})

    pbar = tqdm(total=steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    data_iter, t0, n0 = iter(loader), time.time(), step
    logs_sum, n_logged, grad_norm = {}, 0, None  # running sums over the current log interval
    system.train()
    while step < steps:
        lr = lr_at(step, optim, steps)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        for m in range(accum):
            batch = {k: v.to(accelerator.device, non_blocking=True) if torch.is_tensor(v) else v
                     for k, v in next(data_iter).items()}
            torch.manual_seed(derive_seed(args.seed, "global-rng", step, m, rank))  # dropout etc. (not the noise)
            with accelerator.accumulate(model):
                loss, logs = model(batch)
                accelerator.backward(loss)  # divides by the accumulation steps
                if accelerator.sync_gradients and optim.grad_clip:
                    grad_norm = accelerator.clip_grad_norm_(params, optim.grad_clip)
                opt.step()  # a no-op until the last micro-step (accelerate)
                opt.zero_grad(set_to_none=True)
            for k, v in {"loss": loss, **logs}.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + v.detach().float() / accum
        if ema is not None:
            ema.update(params)
        step += 1
        n_logged += 1
        pbar.update(1)

        if step % args.log_every == 0 or step == steps:
            means = {k: accelerator.reduce(v / n_logged, reduction="mean").item() for k, v in logs_sum.items()}
            logs_sum, n_logged = {}, 0
            rate = (step - n0) * B / max(time.time() - t0, 1e-9)
            entry = {"step": step, **means, "lr": lr, "samples_per_s": round(rate, 2)}
            if grad_norm is not None:
                entry["grad_norm"] = float(grad_norm)
            pbar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
            if main_proc:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(entry) + "\n")
            accelerator.log(entry, step=step)
        if step % args.save_every == 0 or step == steps:
            save(step)
        if step % (args.demo_every or args.save_every) == 0:
            demo(step)
        if args.sigkill_at == step:
            os.kill(os.getpid(), signal.SIGKILL)
    pbar.close()
    if n0 < steps and step % (args.demo_every or args.save_every) != 0:
        demo(step)
    accelerator.end_training()
    log(f"done: {run_dir / 'model.safetensors'} (step {step})")
    if lock is not None:
        lock.release()
    return 0


def export_step(run_dir: Path) -> int | None:
    try:
        return int(read_metadata(run_dir / "model.safetensors").get("step", -1))
    except CheckpointError:
        return None


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


if __name__ == "__main__":
    cli_main(main)
