"""The SfD scene: one shared canonical SDF placed N times in the world by x_canon = S^-1 P_k^-1 x_world (Cheng et al.,
NeurIPS 2023, Sec. 3.1), rendered with NeuS along rays assigned to one instance each, plus the proxy classifier that
picks an instance per 3D point on unlabelled (shadow) rays.

Units: the network outputs an SDF in canonical units; f_world = r * f_net(x_canon) with r the scale of S, so the
eikonal term |grad_canon f_net| = 1 makes f_world a world-unit distance and grad_world f = R_k grad_canon f_net.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.sfd import neus
from models.sfd.fields import ColourConfig, ProxyClassifier, ProxyColour, ProxyConfig, SDFConfig, SDFNet


@dataclass
class RenderConfig:
    n_coarse: int = 32
    n_fine: int = 32
    rounds: int = 4
    perturb: bool = True
    variance_init: float = 0.3      # s = exp(10 v)
    weight_threshold: float = 0.01  # network mask: opacity > this
    bound: float = 1.0              # canonical radius that holds the object


def rodrigues(v: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) from axis-angle vectors (N, 3) (exponential map, smooth at 0)."""
    theta = v.norm(dim=-1, keepdim=True)
    k = v / theta.clamp_min(1e-8)
    kx = torch.zeros(v.shape[0], 3, 3, dtype=v.dtype, device=v.device)
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx = kx - kx.transpose(1, 2)
    s, c = theta.sin()[..., None], theta.cos()[..., None]
    small = (theta < 1e-6)[..., None]
    vx = torch.zeros_like(kx)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(kx)
    full = eye + s * kx + (1 - c) * kx @ kx
    return torch.where(small, eye + vx, full)


