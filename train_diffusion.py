#!/usr/bin/env python
"""The one training loop for every system (STYLE.md §3.3).

    python train_diffusion.py --config configs/sfs/cpu.json --out runs/sfs-cpu
    accelerate launch --config_file scripts/accelerate/4gpu_bf16.yaml train_diffusion.py --config configs/diffmotion/nattn_mid.json

What is trained comes from the JSON config (+ `--set key=value`); how it runs comes from the flags below. Re-running the
same command resumes from the newest complete checkpoint in `--out` (slurm requeue friendly). Each optimizer step sees
the same global batch whatever the number of GPUs or accumulation steps.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

from models import build_system
from models.core.checkpoint import CheckpointError, export_checkpoint, read_checkpoint
from models.core.config import ConfigError, load_config, to_dict, to_json
from models.core.ema import EMA
from models.core.seeding import derive_seed
from data.io import write_text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="JSON preset, e.g. configs/sfs/cpu.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-4")
    p.add_argument("--out", help="run directory (default runs/<config name>); re-running resumes from it")
    p.add_argument("--data-root", help="dataset folder (overrides the config's data root where the system has one)")
    p.add_argument("--init-from", metavar="CKPT", help="start from the weights of an exported checkpoint of the same "
                   "system (fine-tuning / continuing with a new config); ignored when the run resumes")
    p.add_argument("--batch-per-gpu", type=int, help="micro-batch per process (default: global batch / processes); "
                   "the rest is gradient accumulation")
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no", help="autocast precision (bf16 on A100/H100)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (GPU; slow to start on CPU)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0, help="run seed (data order, noise, init)")
    p.add_argument("--save-every", type=int, default=500, help="optimizer steps between training-state saves + export")
    p.add_argument("--keep", type=int, default=2, help="training-state checkpoints to keep")
    p.add_argument("--demo-every", type=int, default=0, help="steps between demo samples (0 = at each save)")
    p.add_argument("--no-demo", action="store_true", help="skip demo samples")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    p.add_argument("--wandb", metavar="PROJECT", help="log to wandb (off by default; WANDB_MODE=offline works)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--_sigkill-at-step", dest="sigkill_at", type=int, help=argparse.SUPPRESS)  # resume tests
    return p.parse_args(argv)


class TrainState:
    """Step counter saved with the accelerate state."""

    def __init__(self):
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches of (index, seed) keys, a pure function of the step.

    Global sample g of the run is item perm_e[g mod N] of epoch e = g // N, with its own seed; step s covers
    g in [s*B, (s+1)*B). Resuming at any step therefore replays exactly the same data.
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


def lr_at(step, optim, total):
    """Linear warm-up then constant or cosine decay to 0 (per optimizer step)."""
    if optim.warmup_steps and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        span = max(1, total - optim.warmup_steps)
        return optim.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - optim.warmup_steps) / span)))
    if optim.schedule != "constant":
        raise ConfigError(f"optim.schedule must be 'constant' or 'cosine', got {optim.schedule!r}")
    return optim.lr


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete training-state folders, oldest first (incomplete ones are only ever named .tmp-*)."""
    root = run_dir / "checkpoints"
    return sorted(root.glob("step_*")) if root.is_dir() else []


