"""Structure from Duplicates, part 2 (Cheng et al., NeurIPS 2023, Sec. 3): one shared object fitted to all N copies in
a single photo, in three stages of one system chosen by `stage`:

    geo  NeuS SDF + proxy colour + proxy instance classifier (+ pose refinement, normal prior, Hessian)
    vis  visibility field supervised by tracing the frozen geometry (shadows between the copies)
    mat  BRDF auto-encoder + spherical-Gaussian lights, re-rendered with the visibility field

Stages chain through the loop: `--init-from <geo run>/model.safetensors --init-map geo.=geo.` (and `vis.=vis.` for
mat). Every export holds the whole scene network, so the last one is all the mesh export needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.core.cli import UserError
from models.core.config import OptimConfig, TrainConfig
from models.core.registry import register_system
from models.core.seeding import seeded_generator
from models.sfd import sg
from models.sfd.fields import ColourConfig, ProxyConfig, SDFConfig
from models.sfd.material import MatConfig, MaterialNet, kl_sparsity, sg_visibility
from models.sfd.rays import DataConfig, PixelRays, analytic_scene, folder_scene
from models.sfd.scene_model import GeoModel, RenderConfig, camera_rays
from models.sfd.visibility import VisConfig, VisibilityNet, cone_directions
from models.systems.base import System

STAGES = ("geo", "vis", "mat")


@dataclass
class GeoLossConfig:
    loss_type: str = "L2"          # colour loss on foreground rays: "L2" | "L1"
    bg_weight: float = 0.5         # colour of background rays pushed to 0
    eikonal: float = 0.1
    mask: float = 0.5
    normal: float = 5.0            # normal prior (only with data.normal_prior)
    normal_encoded: bool = False   # True: compare in the (n+1)/2 encoded space as the original did
    hessian: float = 0.0           # 5e-4 in the original's Hessian ablation
    hessian_iters: int = 0         # > 0: the Hessian term only for the first this many iterations
    distill: float = 10.0          # proxy classifier distillation
    order: float = 50.0            # instance ordering ("segmentation") loss
    proxy_rays: int = 64


@dataclass
class MatLossConfig:
    rgb: float = 1.0
    kl: float = 0.01
    smooth: float = 0.1


@dataclass
class SfdConfig:
    system: str = "sfd"
    stage: str = "geo"
    data: DataConfig = field(default_factory=DataConfig)
    sdf: SDFConfig = field(default_factory=SDFConfig)
    colour: ColourConfig = field(default_factory=ColourConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    vis: VisConfig = field(default_factory=VisConfig)
    mat: MatConfig = field(default_factory=MatConfig)
    geo_loss: GeoLossConfig = field(default_factory=GeoLossConfig)
    mat_loss: MatLossConfig = field(default_factory=MatLossConfig)
    train_pose: bool = False
    pose_lr_scale: float = 1.0
    vis_lr_scale: float = 1.0      # per-stage LR relative to optim.lr (one config can drive all three stages)
    mat_lr_scale: float = 1.0
    demo_res: int = 64
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, ema_decay=0.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100000, batch_size=2048))

    def __post_init__(self):
        from models.core.config import ConfigError

        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.sdf.kind not in ("mlp", "triplane"):
            raise ConfigError(f"sdf.kind must be 'mlp' or 'triplane' (the hash grid needs tinycudann), got "
                              f"{self.sdf.kind!r}")
        d_in = 3 * (2 * self.sdf.multires + 1) + (3 * self.sdf.grid_channels if self.sdf.kind == "triplane" else 0)
        if 0 < self.sdf.skip < self.sdf.layers and self.sdf.hidden <= d_in:
            raise ConfigError(f"sdf.hidden={self.sdf.hidden} must exceed the encoded input ({d_in} dims) for the "
                              f"skip connection")
        if self.data.instances < 1:
            raise ConfigError("data.instances must be >= 1")


class SfdNet(nn.Module):
    def __init__(self, cfg: SfdConfig):
        super().__init__()
        self.geo = GeoModel(cfg.sdf, cfg.colour, cfg.proxy, cfg.render, cfg.data.instances)
        self.vis = VisibilityNet(cfg.vis)
        self.mat = MaterialNet(cfg.mat)


def _masked_mean(x, m):
    m = m.to(x.dtype)
    while m.dim() < x.dim():
        m = m[..., None]
    m = m.expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1)


def _bce(p, y):
    """Binary cross-entropy written out (F.binary_cross_entropy raises on NaN; we want the NaN check to report)."""
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


@register_system("sfd")
class SfdSystem(System):
    Config = SfdConfig
    use_ema = False  # a per-scene optimiser: the raw weights are the result

    def __init__(self, cfg: SfdConfig):
        super().__init__(cfg)
        self.net = SfdNet(cfg)
        train = {"geo": [self.net.geo], "vis": [self.net.vis], "mat": [self.net.mat]}[cfg.stage]
        for p in self.net.parameters():
            p.requires_grad_(False)
        for m in train:
            for p in m.parameters():
                p.requires_grad_(True)
        if cfg.stage == "geo" and not cfg.train_pose:
            self.net.geo.pose_rot.requires_grad_(False)
            self.net.geo.pose_trans.requires_grad_(False)
        self._scene = None

    # ------------------------------------------------------------------------------------------ contract
    def export_state_dict(self):
        """The whole scene network, frozen stages included (the next stage and the mesh export need them)."""
        return dict(self.net.state_dict())

    def load_export(self, state, assign: bool = False):
        own = self.net.state_dict()
        bad = sorted(k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
        if bad:  # checked here: load_state_dict quietly accepts a (1,) tensor for a 0-d one
            raise RuntimeError(f"shape mismatch for {bad[:3]}")
        self.net.load_state_dict(state, strict=True, assign=assign)

    def param_groups(self, lr):
        """Per-group LRs (lr_scale is honoured by the loop); no weight decay on the NeuS sharpness or the poses
        (the original applied AdamW's decay to every parameter)."""
        c, g = self.cfg, self.net.geo
        if c.stage == "geo":
            groups = [{"params": list(g.sdf.parameters()), "lr_scale": 1.0},
                      {"params": list(g.colour.parameters()), "lr_scale": 1.0},
                      {"params": list(g.proxy.parameters()), "lr_scale": 1.0},
                      {"params": [g.variance], "lr_scale": 1.0, "weight_decay": 0.0}]
            if c.train_pose:
                groups.append({"params": [g.pose_rot, g.pose_trans], "lr_scale": c.pose_lr_scale, "weight_decay": 0.0})
        elif c.stage == "vis":
            groups = [{"params": list(self.net.vis.parameters()), "lr_scale": c.vis_lr_scale}]
        else:
            groups = [{"params": list(self.net.mat.parameters()), "lr_scale": c.mat_lr_scale}]
        for grp in groups:
            grp["lr"] = lr * grp["lr_scale"]
        return groups

    def train_dataset(self, split="train", root=None):
        scene = self.scene(root)
        if self.cfg.stage == "geo":
            g = self.net.geo
            with torch.no_grad():
                g.base_pose.copy_(torch.as_tensor(scene.poses, dtype=torch.float32))
                g.scale_matrix.copy_(torch.as_tensor(scene.scale, dtype=torch.float32))
                g.cam_c2w.copy_(torch.as_tensor(scene.c2w, dtype=torch.float32))
                g.cam_intr.copy_(torch.tensor([scene.focal, scene.width, scene.height], dtype=torch.float32))
        return PixelRays(scene, foreground_only=self.cfg.stage != "geo")

    def scene(self, root=None):
        if self._scene is None:
            s = analytic_scene(self.cfg.data) if root is None else folder_scene(Path(root), self.cfg.data)
            if len(s.poses) != self.cfg.data.instances:
                raise UserError(f"the scene has {len(s.poses)} instances but the config says data.instances="
                                f"{self.cfg.data.instances} (set it with --set data.instances={len(s.poses)})")
            self._scene = s
        return self._scene

    def check_start(self):
        self._require_predecessor()

    def _require_predecessor(self):
        c = self.cfg.stage
        if c in ("vis", "mat") and int(self.net.geo.fitted) == 0:
            raise UserError(f"stage '{c}' needs the Geo stage's export: add --init-from <geo run>/model.safetensors "
                            f"--init-map geo.=geo.")
        if c == "mat" and int(self.net.vis.fitted) == 0:
            raise UserError("stage 'mat' needs the Vis stage's export: add --init-from <vis run>/model.safetensors "
                            "--init-map geo.=geo. vis.=vis.")

    def forward(self, batch):
        self._require_predecessor()
        loss, logs = {"geo": self._geo_step, "vis": self._vis_step, "mat": self._mat_step}[self.cfg.stage](batch)
        if not torch.isfinite(loss):
            raise UserError(f"sfd {self.cfg.stage}: the loss became {loss.item()} (terms: "
                            f"{ {k: round(float(v.detach()), 4) for k, v in logs.items()} }); stopped, the last checkpoint "
                            f"in the run folder is kept (try a lower optim.lr)")
        return loss, logs

    # ---------------------------------------------------------------------------------------------- stages
    def _geo_step(self, batch):
        c, L, g = self.cfg, self.cfg.geo_loss, self.net.geo
        rng = self.rng(batch)
        label = batch["label"]
        fg = label > 0
        bg_inst = rng.randint(g.n, 1)[:, 0] if g.n > 1 else torch.zeros_like(label)
        inst = torch.where(fg, label - 1, bg_inst)
        jitter = rng.rand(1)[:, 0] - 0.5 if c.render.perturb else None
        use_hess = L.hessian > 0 and (L.hessian_iters == 0 or int(g.iters) < L.hessian_iters)
        out = g.render(batch["origin"], batch["dirs"], inst, jitter, hessian=use_hess)
        opac = out["opacity"]
        net_mask = (opac > c.render.weight_threshold).detach()
        err = (out["rgb"] - batch["rgb"]).abs() if L.loss_type == "L1" else (out["rgb"] - batch["rgb"]) ** 2
        logs = {"rgb": _masked_mean(err, fg & net_mask), "bg": _masked_mean(out["rgb"] ** 2, ~fg),
                "eikonal": out["eikonal"],
                "mask": _bce(opac.clamp(1e-3, 1 - 1e-4), fg.to(opac.dtype))}
        loss = logs["rgb"] + L.bg_weight * logs["bg"] + L.eikonal * logs["eikonal"] + L.mask * logs["mask"]
        if c.data.normal_prior and "normal_prior" in batch:
            n_cam = out["normal"] @ g.cam_c2w[:3, :3]   # world -> OpenGL camera: R^T n
            prior = batch["normal_prior"]
            if L.normal_encoded:  # the original: both encoded to (n+1)/2 and renormalised there
                n_cam, prior = F.normalize((n_cam + 1) / 2, dim=-1), F.normalize((prior + 1) / 2, dim=-1)
            m = fg & net_mask
            term = 3 * F.smooth_l1_loss(n_cam, prior, reduction="none").mean(-1) + (1 - (n_cam * prior).sum(-1))
            logs["normal"] = _masked_mean(term, m)
            loss = loss + L.normal * 0.05 * logs["normal"]
        if use_hess:
            logs["hessian"] = out["hessian"]
            loss = loss + L.hessian * logs["hessian"]
        sel = fg.nonzero().squeeze(1)[:L.proxy_rays]
        if g.n > 1 and len(sel) and (L.distill or L.order):
            f_hat, g_hat = g.instance_sdfs(out["pts"][sel], out["weights"][sel])
            t = inst[sel][:, None]
            logs["distill"] = F.mse_loss(g_hat, f_hat.detach())
            logs["order"] = (F.relu(f_hat.gather(1, t) - f_hat).mean() + F.relu(g_hat.gather(1, t) - g_hat).mean())
            loss = loss + L.distill * logs["distill"] + L.order * logs["order"]
        with torch.no_grad():
            g.iters += 1
            g.fitted.fill_(1)
            logs["s_val"] = 1 / g.inv_s()
            mse = _masked_mean((out["rgb"].clamp(0, 1) ** (1 / 2.2) - batch["rgb"].clamp(0, 1) ** (1 / 2.2)) ** 2, fg)
            logs["psnr_fg"] = -10 * torch.log10(mse.clamp_min(1e-10))
        return loss, logs

    @torch.no_grad()
    def surface(self, origin, dirs, label):
        """Frozen-geometry surface points/normals of labelled rays (segmentation mode), and the network mask."""
        out = self.net.geo.render(origin, dirs, label - 1, None, geometry_grad=False, colour=False)
        return out, out["opacity"] > self.cfg.render.weight_threshold

    def trace_targets(self, x, normal, u_az, u_pol):
        """Visibility labels (1 = visible) of directions about the normals, by volume-rendering secondary rays from
        the surface through all copies (the instance per sample from the proxy classifier): occluded when the
        opacity exceeds vis.occluded_opacity. near = 0.02 D, far = D with D the scene diameter."""
        g, v, r = self.net.geo, self.cfg.vis, self.cfg.render
        dirs = cone_directions(normal, u_az, u_pol, v.max_sin)                     # P D 3
        _, radius = g.scene_sphere()
        diam = float(2 * radius)
        o = x[:, None].expand_as(dirs).reshape(-1, 3)
        d = dirs.reshape(-1, 3)
        near = torch.full((len(d),), 0.02 * diam)
        opac = g.trace_opacity(o, d, near, near * 50, r.n_coarse, r.n_fine, r.rounds)
        return dirs, (opac <= v.occluded_opacity).long().view(dirs.shape[:2])

    def _vis_step(self, batch):
        rng = self.rng(batch)
        out, m = self.surface(batch["origin"], batch["dirs"], batch["label"])
        d = self.cfg.vis.dirs_per_point
        u = rng.rand(2, d)
        dirs, target = self.trace_targets(out["x_world"], out["normal"], u[:, 0], u[:, 1])
        logits = self.net.vis(out["x_world"][:, None].expand_as(dirs), dirs)
        ce = F.cross_entropy(logits.reshape(-1, 2), target.reshape(-1), reduction="none").view(target.shape)
        mm = m[:, None].expand_as(target)
        loss = _masked_mean(ce, mm)
        self.net.vis.fitted.fill_(1)
        acc = _masked_mean((logits.argmax(-1) == target).float(), mm)
        return loss, {"ce": loss.detach(), "acc": acc, "visible_frac": _masked_mean(target.float(), mm)}

    def shade(self, out, dirs, noise=None):
        """SG re-render of surface points: material at canonical points, visibility from the visibility field."""
        mat = self.net.mat(out["x_canon"], noise)
        light = self.net.mat.light()
        view = -dirs
        vis_d, vis_s = sg_visibility(self.net.vis.visible_prob, out["x_world"], out["normal"], view,
                                     mat["roughness"], light, self.cfg.mat)
        diff, spec = sg.render_sg(out["normal"], view, mat["albedo"], mat["roughness"], self.cfg.mat.specular_albedo,
                                  light, vis_d, vis_s)
        return diff + spec, mat

    def _mat_step(self, batch):
        L = self.cfg.mat_loss
        rng = self.rng(batch)
        out, m = self.surface(batch["origin"], batch["dirs"], batch["label"])
        noise = 0.01 * rng.randn(self.cfg.mat.latent)
        rgb, mat = self.shade(out, batch["dirs"], noise)
        logs = {"rgb_l1": _masked_mean((rgb - batch["rgb"]).abs(), m),
                "kl": kl_sparsity(mat["latent"][m] if m.any() else mat["latent"]),
                "smooth": _masked_mean((mat["albedo"] - mat["albedo_s"]).abs(), m)
                + _masked_mean((mat["roughness"] - mat["roughness_s"]).abs(), m)}
        loss = L.rgb * logs["rgb_l1"] + L.kl * logs["kl"] + L.smooth * logs["smooth"]
        self.net.mat.fitted.fill_(1)
        with torch.no_grad():
            mse = _masked_mean((rgb.clamp(0, 1) ** (1 / 2.2) - batch["rgb"].clamp(0, 1) ** (1 / 2.2)) ** 2, m)
            logs["psnr"] = -10 * torch.log10(mse.clamp_min(1e-10))
        return loss, logs

    # ------------------------------------------------------------------------------------------- inference
    def example_inputs(self):
        return {"res": 12}

    def render_image(self, res: int, seed: int | None = None, chunk: int = 1024, labels=None) -> dict:
        """Full-image render at res x res of the training camera. Rays are assigned by `labels` (H W, 0 = none) when
        given, else per pixel by the proxy classifier at the first surface of the union; `seed` jitters the sample
        position inside each pixel (None = pixel centres)."""
        g = self.net.geo
        focal, w, h = (float(v) for v in g.cam_intr)
        f = focal * res / w
        pix = torch.arange(res * res)
        u, v = (pix % res).float() + 0.5, (pix // res).float() + 0.5
        if seed is not None:
            jit = torch.rand(2, res * res, generator=seeded_generator(seed)) - 0.5
            u, v = u + jit[0], v + jit[1]
        origin, dirs = camera_rays(g.cam_c2w, f, res, res, u, v)
        keys = ("rgb", "opacity", "normal", "depth", "albedo", "roughness", "rgb_sg", "instance")
        acc = {k: [] for k in keys}
        for s in range(0, len(pix), chunk):
            o, d = origin[s:s + chunk], dirs[s:s + chunk]
            inst = self._pick_instances(o, d) if labels is None else \
                (torch.as_tensor(labels).reshape(-1)[s:s + chunk] - 1).clamp_min(0)
            with torch.no_grad():
                out = g.render(o, d, inst, None, geometry_grad=False)
                acc["rgb"].append(out["rgb"])
                acc["opacity"].append(out["opacity"])
                acc["normal"].append(out["normal"] @ g.cam_c2w[:3, :3])
                acc["depth"].append(out["depth"])
                acc["instance"].append(inst.float())
                if int(self.net.mat.fitted):
                    with torch.enable_grad():
                        rgb, mat = self.shade(out, d)
                    acc["rgb_sg"].append(rgb.detach())
                    acc["albedo"].append(mat["albedo"].detach())
                    acc["roughness"].append(mat["roughness"].detach())
        return {k: torch.cat(v).reshape(res, res, -1).squeeze(-1).numpy() for k, v in acc.items() if v}

    @torch.no_grad()
    def _pick_instances(self, origin, dirs):
        """Instance per ray: the copy whose own rendering is most opaque (nearest on ties) — no labels needed."""
        g = self.net.geo
        best = torch.zeros(len(origin), dtype=torch.long)
        best_score = torch.full((len(origin),), -float("inf"))
        for k in range(g.n):
            inst = torch.full((len(origin),), k, dtype=torch.long)
            mids, dists = g.ray_depths(origin, dirs, inst)
            pts = origin[:, None] + dirs[:, None] * mids[..., None]
            sdf = g.sdf_world(pts, inst[:, None].expand(mids.shape))
            hit = (sdf < 0).any(-1)
            first = torch.where(sdf < 0, mids, torch.full_like(mids, float("inf"))).min(-1).values
            score = torch.where(hit, -first, -1e9 - sdf.min(-1).values)
            take = score > best_score
            best[take], best_score[take] = k, score[take]
        return best

    def infer(self, inputs, seeds, **_):
        """{"res": R} -> rgb, opacity, camera-space normal, depth (seed-jittered pixel positions), each [S, R, R, ...];
        after the Mat stage also albedo, roughness and the SG re-render."""
        res = int(inputs.get("res", 64))
        outs = [self.render_image(res, seed) for seed in seeds]
        return {k: np.stack([o[k] for o in outs]).astype(np.float32) for k in outs[0] if k != "instance"}

    def demo(self, out_dir, step):
        from data.io import write_png

        img = self.render_image(self.cfg.demo_res)
        tiles = [np.clip(img["rgb"], 0, 1) ** (1 / 2.2), (img["normal"] + 1) / 2 * img["opacity"][..., None]
                 + (1 - img["opacity"][..., None]), np.repeat(img["opacity"][..., None], 3, -1)]
        if "rgb_sg" in img:
            tiles.append(np.clip(img["rgb_sg"], 0, 1) ** (1 / 2.2))
        path = Path(out_dir) / f"sfd_{self.cfg.stage}_s{step:08d}.png"
        write_png(path, np.clip(np.concatenate(tiles, 1), 0, 1))
        return [path]
