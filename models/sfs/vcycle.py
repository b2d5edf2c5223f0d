"""Guided multiscale patch sampling (Multistable SfS, Han, Zickler & Nishino, NeurIPS 2024): schedules as data, the
guided DDIM run, inject-noise-and-resume (N&R), the V-cycle with LCG and the final p/q fusion, as in the reference
code xrhan/mssfs.

Batching: S seeds x N tiles form one batch [S*N, 3, 16, 16] (sample-major, row-major tiles, see tiling.py). Every random
draw of sample k (initial noise, restart noise, k-means init) comes from its own CPU torch.Generator seeded with seeds[k],
in a fixed order, so a sample's result does not depend on which other seeds share the batch, nor on the device.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from models.diffusion import cosine_alpha_bar, ddim_step, ddim_timesteps_round
from models.sfs.guidance import integrability_loss, seam_loss
from models.sfs.lcg import lighting_consistency
from models.sfs.tiling import PATCH, resize, resize_mask, tile, untile


def _presets():
    """The folder of preset JSON files, shipped as package data (works from a wheel as from a clone)."""
    return resources.files("models.sfs") / "schedules"


@dataclass
class Stage:
    res: int  # square working resolution (multiple of 16)
    eta0: float  # guidance step size at the start of each run of this stage
    start: str = "restart"  # "noise": pure noise through all DDIM steps; "restart": N&R from the previous stage
    guidance_from: int = 0  # first guided index i in this run's (filtered) step list ("g")
    lcg: bool = False  # run LCG after the stage, then re-noise and resume


@dataclass
class Schedule:
    """Everything that defines a sampling run; JSON presets live in models/sfs/schedules/ (vcycle160 = the reference)."""

    name: str = "custom"
    description: str = ""
    stages: list[Stage] = field(default_factory=list)
    timesteps: int = 300  # training T (cosine schedule, Nichol & Dhariwal 2021 eq. 17)
    ddim_steps: int = 50  # round(linspace(0, T-1, n)) reversed (DDIM, Song et al. 2021)
    prev_rule: str = "next"  # "next": step to the next list entry; "t-6": faithful t - T//n target of the reference
    restart_t: int = 232  # N&R level; sampling resumes at the largest list entry <= restart_t
    inner_hi: int = 10  # guidance iterations K per step when t >= inner_switch_t ...
    inner_lo: int = 3  # ... and below it
    inner_switch_t: int = 207
    seam: bool = True  # use L_seam (guidance.seam_loss)
    int_t_max: int = 55  # integrability term (guidance.integrability_loss) active for t <= this
    int_weight: float = 0.5
    decay_t_max: int = 55  # for t <= this, eta /= eta_decay at every inner iteration, cumulative over the run
    eta_decay: float = 1.5
    grad_clamp: float = 5.0  # elementwise clamp of dL/dx_t
    clip_x0: float = 1.0
    lcg: bool = True  # master switch for the stages' LCG flags (ablation B7)
    lcg_min_pixels: int = 10
    lcg_margin: float = 0.1
    lcg_faithful_norm: bool = True  # l / ||l + 1e-4|| quirk (lcg.py)
    fuse_last: int = 3  # fuse the last k stage outputs (see fuse)
    invalid_nz: float | None = -0.1  # mark pixels whose last-stage n_z < this as (-1, -1, -1); None = no marker
    antialias_image: bool = False  # the reference resizes the shading image without a prefilter

    def replace(self, **changes) -> "Schedule":
        return dataclasses.replace(self, **changes)


def preset_names() -> list[str]:
    """Names of the schedule presets shipped with the package."""
    return sorted(f.name[:-5] for f in _presets().iterdir() if f.name.endswith(".json"))


def load_schedule(name_or_path: str | Path) -> Schedule:
    """A preset name (see preset_names) or a JSON path -> Schedule; unknown keys are errors."""
    from models.core.config import from_dict

    path = Path(name_or_path)
    if path.is_file():
        text, where = path.read_text(), path.name
    elif str(name_or_path) in preset_names():
        text = _presets().joinpath(f"{name_or_path}.json").read_text()
        where = f"{name_or_path}.json"
    else:
        raise ValueError(f"unknown schedule '{name_or_path}': not a file, and not a preset "
                         f"({', '.join(preset_names())})")
    sched = from_dict(Schedule, json.loads(text), where=where)
    validate_schedule(sched)
    return sched


def validate_schedule(s: Schedule) -> None:
    """Raise ValueError for schedules that cannot run."""
    if not s.stages:
        raise ValueError(f"schedule '{s.name}' has no stages")
    if s.stages[0].start != "noise":
        raise ValueError(f"schedule '{s.name}': the first stage must start from noise")
    for st in s.stages:
        if st.res % PATCH or st.res < PATCH:
            raise ValueError(f"schedule '{s.name}': resolution {st.res} is not a positive multiple of {PATCH}")
        if st.start not in ("noise", "restart"):
            raise ValueError(f"schedule '{s.name}': stage start must be 'noise' or 'restart', got {st.start!r}")
    if s.prev_rule not in ("next", "t-6"):
        raise ValueError(f"schedule '{s.name}': prev_rule must be 'next' or 't-6'")
    if not 1 <= s.fuse_last <= len(s.stages):
        raise ValueError(f"schedule '{s.name}': fuse_last must be in 1..{len(s.stages)}")


class Sampler:
    """Binds a noise-prediction net f(x_t [B,3,16,16], t [B] long, cond [B,1,16,16]) -> eps to a Schedule.

    precision: "fp32" or "bf16" (autocast of the network only, CUDA only; guidance math stays fp32).
    `calls` counts network evaluations: "forward" (no grad) and "guided" (forward + backward), plus tile totals.
    """

    def __init__(self, net: torch.nn.Module, schedule: Schedule, device: str | torch.device = "cpu",
                 precision: str = "fp32", progress: bool = False):
        self.net, self.s, self.device = net, schedule, torch.device(device)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.bf16 = precision == "bf16" and self.device.type == "cuda"
        self.progress = progress
        self.abar = cosine_alpha_bar(schedule.timesteps).double()
        self.steps = ddim_timesteps_round(schedule.timesteps, schedule.ddim_steps)
        self.calls = {"forward": 0, "guided": 0, "forward_tiles": 0, "guided_tiles": 0}

    # -- diffusion helpers -------------------------------------------------------------------------------------------
    def abar_at(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.abar[t])

    def _target(self, i: int, steps: list[int]) -> int:
        """Timestep the DDIM update moves to from steps[i] (-1 = clean)."""
        if self.s.prev_rule == "t-6":
            return steps[i] - self.s.timesteps // self.s.ddim_steps
        return steps[i + 1] if i + 1 < len(steps) else -1

    def restart_steps(self) -> list[int]:
        return [t for t in self.steps if t <= self.s.restart_t]

    def _eps(self, x: torch.Tensor, t: int, cond: torch.Tensor) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            out = self.net(x, tt, cond)
        key = "guided" if torch.is_grad_enabled() else "forward"
        self.calls[key] += 1
        self.calls[key + "_tiles"] += x.shape[0]
        return out.float()

    def _x0(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        ab = self.abar_at(t)
        return ((x - (1 - ab) ** 0.5 * eps) / ab ** 0.5).clamp(-self.s.clip_x0, self.s.clip_x0)

    def q_sample(self, x0: torch.Tensor, t: int, gens: list[torch.Generator]) -> torch.Tensor:
        """sqrt(abar_t) x0 + sqrt(1 - abar_t) z with z drawn per sample from its own generator (on CPU)."""
        z = per_sample_randn(gens, x0.shape[0] // len(gens), x0.shape[1:]).to(x0.device)
        ab = self.abar_at(t)
        return ab ** 0.5 * x0 + (1 - ab) ** 0.5 * z

    # -- one guided DDIM run ---------------------------------------------------------------------------------------
    def guided_run(self, x: torch.Tensor, cond: torch.Tensor, size: int, eta0: float, steps: list[int],
                   guidance_from: int = 0, mask: torch.Tensor | None = None, desc: str = "") -> torch.Tensor:
        """Denoise tiles x [S*N,3,P,P] over `steps` with seam/integrability guidance on x_t; returns x0-hat at t=0.

        Per guided step: K(t) times {eps = f(x_t); x0 = clip(...); L = sum over samples of per-sample losses on the
        untiled x0; x_t -= eta * clamp(dL/dx_t)}, then one no-grad forward on the guided x_t for the DDIM update.
        mask: optional [1|S, 1, size, size] foreground mask for the losses.
        """
        s = self.s
        guided = eta0 > 0 and (s.seam or s.int_weight > 0)
        eta = float(eta0)
        frozen = [p.requires_grad for p in self.net.parameters()]
        self.net.requires_grad_(False)  # only dL/dx_t is needed; skip weight gradients
        try:
            for i in _progress(range(len(steps)), desc, self.progress):
                t = steps[i]
                if guided and i >= guidance_from:
                    k_iters = s.inner_hi if t >= s.inner_switch_t else s.inner_lo
                    for _ in range(k_iters):
                        xg = x.detach().requires_grad_(True)
                        with torch.enable_grad():
                            normals = untile(self._x0(xg, self._eps(xg, t, cond), t), size)
                            loss = seam_loss(normals, mask) if s.seam else normals.new_zeros(normals.shape[0])
                            if t <= s.int_t_max and s.int_weight > 0:
                                loss = loss + s.int_weight * integrability_loss(normals, mask)
                            if loss.requires_grad:
                                grad = torch.autograd.grad(loss.sum(), xg)[0]
                            else:  # e.g. a single tile: no seams, and t above the integrability range
                                grad = torch.zeros_like(xg)
                        if t <= s.decay_t_max:
                            eta /= s.eta_decay
                        x = (xg - eta * grad.clamp(-s.grad_clamp, s.grad_clamp)).detach()
                with torch.no_grad():
                    eps = self._eps(x, t, cond)
                    x, x0, _ = ddim_step(x, eps, self.abar_at(t), self.abar_at(self._target(i, steps)), "eps",
                                         clip_x0=s.clip_x0, recompute_eps_after_clip=False)
        finally:
            for p, flag in zip(self.net.parameters(), frozen):
                p.requires_grad_(flag)
        return x0.detach()


def expected_calls(schedule: Schedule, seeds: int = 1) -> dict:
    """Network calls of one V-cycle without running it: sequential counts and tile totals.

    vcycle160 gives forward 440 / guided 1702 calls, i.e. 28 361 / 109 248 tile evaluations per seed.
    """
    smp = Sampler(torch.nn.Identity(), schedule)
    out = {"forward": 0, "guided": 0, "forward_tiles": 0, "guided_tiles": 0}

    def add(steps, g, eta0, n_tiles):
        guided = eta0 > 0 and (schedule.seam or schedule.int_weight > 0)
        k = sum((schedule.inner_hi if t >= schedule.inner_switch_t else schedule.inner_lo)
                for i, t in enumerate(steps) if guided and i >= g)
        out["forward"] += len(steps)
        out["guided"] += k
        out["forward_tiles"] += len(steps) * n_tiles * seeds
        out["guided_tiles"] += k * n_tiles * seeds

    for st in schedule.stages:
        n_tiles = (st.res // PATCH) ** 2
        first = smp.steps if st.start == "noise" else smp.restart_steps()
        add(first, st.guidance_from, st.eta0, n_tiles)
        if st.lcg and schedule.lcg:
            add(smp.restart_steps(), 0, st.eta0, n_tiles)
    return out


@dataclass
class VCycleResult:
    normals: torch.Tensor  # [S, 3, R, R] fused, unit length (invalid pixels (-1,-1,-1) when marked; background 0)
    valid: torch.Tensor  # bool [S, R, R]
    stages: list[dict]  # {"label", "res", "normals": [S,3,r,r] raw x0 (not renormalized), "lcg": counts or None}
    calls: dict
    seconds: float
    seeds: list[int]


def per_sample_randn(gens: list[torch.Generator], n: int, shape) -> torch.Tensor:
    """[len(gens)*n, *shape] standard normals; sample k's block comes only from gens[k] (CPU, fp32)."""
    return torch.cat([torch.randn((n, *shape), generator=g) for g in gens])