def prepare_run_dir(run_dir: Path, cfg, args, is_main: bool) -> None:
    """Refuse to mix configs in one run directory; record config, command line and environment."""
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != to_dict(cfg):
            diff = sorted(k for k in set(_flat(old)) | set(_flat(to_dict(cfg))) if _flat(old).get(k) != _flat(to_dict(cfg)).get(k))
            raise ConfigError(f"{run_dir} was made with a different config (differs in {', '.join(diff[:5])}); "
                              f"use another --out")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not cfg_path.exists():
            write_text(cfg_path, to_json(cfg) + "\n")
        with open(run_dir / "cmdline.txt", "a") as f:
            f.write(" ".join(sys.argv) + "\n")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def truncate_log(path: Path, step: int) -> None:
    """After a resume, drop log lines of steps that will be recomputed."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        write_text(path, "".join(ln + "\n" for ln in keep))


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.set)
    if args.dry_run:
        print(to_json(cfg))
        return 0

    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    run_dir = Path(args.out or Path("runs") / Path(args.config).stem)
    # cpu=True lets a CPU-only machine run several gloo processes under `accelerate launch --multi_gpu`.
    accelerator = Accelerator(mixed_precision=args.precision, cpu=args.cpu or not torch.cuda.is_available(),
                              log_with="wandb" if args.wandb else None)
    world, rank, main_proc = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    accelerator.print(f"{world} process(es) on {accelerator.device}, precision {args.precision}")
    prepare_run_dir(run_dir, cfg, args, main_proc)
    accelerator.wait_for_everyone()

    # Global batch = world * micro * accum (EDM2: the hyperparameter does not change with the GPU count).
    B = cfg.train.batch_size
    micro = args.batch_per_gpu or B // world
    if micro < 1 or B % (world * micro):
        raise ConfigError(f"train.batch_size={B} is not divisible by {world} processes x --batch-per-gpu {micro}")
    accum = B // (world * micro)

    set_seed(args.seed)  # identical initial weights on every process
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    system = build_system(cfg)
    if args.init_from and not checkpoint_dirs(run_dir):
        meta, weights = read_checkpoint(args.init_from)
        if meta["system"] != cfg.system:
            raise CheckpointError(f"{args.init_from}: a '{meta['system']}' checkpoint cannot start a '{cfg.system}' run")
        try:
            system.net.load_state_dict(weights, strict=True)
        except RuntimeError:
            raise CheckpointError(f"{args.init_from}: weights do not match the network of this config") from None
        accelerator.print(f"initialised from {args.init_from} (step {meta.get('step')})")
    dataset = system.train_dataset("train", root=args.data_root)
    optim = cfg.optim
    opt = torch.optim.AdamW(system.net.parameters(), lr=optim.lr, betas=tuple(optim.betas),
                            weight_decay=optim.weight_decay, eps=optim.eps)
    ema = EMA(system.net, decay=optim.ema_decay or 0.0)
    state = TrainState()
    if args.compile:
        system.net.forward = torch.compile(system.net.forward)  # keeps state_dict keys free of `_orig_mod.`
    model, opt = accelerator.prepare(system, opt)
    accelerator.register_for_checkpointing(ema, state)

    ckpts = checkpoint_dirs(run_dir)
    if ckpts:
        accelerator.load_state(str(ckpts[-1]))
        accelerator.print(f"resumed from {ckpts[-1]} at step {state.step}")
    if main_proc:
        shutil.rmtree(run_dir / "checkpoints" / ".tmp", ignore_errors=True)  # debris of a kill during a save
        truncate_log(run_dir / "log.jsonl", state.step)
    ema.module.to(accelerator.device)

    steps = cfg.train.steps
    sampler = StepBatchSampler(len(dataset), B, micro, accum, rank, world, args.seed, state.step, steps)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers,
                                         pin_memory=torch.cuda.is_available())
    if args.wandb and main_proc:
        accelerator.init_trackers(args.wandb, config=to_dict(cfg), init_kwargs={"wandb": {"dir": str(run_dir)}})
    demo_system = build_system(cfg).to(accelerator.device) if main_proc and not args.no_demo else None
    net = accelerator.unwrap_model(model).net

    def save(step):
        tmp = run_dir / "checkpoints" / ".tmp"
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main_proc:
            os.replace(tmp, run_dir / "checkpoints" / f"step_{step:08d}")
            for old in checkpoint_dirs(run_dir)[:-args.keep]:
                shutil.rmtree(old)
            weights = ema.module.state_dict() if optim.ema_decay else net.state_dict()
            export_checkpoint(run_dir / "model.safetensors", system=cfg.system, config=to_dict(cfg), state_dict=weights,
                              step=step, ema=f"warmup-ema:{optim.ema_decay}" if optim.ema_decay else "raw")
        accelerator.wait_for_everyone()

    def demo(step):
        demo_system.net.load_state_dict(ema.module.state_dict() if optim.ema_decay else net.state_dict())
        with torch.no_grad():
            paths = demo_system.demo(run_dir / "samples", step)
        for path in paths:
            tqdm.write(f"demo sample: {path}")

    pbar = tqdm(total=steps, initial=state.step, disable=not accelerator.is_local_main_process, desc="train")
    data_iter, t0, n0 = iter(loader), time.time(), state.step
    logs_sum, n_logged = {}, 0  # running sums over the current log interval
    while state.step < steps:
        lr = lr_at(state.step, optim, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        for m in range(accum):
            batch = {k: v.to(accelerator.device, non_blocking=True) if torch.is_tensor(v) else v
                     for k, v in next(data_iter).items()}
            torch.manual_seed(derive_seed(args.seed, "noise", state.step, m, rank))
            with accelerator.accumulate(model):
                loss, logs = model(batch)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and optim.grad_clip:
                    grad_norm = accelerator.clip_grad_norm_(net.parameters(), optim.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            for k, v in {"loss": loss, **logs}.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + v.detach().float() / accum
        ema.update(net)
        state.step += 1
        n_logged += 1
        pbar.update(1)

        if state.step % args.log_every == 0 or state.step == steps:
            means = {k: accelerator.reduce(v / n_logged, reduction="mean").item() for k, v in logs_sum.items()}
            logs_sum, n_logged = {}, 0
            rate = (state.step - n0) * B / max(time.time() - t0, 1e-9)
            record = {"step": state.step, **means, "lr": lr, "samples_per_s": round(rate, 2)}
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            pbar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")
            if main_proc:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            accelerator.log(record, step=state.step)
        if state.step % args.save_every == 0 or state.step == steps:
            save(state.step)
        if demo_system is not None and state.step % (args.demo_every or args.save_every) == 0:
            demo(state.step)
        if args.sigkill_at == state.step:
            os.kill(os.getpid(), signal.SIGKILL)
    pbar.close()
    if demo_system is not None and state.step % (args.demo_every or args.save_every) != 0:
        demo(state.step)
    accelerator.end_training()
    accelerator.print(f"done: {run_dir / 'model.safetensors'} (step {state.step})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
