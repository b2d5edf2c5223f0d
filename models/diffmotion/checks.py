"""Learning, diversity and timing checks of a trained DiffMotion checkpoint, as a library.

`evaluate` samples the held-out clips and returns every number; `write_report` writes them as markdown + JSON.
benchmarks/diffmotion_checks.py is the command line over these two.

Learning check (seed 0, moving held-out clips, no augmentation, foreground = GT normal length in [0.9, 1.1], averaged
over frames, then over clips): normal angular error vs B1 (0, 0, 1) and B2 (per-pixel training mean); albedo si-MSE vs
B3 (input RGB) and B4 (training-mean colour); metallic/specular/roughness MAE vs B5 (training means); normal error after
swapping the conditioning with another object's clip. Diversity check: pairwise angular diversity D of K seeds for
static (frame 0 x 3) and moving inputs; motion should narrow the spread (the paper's claim that differential motion
disambiguates shape). Timing: a batch of seeds of one clip with the checkpoint's DDIM steps. Baseline statistics use
training foreground pixels only (see metrics.training_baselines).
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from models.core.config import to_dict
from models.core.io import write_text
from models.diffmotion import metrics as M
from models.diffmotion.channels import foreground_mask

if TYPE_CHECKING:  # the datasets come from the caller; the library does not import `data`
    from data.motion import MotionDataset

FAITHFUL_STEPS, FAITHFUL_SEEDS = 50, 8  # the checkpoint's DDIM steps and the seed count the thresholds assume


# ------------------------------------------------------------------------------------------------------- header
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device: torch.device) -> str:
    text = f"CPU {cpu_model()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}, device {device}"
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def checkpoint_summary(system, meta: dict) -> dict:
    cfg = system.cfg
    n, d, data = cfg.net, cfg.diffusion, cfg.data
    return {
        "step": int(meta.get("step", 0)), "created": meta.get("created", "?"), "ema": meta.get("ema") or "?",
        "git_commit": meta.get("git_commit", "?"), "params": sum(p.numel() for p in system.net.parameters()),
        "resolution": data.resolution, "channels": list(n.channels), "blocks": list(n.blocks),
        "mid_blocks": n.mid_blocks,
        "heads": n.heads, "level_types": list(n.level_types), "na_kernel": n.na_kernel,
        "train_shift": d.shift, "sampling_steps": d.sampling_steps, "sampling_shift": d.sampling_shift,
        "train_steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "lr": cfg.optim.lr,
        "ema_decay": cfg.optim.ema_decay,
    }


# ------------------------------------------------------------------------------------------------------ sampling
class CallCounter:
    """Forward hook on the network: counts calls and the samples they processed."""

    def __init__(self, net):
        self.calls = self.samples = 0
        self.handle = net.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.calls += 1
        self.samples += int(output.shape[0])


def sample_all(system, conds: torch.Tensor, seeds: list[int], steps: int, batch: int, progress: bool) -> torch.Tensor:
    """Samples [N, 3, 9, H, W] (CPU, float32) for N (conditioning, seed) pairs, in chunks of `batch`."""
    device = next(system.net.parameters()).device
    size = batch if batch > 0 else len(seeds)
    out = []
    for i in range(0, len(seeds), size):
        x = system.sample(conds[i:i + size].to(device), seeds[i:i + size], steps=steps, progress=progress)
        out.append(x.float().cpu())
    return torch.cat(out)


def partner_index(entries: list[dict], i: int) -> int | None:
    """The next clip (cyclically) of a different object, for the conditioning-swap check."""
    n = len(entries)
    for k in range(1, n):
        j = (i + k) % n
        if entries[j].get("folder") != entries[i].get("folder"):
            return j
    return (i + 1) % n if n > 1 else None


def train_targets(ds: MotionDataset):
    """GT targets [9, H, W] of every distinct training frame (clips share frames), without augmentation."""
    seen = set()
    for e in ds.entries:
        for paths in e["paths"]:
            if paths["rgb"] not in seen:
                seen.add(paths["rgb"])
                yield ds.load_frame(paths)[1]


# ------------------------------------------------------------------------------------------------------- metrics
def clip_metrics(pred0, swapped, static, moving, frames, target, base) -> dict:
    """All per-clip numbers. pred0/swapped [3, 9, H, W]; static/moving [K, 3, 9, H, W]; frames [3, 3, H, W]."""
    fg = foreground_mask(target)  # [3, H, W]
    t, _, h, w = target.shape
    r = {"fg_pixels": int(fg.sum())}
    b2 = base["normal_map"][None].expand(t, -1, -1, -1)
    for name, pred in (("model", pred0), ("b1", M.constant_normals((t, h, w))), ("b2", b2)):
        for key, vals in M.normal_angular_errors(pred, target, fg).items():
            r[f"normal_{key}_{name}"] = M.frame_average(vals)
    r["normal_mae_swapped"] = (M.frame_average(M.normal_angular_errors(swapped, target, fg)["mae"])
                               if swapped is not None else float("nan"))
    gt_alb = M.to_unit_range(target[:, M.ALBEDO])
    b4 = base["albedo"][None, :, None, None].expand(t, -1, h, w)
    for name, pred in (("model", M.to_unit_range(pred0[:, M.ALBEDO])), ("b3", M.to_unit_range(frames)), ("b4", b4)):
        r[f"albedo_simse_{name}"] = M.frame_average(M.si_mse(pred, gt_alb, fg))
    gt_mat = M.to_unit_range(target[:, M.MATERIAL])
    b5 = base["material"][None, :, None, None].expand(t, -1, h, w)
    for name, pred in (("model", M.to_unit_range(pred0[:, M.MATERIAL])), ("b5", b5)):
        per = M.mae_per_channel(pred, gt_mat, fg)  # [T, 3]
        for c, cname in enumerate(M.MATERIAL_NAMES):
            r[f"{cname}_mae_{name}"] = M.frame_average(per[:, c])
        r[f"material_mae_{name}"] = float(np.mean([r[f"{c}_mae_{name}"] for c in M.MATERIAL_NAMES]))
    fg_static = fg[0:1].expand(t, -1, -1)  # static input = frame 0 repeated: its foreground, 3 times
    r["d_static"] = M.pairwise_angular_diversity(static, fg_static)
    r["d_moving"] = M.pairwise_angular_diversity(moving, fg)
    r["static_min_pair_maxdiff"] = M.min_pairwise_max_abs_diff(static)
    r["moving_min_pair_maxdiff"] = M.min_pairwise_max_abs_diff(moving)
    return r


def nanmean(values) -> float:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")


def checks(agg: dict, per_clip: list[dict], k: int) -> list[dict]:
    """Pass/fail rows of the learning and diversity checks from the clip-averaged numbers."""
    a, rows = agg, []

    def row(section, check, value, reference, rule, ok, unit=""):
        rows.append({"section": section, "check": check, "value": value, "reference": reference, "rule": rule,
                     "pass": None if ok is None else bool(ok), "unit": unit})

    nm, b1, b2 = a["normal_mae_model"], a["normal_mae_b1"], a["normal_mae_b2"]
    row("learning", "normals: mean angular error", nm, f"B1 {b1:.2f}°, B2 {b2:.2f}°",
        f"≤ 0.6·B1 ({0.6 * b1:.2f}°) and ≤ 0.8·B2 ({0.8 * b2:.2f}°)",
        M.ratio_rule(nm, b1, 0.6) and M.ratio_rule(nm, b2, 0.8), "°")
    am, b3, b4 = a["albedo_simse_model"], a["albedo_simse_b3"], a["albedo_simse_b4"]
    row("learning", "albedo: si-MSE", am, f"B3 {b3:.5f}, B4 {b4:.5f}",
        f"≤ 0.8·B3 ({0.8 * b3:.5f}) and ≤ 0.8·B4 ({0.8 * b4:.5f})",
        M.ratio_rule(am, b3, 0.8) and M.ratio_rule(am, b4, 0.8))
    mm, b5 = a["material_mae_model"], a["material_mae_b5"]
    per = ", ".join(f"{c} {a[f'{c}_mae_model']:.4f}/{a[f'{c}_mae_b5']:.4f}" for c in M.MATERIAL_NAMES)
    row("learning", "materials: MAE (mean of metallic, specular, roughness)", mm, f"B5 {b5:.4f} ({per}; model/B5)",
        f"≤ 0.9·B5 ({0.9 * b5:.4f})", M.ratio_rule(mm, b5, 0.9))
    sw = a["normal_mae_swapped"]
    row("learning", "conditioning use: normal error with swapped conditioning", sw, f"own {nm:.2f}°",
        f"≥ 1.5·own ({1.5 * nm:.2f}°)", None if math.isnan(sw) else sw >= 1.5 * nm, "°")
    ds, dm = a["d_static"], a["d_moving"]
    diffs = [c["static_min_pair_maxdiff"] for c in per_clip]
    row("diversity", f"static inputs: D_static ({k} seeds)", ds, "", "≥ 1.5° on average",
        None if k < 2 else ds >= 1.5, "°")
    row("diversity", "static inputs: min over clips and seed pairs of max abs(Δ)",
        float(np.min(diffs)) if diffs else math.nan,
        "", "> 1e-3 (no two seeds identical)", None if k < 2 else all(d > 1e-3 for d in diffs))
    wins = [c["d_static"] > c["d_moving"] for c in per_clip]
    share = float(np.mean(wins)) if wins else math.nan
    row("diversity", "motion narrows: share of clips with D_static > D_moving", share, f"{sum(wins)}/{len(wins)} clips",
        "≥ 0.6", None if k < 2 else share >= 0.6)
    row("diversity", "motion narrows: mean D_static vs mean D_moving", ds, f"D_moving {dm:.3f}°",
        "D_static > D_moving", None if k < 2 else ds > dm, "°")
    return rows


# -------------------------------------------------------------------------------------------------------- report
def fmt(v, unit="") -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else (f"{v:.2f}{unit}" if unit == "°" else f"{v:.5g}")
    return str(v)


def table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]


def markdown(info: dict, rows: list[dict], agg: dict, per_clip: list[dict], timing: dict | None,
             notes: list[str]) -> str:
    i, c = info, info["checkpoint"]
    L = ["# DiffMotion checks: learning, diversity, timing", "",
         f"- command: `{i['command']}`", f"- date: {i['date']}", f"- hardware: {i['hardware']}",
         f"- checkpoint: `{i['ckpt']}`: step {c['step']}, created {c['created']}, ema {c['ema']}, "
         f"git {c['git_commit']}, {c['params']:,} parameters",
         f"- config: resolution {c['resolution']}, channels {c['channels']}, blocks {c['blocks']} + "
         f"{c['mid_blocks']} mid, heads {c['heads']}, levels {c['level_types']}, NA kernel {c['na_kernel']}; "
         f"train shift {c['train_shift']}, {c['train_steps']} steps × batch {c['batch_size']}, lr {c['lr']}, "
         f"EMA {c['ema_decay']}; sampling {c['sampling_steps']} steps, shift {c['sampling_shift']}",
         f"- data: held-out `{i['held_out']}` ({i['clips']} of {i['clips_total']} clips), train `{i['train']}` "
         f"({i['train_frames']} distinct frames, foreground share {i['train_fg_share']:.3f})",
         f"- sampling: {i['steps']} DDIM steps, learning check seed 0, diversity seeds {i['seeds']}; "
         f"{i['net_calls']} network calls, {i['net_samples']} sample-evaluations, {i['eval_seconds']:.1f} s", ""]
    res = {None: "n/a", True: "PASS", False: "**FAIL**"}
    L += table(["kind", "check", "value", "reference", "pass rule", "result"],
               [[r["section"], r["check"], fmt(r["value"], r["unit"]), r["reference"], r["rule"], res[r["pass"]]]
                for r in rows])
    L += ["", "## Share of foreground pixels under an angular error (seed 0, averaged over frames and clips)", ""]
    L += table(["threshold", "model", "B1 (0,0,1)", "B2 train mean"],
               [[f"< {t:g}°"] + [f"{agg[f'normal_under_{t:g}_{n}']:.3f}" for n in ("model", "b1", "b2")]
                for t in M.ANGLE_THRESHOLDS])
    if timing:
        t = timing
        L += ["", "## Timing (after warm-up, the checkpoint's DDIM steps, fp32)", ""]
        L += table(["device", "threads", "seeds (one batch)", "DDIM steps", "seconds", "network calls",
                    "sample-evaluations", "s per call"],
                   [[t["device"], t["threads"], t["seeds"], t["steps"], f"{t['seconds']:.2f}", t["calls"],
                     t["samples"], f"{t['seconds'] / max(t['calls'], 1):.3f}"]])
    L += ["", "## Per clip", ""]
    L += table(["clip", "fg px", "normal ° (B1, B2)", "swapped °", "si-MSE (B3, B4)", "material MAE (B5)",
                "D_static °", "D_moving °"],
               [[p["name"], p["fg_pixels"],
                 f"{p['normal_mae_model']:.2f} ({p['normal_mae_b1']:.2f}, {p['normal_mae_b2']:.2f})",
                 fmt(p["normal_mae_swapped"], "°"),
                 f"{p['albedo_simse_model']:.5f} ({p['albedo_simse_b3']:.5f}, {p['albedo_simse_b4']:.5f})",
                 f"{p['material_mae_model']:.4f} ({p['material_mae_b5']:.4f})", fmt(p["d_static"], "°"),
                 fmt(p["d_moving"], "°")] for p in per_clip])
    L += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(L) + "\n"


def jsonable(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


# ------------------------------------------------------------------------------------------------------ evaluate
def pick_clips(n: int, max_clips: int) -> list[int]:
    """All n clip indices, or max_clips evenly spaced ones."""
    if not max_clips or max_clips >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_clips).round().astype(int).tolist()))


def evaluate(system, held: MotionDataset, train: MotionDataset, seeds: list[int], steps: int, batch: int = 0,
             max_clips: int = 0, timing_seeds: int = 10, progress: bool = True) -> dict:
    """Every number of the checks for `system` on the held-out clips (baselines from `train`).

    Returns {"rows", "aggregate", "per_clip", "timing", "notes", "baselines", "picks", "net_calls", "net_samples",
    "eval_seconds"}. Raises ValueError when no held-out clip moves.
    """
    from tqdm import tqdm

    device = next(system.net.parameters()).device
    counter = CallCounter(system.net)
    try:
        base = M.training_baselines(tqdm(train_targets(train), desc="train stats", unit="frame",
                                         disable=not progress))
        picks = pick_clips(len(held), max_clips)
        per_clip, notes = [], []
        t_eval = time.perf_counter()
        k = len(seeds)
        for i in tqdm(picks, desc="held-out clips", unit="clip", disable=not progress):
            item, e = held[(i, 0)], held.entries[i]
            frames, target = item["frames"], item["target"]
            name = f"{e.get('folder', i)}/{e.get('sequence', '?')}/{e.get('frame_group', '?')}"
            if all(torch.equal(frames[0], frames[f]) for f in (1, 2)):
                notes.append(f"clip {name} has 3 identical frames (not moving): skipped")
                continue
            j = partner_index(held.entries, i)
            static = frames[0:1].expand(3, -1, -1, -1)
            conds, item_seeds = [frames] * k + [static] * k, list(seeds) + list(seeds)
            if j is not None:
                conds.append(held[(j, 0)]["frames"])
                item_seeds.append(0)
            if 0 not in seeds:
                conds.append(frames)
                item_seeds.append(0)
            out = sample_all(system, torch.stack(conds), item_seeds, steps, batch, progress)
            moving, stat = out[:k], out[k:2 * k]
            swapped = out[2 * k] if j is not None else None
            pred0 = moving[seeds.index(0)] if 0 in seeds else out[-1]
            r = clip_metrics(pred0, swapped, stat, moving, frames, target, base)
            per_clip.append({"index": i, "name": name, "partner": j, **r})
        eval_seconds = time.perf_counter() - t_eval
        if not per_clip:
            raise ValueError("no moving held-out clips to evaluate")
        eval_calls, eval_samples = counter.calls, counter.samples
        keys = [key for key, v in per_clip[0].items() if isinstance(v, float)]
        agg = {key: nanmean([c[key] for c in per_clip]) for key in keys}
        rows = checks(agg, per_clip, k)

        timing = None
        if timing_seeds > 0:
            t_steps = system.cfg.diffusion.sampling_steps
            frames = held[(picks[0], 0)]["frames"][None].expand(timing_seeds, -1, -1, -1, -1)
            counter.calls = counter.samples = 0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            system.sample(frames.to(device), list(range(timing_seeds)), steps=t_steps, progress=progress)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timing = {"device": str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                               if device.type == "cuda" else ""),
                      "seeds": timing_seeds, "steps": t_steps, "seconds": time.perf_counter() - t0,
                      "calls": counter.calls, "samples": counter.samples, "threads": torch.get_num_threads()}
    finally:
        counter.handle.remove()

    if steps != FAITHFUL_STEPS:
        notes.append(f"sampled with {steps} DDIM steps; the thresholds assume {FAITHFUL_STEPS}, so these numbers "
                     "are indicative only")
    if k != FAITHFUL_SEEDS:
        notes.append(f"{k} seeds for the diversity check (thresholds assume {FAITHFUL_SEEDS})")
    if len(per_clip) < len(held):
        notes.append(f"{len(per_clip)} of {len(held)} held-out clips evaluated (evenly spaced indices {picks})")
    notes += NOTES
    return {"rows": rows, "aggregate": agg, "per_clip": per_clip, "timing": timing, "notes": notes,
            "baselines": base, "picks": picks, "net_calls": eval_calls, "net_samples": eval_samples,
            "eval_seconds": eval_seconds}


NOTES = [
    "Foreground = GT normal length in [0.9, 1.1]; per-frame means over foreground pixels, averaged over the 3 "
    "frames, then over clips. Normal error = angle between the normalised prediction and the GT normal.",
    "B2 / B4 / B5 come from the foreground pixels of every distinct training frame (no augmentation); B2 is the "
    "per-pixel mean normal renormalised, (0,0,1) where no training frame covers the pixel.",
    "si-MSE: per frame and channel, the prediction (in [0, 1]) is scaled by its least-squares factor on the "
    "foreground; with a constant colour (B4) this equals the per-channel foreground variance of the GT albedo.",
    "Conditioning swap: the frames of the next held-out clip of another object, sampled with seed 0, scored "
    "against this clip's GT on this clip's foreground (rule applied to the clip means).",
    "D = mean over seed pairs of the foreground-mean angle between their normal maps (static: frame 0's "
    "foreground).",
    "Per-group validation loss curve: see the run's log.jsonl; not recomputed here.",
]


def write_report(out: str | Path, info: dict, result: dict, cfg) -> tuple[Path, Path]:
    """<out> (markdown) and <out>.json, each written atomically; returns both paths."""
    out = Path(out)
    r, base = result, result["baselines"]
    md = write_text(out, markdown(info, r["rows"], r["aggregate"], r["per_clip"], r["timing"], r["notes"]))
    baselines = {"albedo_mean": base["albedo"].tolist(),
                 "material_mean": dict(zip(M.MATERIAL_NAMES, base["material"].tolist()))}
    js = write_text(out.with_suffix(".json"), json.dumps(jsonable(
        {"info": info, "config": to_dict(cfg), "checks": r["rows"], "aggregate": r["aggregate"],
         "baselines": baselines, "timing": r["timing"], "per_clip": r["per_clip"], "notes": r["notes"]}),
        indent=2, default=str))
    return md, js
