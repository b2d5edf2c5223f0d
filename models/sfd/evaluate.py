"""Score a fitted SfD scene (an `sfd` export) against the synthetic ground truth of its scene: mask IoU, re-render
PSNR/SSIM, true and encoded normal angle, albedo PSNR raw/aligned, roughness error, env-map error after aligning the
world frames, and Chamfer-L1 / F-score / normal consistency of the exported pile against the GT pile."""
from __future__ import annotations

import numpy as np
import trimesh

from models.sfd import metrics as M
from models.sfd.rays import Scene


def gt_pile(scene: Scene):
    """GT mesh of every copy in the world (object frame -> world by the GT poses)."""
    v, f = scene.gt["mesh"]
    verts, faces = [], []
    for k, p in enumerate(scene.gt["poses"]):
        verts.append(v @ p[:3, :3].T + p[:3, 3])
        faces.append(f + k * len(v))
    return np.concatenate(verts), np.concatenate(faces)


def _apply(m, v):
    return v @ m[:3, :3].T + m[:3, 3]


def object_alignment(system, gt: dict) -> np.ndarray:
    """4x4 similarity from the reconstruction's object frame to the GT object frame (Umeyama on the virtual camera
    centres P_k^-1 C, the same physical point seen from each instance in both)."""
    g = system.net.geo
    poses = g.poses().detach().numpy().astype(np.float64)
    cam = g.cam_c2w.numpy().astype(np.float64)[:3, 3]
    o_pred = np.stack([np.linalg.solve(p, np.r_[cam, 1])[:3] for p in poses])
    o_gt = np.stack([np.linalg.solve(p, np.r_[gt["c2w"][:3, 3], 1])[:3] for p in gt["poses"]])
    s, r, t = _umeyama(o_pred, o_gt)
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = s * r, t
    return m


def object_metrics(system, object_mesh: str, gt: dict, samples: int, seed: int) -> dict:
    """Canonical mesh vs GT object mesh, in the GT object frame. The similarity between the reconstruction's object
    frame and the GT one comes from the virtual cameras: the camera centre seen from each instance, P_k^-1 C, is
    the same physical point in both (Umeyama on the N centres)."""
    g = system.net.geo
    m = object_alignment(system, gt)
    poses = g.poses().detach().numpy().astype(np.float64)
    o_pred = np.stack([np.linalg.solve(p, np.r_[g.cam_c2w.numpy().astype(np.float64)[:3, 3], 1])[:3] for p in poses])
    o_gt = np.stack([np.linalg.solve(p, np.r_[gt["c2w"][:3, 3], 1])[:3] for p in gt["poses"]])
    mesh = trimesh.load(object_mesh, force="mesh", process=False)
    S = g.scale_matrix.numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    pp, pn = M.sample_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), samples, rng)
    pp = _apply(m @ S, pp)
    pn = pn @ m[:3, :3].T
    pn /= np.linalg.norm(pn, axis=1, keepdims=True)
    gv, gf = gt["mesh"]
    gp, gn = M.sample_mesh(gv, gf, samples, rng)
    res = M.surface_metrics(pp, pn, gp, gn, float(np.linalg.norm(gv.max(0) - gv.min(0))))
    res["align_residual"] = float(np.linalg.norm(_apply(m, o_pred) - o_gt, axis=1).mean())
    return res


def evaluate(system, scene: Scene, pile_mesh: str | None = None, samples: int = 20000, seed: int = 0,
             object_mesh: str | None = None) -> dict:
    res = scene.width
    lab = system.render_image(res, labels=scene.labels)      # segmentation mode, as in training
    free = system.render_image(res)                           # instances picked without labels
    fg = scene.labels > 0
    out = {"mask_iou": M.mask_iou(free["opacity"] > system.cfg.render.weight_threshold, fg)}
    union = fg & (lab["opacity"] > system.cfg.render.weight_threshold)
    rgb_key = "rgb_sg" if "rgb_sg" in lab else "rgb"
    pred, gt = M.tonemap(lab[rgb_key]), M.tonemap(scene.rgb)
    out["rgb_source"] = rgb_key
    out["psnr_object"] = M.psnr(pred, gt, fg)
    out["psnr_union"] = M.psnr(pred, gt, union)
    out["ssim_object"] = M.ssim(np.where(fg[..., None], pred, 1.0), np.where(fg[..., None], gt, 1.0))
    gt_d = scene.gt or {}
    if "normal" in gt_d and union.any():
        out["normal_angle_deg"] = M.normal_angle_deg(lab["normal"], gt_d["normal"], union)
        out["normal_angle_encoded_deg"] = M.encoded_normal_angle_deg(lab["normal"], gt_d["normal"], union)
    if "albedo" in lab and "albedo" in gt_d and union.any():
        out["albedo_psnr_raw"], out["albedo_psnr_aligned"] = M.albedo_psnr(lab["albedo"], gt_d["albedo"], union)
    if "roughness" in lab and "roughness" in gt_d and union.any():
        out.update(M.roughness_errors(lab["roughness"], gt_d["roughness"], union))
    poses_pred = system.net.geo.poses().detach().numpy().astype(np.float64)
    if "c2w" in gt_d and "light" in gt_d and int(system.net.mat.fitted):
        light = {k: v.detach().numpy() for k, v in system.net.mat.light().items()}
        # world frames differ by a similarity; its rotation follows from the one camera seen in both
        rot = gt_d["c2w"][:3, :3] @ system.net.geo.cam_c2w.numpy().astype(np.float64)[:3, :3].T
        out.update(M.envmap_error(light, gt_d["light"], rot))
    if object_mesh is not None and "mesh" in gt_d and "poses" in gt_d and "c2w" in gt_d:
        out.update({f"object_{k}": v for k, v in object_metrics(system, object_mesh, gt_d, samples, seed).items()})
    if pile_mesh is not None and "mesh" in gt_d:
        mesh = trimesh.load(pile_mesh, force="mesh", process=False)
        gv, gf = gt_pile(scene)
        rng = np.random.default_rng(seed)
        pv = np.asarray(mesh.vertices)
        if "c2w" in gt_d and "poses" in gt_d:
            # copy k of the exported pile -> GT world: P_gt_k A P_pred_k^-1 (A = object-frame similarity)
            a = object_alignment(system, gt_d)
            nv = len(pv) // len(poses_pred)
            pv = np.concatenate([_apply(gt_d["poses"][k] @ a @ np.linalg.inv(p), pv[k * nv:(k + 1) * nv])
                                 for k, p in enumerate(poses_pred)])
        pp, pn = M.sample_mesh(pv, np.asarray(mesh.faces), samples, rng)
        gp, gn = M.sample_mesh(gv, gf, samples, rng)
        diag = float(np.linalg.norm(gv.max(0) - gv.min(0)))
        out.update(M.surface_metrics(pp, pn, gp, gn, diag))
    return out


def _umeyama(src, dst):
    from models.sfd.poses import umeyama

    return umeyama(src, dst)