def image_pyramid(image: torch.Tensor, res: int, antialias: bool = False) -> torch.Tensor:
    """Resize the original [H, W] shading image straight to res x res (bilinear) -> [1, 1, res, res]."""
    x = image.float()[None, None]
    if antialias and x.shape[-1] > res:
        return torch.nn.functional.interpolate(x, size=(res, res), mode="bilinear", align_corners=False, antialias=True)
    return resize(x, res)


def fuse(maps: list[torch.Tensor], invalid_nz: float | None = -0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Fusion: average p = n_x/(n_z+1e-6), q = n_y/(n_z+1e-6) of the given [S,3,r,r] maps at the last map's size.

    Returns unit normals (p, q, 1)/||.|| and a validity mask (False where the last map has n_z < invalid_nz; those
    pixels are set to (-1, -1, -1) as in the reference). No minus sign: p, q is only a gnomonic parameterization.
    """
    size = maps[-1].shape[-1]
    ps, qs = [], []
    for m in maps:
        m = m.float()
        p = m[:, :1] / (m[:, 2:3] + 1e-6)
        q = m[:, 1:2] / (m[:, 2:3] + 1e-6)
        ps.append(resize(p, size))
        qs.append(resize(q, size))
    p, q = torch.stack(ps).mean(0), torch.stack(qs).mean(0)
    n = torch.cat([p, q, torch.ones_like(p)], 1)
    n = n / n.norm(dim=1, keepdim=True)
    valid = torch.ones_like(n[:, 0], dtype=torch.bool)
    if invalid_nz is not None:
        valid = maps[-1][:, 2].float() >= invalid_nz
        n = torch.where(valid[:, None], n, torch.full_like(n, -1.0))
    return n, valid


def run_vcycle(net: torch.nn.Module, image: torch.Tensor, seeds: list[int], schedule: Schedule,
               mask: torch.Tensor | None = None, device: str | torch.device = "cpu", precision: str = "fp32",
               progress: bool = False, sampler: Sampler | None = None) -> VCycleResult:
    """Sample len(seeds) normal maps for one square shading image [H, W] in [0, 1] (the V-cycle).

    mask: optional {0,1} [H, W] foreground (guidance terms and LCG restricted to it; background written as 0).
    """
    validate_schedule(schedule)
    if image.dim() != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"run_vcycle needs a square [H, W] image, got {tuple(image.shape)}")
    t0 = time.perf_counter()
    dev = torch.device(device)
    smp = sampler or Sampler(net, schedule, dev, precision, progress)
    gens = [torch.Generator().manual_seed(int(sd)) for sd in seeds]
    n_s = len(seeds)
    stages, x0, prev = [], None, None
    restart = smp.restart_steps()
    for k, st in enumerate(schedule.stages):
        img = image_pyramid(image.cpu(), st.res, schedule.antialias_image).to(dev)
        n_tiles = (st.res // PATCH) ** 2
        cond = tile(img).repeat(n_s, 1, 1, 1)
        m = None if mask is None else resize_mask(mask.float()[None, None].cpu(), st.res).to(dev)
        if st.start == "noise":
            x = per_sample_randn(gens, n_tiles, (3, PATCH, PATCH)).to(dev)
            steps = smp.steps
        else:
            prev_map = resize(prev.to(dev), st.res)  # bilinear, not renormalized (N&R, as the reference)
            x = smp.q_sample(tile(prev_map), restart[0], gens)
            steps = restart
        x0 = smp.guided_run(x, cond, st.res, st.eta0, steps, st.guidance_from, m, f"stage {k} ({st.res}px)")
        info = None
        if st.lcg and schedule.lcg:
            stages.append({"label": f"{st.res} before LCG", "res": st.res, "normals": untile(x0, st.res).cpu(),
                           "lcg": None})
            lcg = lighting_consistency(x0, img, gens, m, schedule.lcg_min_pixels, schedule.lcg_margin,
                                       schedule.lcg_faithful_norm)
            x = smp.q_sample(lcg.tiles.to(dev), restart[0], gens)
            x0 = smp.guided_run(x, cond, st.res, st.eta0, restart, 0, m, f"stage {k} after LCG")
            info = lcg.counts
        prev = untile(x0, st.res)
        stages.append({"label": f"{st.res}" + (" after LCG" if info is not None else ""), "res": st.res,
                       "normals": prev.cpu(), "lcg": info})
    finals = [d["normals"] for d in stages if "before LCG" not in d["label"]][-schedule.fuse_last:]
    normals, valid = fuse(finals, schedule.invalid_nz)
    if mask is not None:
        fg = resize_mask(mask.float()[None, None].cpu(), normals.shape[-1])[:, 0] > 0.5
        normals = normals * fg[:, None]
        valid = valid & fg
    return VCycleResult(normals, valid, stages, dict(smp.calls), time.perf_counter() - t0, list(seeds))


def _progress(it, desc: str, enable: bool):
    """tqdm when installed and wanted, else the plain iterable."""
    if not enable:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return it
    return tqdm(it, desc=desc, leave=False)