class GeoModel(nn.Module):
    """SDF + proxy colour + NeuS sharpness + proxy classifier + (optional) pose refinement, and the scene buffers
    (poses, scale matrix, camera) that later stages and the export read."""

    def __init__(self, sdf: SDFConfig, colour: ColourConfig, proxy: ProxyConfig, render: RenderConfig, n: int):
        super().__init__()
        self.rcfg = render
        self.sdf = SDFNet(sdf)
        self.colour = ProxyColour(colour, sdf.feature)
        self.variance = nn.Parameter(torch.tensor(render.variance_init))
        self.proxy = ProxyClassifier(proxy)
        self.pose_rot = nn.Parameter(torch.zeros(n, 3))   # axis-angle refinement, right-multiplied (object frame)
        self.pose_trans = nn.Parameter(torch.zeros(n, 3))
        self.register_buffer("base_pose", torch.eye(4).repeat(n, 1, 1))
        self.register_buffer("scale_matrix", torch.eye(4))
        self.register_buffer("cam_c2w", torch.eye(4))
        self.register_buffer("cam_intr", torch.tensor([1.0, 1.0, 1.0]))  # focal px, width, height
        self.register_buffer("iters", torch.zeros((), dtype=torch.int64))  # Geo iterations done (coarse-to-fine)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.int64))  # 1 once a Geo stage has trained

    # ------------------------------------------------------------------------------------------- placement
    @property
    def n(self) -> int:
        return self.base_pose.shape[0]

    def poses(self) -> torch.Tensor:
        """Rigid object-to-world poses (N, 4, 4), refined; instance 0 is kept fixed (it fixes the world gauge)."""
        keep = torch.ones(self.n, 1, device=self.pose_rot.device)
        keep[0] = 0
        delta = torch.eye(4, device=self.pose_rot.device).repeat(self.n, 1, 1)
        delta[:, :3, :3] = rodrigues(self.pose_rot * keep)
        delta[:, :3, 3] = self.pose_trans * keep
        return self.base_pose @ delta

    def radius(self) -> torch.Tensor:
        return self.scale_matrix[0, 0]

    def instance_frames(self):
        """(R_k (N,3,3), origin of instance k's canonical frame in the world (N,3))."""
        p = self.poses()
        c = self.scale_matrix[:3, 3]
        return p[:, :3, :3], p[:, :3, :3] @ c + p[:, :3, 3]

    def scene_sphere(self):
        _, centres = self.instance_frames()
        centre = centres.mean(0)
        return centre, (centres - centre).norm(dim=-1).max() + self.radius() * self.rcfg.bound

    def to_canon(self, x, inst):
        """World points x (..., 3) of instance ids inst (...) -> canonical points; also each point's R_k."""
        rot, centre = self.instance_frames()
        r = rot[inst]
        x_c = torch.einsum("...ji,...j->...i", r, x - centre[inst]) / self.radius()
        return x_c, r

    def progress(self) -> float:
        cfg = self.sdf.cfg
        return float(min(max((int(self.iters) - cfg.c2f_start) / max(cfg.c2f_window, 1), 0.0), 1.0))

    def sdf_world(self, x, inst):
        x_c, _ = self.to_canon(x, inst)
        return self.radius() * self.sdf.sdf(x_c, self.progress())[..., 0]

    def sdf_proxy_pick(self, x):
        """Union SDF approximated with one real SDF evaluation: the instance argmin_k g(T_k^-1 x) of the proxy."""
        n = self.n
        inst_all = torch.arange(n, device=x.device).view(n, *([1] * (x.dim() - 1))).expand(n, *x.shape[:-1])
        x_c, _ = self.to_canon(x.expand(n, *x.shape), inst_all)
        pick = self.proxy(x_c)[..., 0].argmin(0)
        return self.sdf_world(x, pick), pick

    # --------------------------------------------------------------------------------------------- render
    def inv_s(self):
        return torch.exp(10 * self.variance).clamp(1e-6, 1e6)

    def ray_depths(self, origin, dirs, inst, jitter=None):
        centre, radius = self.scene_sphere()
        near, far, _ = neus.sphere_near_far(origin, dirs, centre, radius)
        inst_s = inst[:, None]
        r = self.rcfg
        z = neus.hierarchical_depths(lambda p: self.sdf_world(p, inst_s.expand(p.shape[:-1])), origin, dirs, near,
                                     far, lambda p: ((p - centre).norm(dim=-1) < radius), r.n_coarse, r.n_fine,
                                     r.rounds, jitter)
        return neus.section_midpoints(z, far, r.n_coarse)

    def render(self, origin, dirs, inst, jitter=None, geometry_grad: bool = True, hessian: bool = False,
               colour: bool = True) -> dict:
        """NeuS rendering of rays (R, 3) through instances inst (R,). With geometry_grad False the geometry is
        treated as frozen (normals by autograd, then detached)."""
        mids, dists = self.ray_depths(origin, dirs, inst, jitter)
        pts = origin[:, None] + dirs[:, None] * mids[..., None]              # R S 3
        inst_s = inst[:, None].expand(mids.shape)
        with torch.set_grad_enabled(True):
            x_c, rot = self.to_canon(pts, inst_s)
            if not geometry_grad:
                x_c = x_c.detach()
            x_c.requires_grad_(True)
            sdf_c, feat = self.sdf(x_c, self.progress())
            grad_c = torch.autograd.grad(sdf_c, x_c, torch.ones_like(sdf_c), create_graph=geometry_grad)[0]
            hess = None
            if hessian and geometry_grad:
                hess = torch.autograd.grad(grad_c.sum(-1), x_c, torch.ones_like(sdf_c[..., 0]),
                                           create_graph=True)[0]
        if not geometry_grad:
            sdf_c, feat, grad_c = sdf_c.detach(), feat.detach(), grad_c.detach()
        sdf = self.radius() * sdf_c[..., 0]
        n_world = torch.einsum("...ij,...j->...i", rot, grad_c)
        cos = (dirs[:, None] * n_world).sum(-1)
        inv_s = self.inv_s() if geometry_grad else self.inv_s().detach()
        alpha = neus.neus_alpha(sdf, cos, dists, inv_s)
        w = neus.render_weights(alpha)
        centre, radius = self.scene_sphere()
        inside = ((pts - centre).norm(dim=-1) < radius).to(w.dtype)
        n_unit = torch.nn.functional.normalize(n_world, dim=-1) * inside[..., None]
        out = {"weights": w, "opacity": w.sum(-1), "depth": (w * mids).sum(-1),
               "x_world": (w[..., None] * pts).sum(1), "x_canon": (w[..., None] * x_c).sum(1),
               "normal": torch.nn.functional.normalize((w[..., None] * n_unit).sum(1), dim=-1),
               "pts": pts.detach()}
        in_eik = (x_c.detach().norm(dim=-1) < 1.2 * self.rcfg.bound).to(w.dtype)
        out["eikonal"] = ((grad_c.norm(dim=-1) - 1) ** 2 * in_eik).sum() / in_eik.sum().clamp_min(1)
        if hess is not None:
            out["hessian"] = ((w[..., None] * hess).sum(1).sum(-1).abs()).mean()
        if colour:
            n_c = torch.nn.functional.normalize(grad_c, dim=-1)
            rgb = self.colour(x_c, n_c, pts - centre, dirs[:, None].expand_as(pts), n_unit, feat)
            out["rgb"] = (w[..., None] * rgb).sum(1)
        return out

    def instance_sdfs(self, pts, weights):
        """Per-ray vectors over all instances (Sec. 3.5): real SDF f_hat and proxy g_hat reduced along each ray with
        the (detached) NeuS weights. pts (R, S, 3) -> (R, N) each."""
        n = self.n
        w = weights.detach()
        inst = torch.arange(n, device=pts.device).view(n, 1, 1).expand(n, *pts.shape[:2])
        x_c, _ = self.to_canon(pts.expand(n, *pts.shape), inst)
        f = self.radius() * self.sdf.sdf(x_c, self.progress())[..., 0]    # N R S
        g = self.radius() * self.proxy(x_c)[..., 0]
        return (f * w).sum(-1).T, (g * w).sum(-1).T

    @torch.no_grad()
    def trace_opacity(self, origin, dirs, near, far, n_coarse: int, n_fine: int, rounds: int):
        """Opacity of secondary rays through the union of all copies, the instance per sample chosen by the proxy
        classifier (no gradient; alphas from SDF differences at the learned sharpness)."""
        sdf_fn = lambda p: self.sdf_proxy_pick(p)[0]  # noqa: E731
        z = neus.hierarchical_depths(sdf_fn, origin, dirs, near, far, lambda p: torch.ones(p.shape[:-1]),
                                     n_coarse, n_fine, rounds)
        pts = origin[:, None] + dirs[:, None] * z[..., None]
        w = neus.upsample_weights(z, sdf_fn(pts), float(self.inv_s()), torch.ones_like(z[:, :-1]))
        return w.sum(-1)


def camera_rays(c2w: torch.Tensor, focal: float, width: int, height: int, u: torch.Tensor, v: torch.Tensor):
    """World rays through continuous pixel coordinates (u, v) (pixel centres at +0.5; principal point W/2, H/2):
    OpenCV K^-1 [u, v, 1], flipped to OpenGL by diag(1, -1, -1), rotated by the c2w rotation."""
    d_cam = torch.stack([(u - width / 2) / focal, -(v - height / 2) / focal, -torch.ones_like(u)], -1)
    d = torch.nn.functional.normalize(d_cam @ c2w[:3, :3].T, dim=-1)
    return c2w[:3, 3].expand_as(d), d


def angle_deg(a, b):
    return torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1, 1)))
