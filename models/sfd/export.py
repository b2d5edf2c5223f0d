"""Mesh and texture export of a fitted SfD scene: iso-surface of the canonical SDF (marching cubes,
Lorensen & Cline 1987, from scikit-image), the largest connected component, xatlas UV unwrap,
baked albedo / roughness / metallic textures (dilated past the chart borders), a GLB and an OBJ+MTL of the canonical
object and of the placed pile, `transforms.json` (object-to-world per instance, scale matrix, camera) and the fitted
SG environment as a lat-long map.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def sdf_grid(sdf_fn, res: int, bound: float, chunk: int = 65536) -> np.ndarray:
    """SDF values at res^3 grid points spanning [-bound, bound]^3 (index order x, y, z)."""
    t = torch.linspace(-bound, bound, res)
    pts = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        vals = torch.cat([sdf_fn(pts[s:s + chunk]) for s in range(0, len(pts), chunk)])
    return vals.reshape(res, res, res).numpy().astype(np.float64)


def marching_cubes(vol: np.ndarray, bound: float):
    """Zero level set of a grid spanning [-bound, bound]^3 as a triangle mesh, faces oriented outwards (towards
    positive SDF): Lorensen & Cline 1987 via scikit-image. Returns (V 3, F 3)."""
    if not (vol.min() < 0 < vol.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    from models.core.optional import require

    measure = require("skimage.measure", feature="SfD mesh export", extra="sfd")
    step = 2 * bound / (vol.shape[0] - 1)
    # with scikit-image's winding, 'descent' gives outward faces for a negative-inside SDF (tested: positive volume)
    verts, faces, _, _ = measure.marching_cubes(vol, level=0.0, spacing=(step,) * 3, gradient_direction="descent")
    return verts.astype(np.float64) - bound, faces.astype(np.int64)


def largest_component(verts, faces):
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda m: len(m.faces))
    return mesh


def unwrap(mesh, texture_res: int):
    """xatlas charts; returns (vertices, faces, uvs) with vertices split along seams."""
    from models.core.optional import require

    xatlas = require("xatlas", feature="SfD texture export", extra="sfd")
    vmap, faces, uvs = xatlas.parametrize(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.uint32))
    return np.asarray(mesh.vertices)[vmap], faces.astype(np.int64), uvs


def rasterise_uv(faces, uvs, verts, res: int):
    """Per texel: the 3D point (barycentric), a coverage mask. Texel centres, v = 0 at the bottom row (OBJ/glTF
    flip handled by the writers: images are stored top row first)."""
    pos = np.zeros((res, res, 3))
    mask = np.zeros((res, res), bool)
    px = uvs * res - 0.5
    for f in faces:
        p = px[f]
        lo, hi = np.floor(p.min(0)).astype(int), np.ceil(p.max(0)).astype(int)
        lo, hi = np.clip(lo, 0, res - 1), np.clip(hi, 0, res - 1)
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
        q = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
        m = np.array([p[1] - p[0], p[2] - p[0]]).T
        det = np.linalg.det(m)
        if abs(det) < 1e-12:
            continue
        bc = np.linalg.solve(m, (q - p[0]).T).T
        w = np.stack([1 - bc.sum(1), bc[:, 0], bc[:, 1]], 1)
        ok = (w >= -1e-3).all(1)
        q, w = q[ok].astype(int), w[ok]
        row = res - 1 - q[:, 1]
        pos[row, q[:, 0]] = w @ verts[f]
        mask[row, q[:, 0]] = True
    return pos, mask


def dilate(img, mask, iters: int = 8):
    """Grow texture values into empty texels (so bilinear lookups at chart borders do not bleed background)."""
    import cv2

    img, mask = img.copy(), mask.copy()
    for _ in range(iters):
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        new = grown & ~mask
        if not new.any():
            break
        acc = cv2.blur(img * mask[..., None], (3, 3)).reshape(img.shape)
        cnt = cv2.blur(mask.astype(np.float64), (3, 3))[..., None]
        img[new] = (acc / np.maximum(cnt, 1e-9))[new]
        mask = grown
    return img


def sg_envmap(light: dict, height: int = 64, width: int = 128) -> np.ndarray:
    from models.sfd import scene_layout as L

    light = {k: np.asarray(v.detach().cpu() if torch.is_tensor(v) else v, np.float64) for k, v in light.items()}
    light["axis"] = light["axis"] / np.linalg.norm(light["axis"], axis=1, keepdims=True)
    return L.eval_light(light, L.latlong_directions(height, width)).astype(np.float32)


def write_obj(folder: Path, name: str, verts, uvs, faces, has_texture: bool):
    from data.io import write_text

    lines = [f"mtllib {name}.mtl", "usemtl sfd"] + [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in verts]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in uvs]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    write_text(folder / f"{name}.obj", "\n".join(lines) + "\n")
    mtl = ["newmtl sfd", "Kd 1 1 1", "Ka 0 0 0", "Ks 0 0 0"]
    if has_texture:
        mtl += ["map_Kd albedo.png", "map_Pr roughness.png", "map_Pm metallic.png"]
    write_text(folder / f"{name}.mtl", "\n".join(mtl) + "\n")


def write_glb(path: Path, verts, uvs, faces, albedo_srgb8, mr_rgb8):
    """glTF 2.0 binary with a PBR metallic-roughness material (roughness in G, metallic in B of one texture)."""
    import trimesh
    from PIL import Image

    from data.io import atomic_write

    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(albedo_srgb8),
                                              metallicRoughnessTexture=Image.fromarray(mr_rgb8),
                                              metallicFactor=1.0, roughnessFactor=1.0)
    mesh = trimesh.Trimesh(verts, faces, visual=trimesh.visual.TextureVisuals(uv=uvs, material=mat), process=False)
    with atomic_write(path) as tmp:
        Path(tmp).write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(mesh)))


def export_scene(system, out: Path, mesh_res: int = 128, texture_res: int = 512, bound: float | None = None,
                 progress: bool = False) -> dict:
    """Write the export folder; returns a summary (vertex/face counts, texture coverage, files)."""
    from tqdm import tqdm

    from data.io import write_npy, write_png, write_text

    out = Path(out)
    g = system.net.geo
    bound = bound or system.cfg.render.bound
    steps = tqdm(total=5, desc="sfd export", disable=not progress)
    vol = sdf_grid(lambda p: g.sdf.sdf(p)[..., 0], mesh_res, bound)
    steps.update()
    verts, faces = marching_cubes(vol, bound)
    if len(faces) == 0:
        from models.core.cli import UserError

        raise UserError("the SDF has no zero level set inside the bound (geometry not fitted?)")
    mesh = largest_component(verts, faces)
    steps.update()
    v_uv, f_uv, uvs = unwrap(mesh, texture_res)
    steps.update()
    pos, cover = rasterise_uv(f_uv, uvs, v_uv, texture_res)
    pts = torch.as_tensor(pos[cover], dtype=torch.float32)
    albedo = np.zeros((texture_res, texture_res, 3))
    rough = np.full((texture_res, texture_res, 1), 0.5)
    metal = np.zeros((texture_res, texture_res, 1))
    with torch.no_grad():
        if int(system.net.mat.fitted):
            mat = system.net.mat(pts)
            albedo[cover], rough[cover] = mat["albedo"].numpy(), mat["roughness"].numpy()
            metal[cover] = mat["metallic"].numpy()
        else:  # Geo/Vis only: the proxy albedo branch at the surface normal
            with torch.enable_grad():
                p = pts.clone().requires_grad_(True)
                s, feat = g.sdf(p)
                n = torch.nn.functional.normalize(torch.autograd.grad(s.sum(), p)[0], dim=-1)
            albedo[cover] = torch.sigmoid(g.colour.albedo(torch.cat([pts, n, feat.detach()], -1))).numpy()
    albedo, rough, metal = (dilate(t, cover) for t in (albedo, rough, metal))
    steps.update()
    albedo8 = np.round(np.clip(albedo, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    write_png(out / "albedo.png", albedo8)
    write_png(out / "roughness.png", np.round(np.clip(rough[..., 0], 0, 1) * 255).astype(np.uint8))
    write_png(out / "metallic.png", np.round(np.clip(metal[..., 0], 0, 1) * 255).astype(np.uint8))
    mr = np.stack([np.zeros_like(rough[..., 0]), rough[..., 0], metal[..., 0]], -1)
    mr8 = np.round(np.clip(mr, 0, 1) * 255).astype(np.uint8)
    write_obj(out, "object", v_uv, uvs, f_uv, True)
    write_glb(out / "object.glb", v_uv, uvs, f_uv, albedo8, mr8)
    # the pile: each instance's copy placed by object-to-world P_k and the scale matrix S (world = P_k S x_canon)
    poses = g.poses().detach().numpy().astype(np.float64)
    S = g.scale_matrix.numpy().astype(np.float64)
    pile_v, pile_f, pile_uv = [], [], []
    for k, p in enumerate(poses):
        m = p @ S
        pile_v.append(v_uv @ m[:3, :3].T + m[:3, 3])
        pile_f.append(f_uv + k * len(v_uv))
        pile_uv.append(uvs)
    pile_v, pile_f, pile_uv = np.concatenate(pile_v), np.concatenate(pile_f), np.concatenate(pile_uv)
    write_obj(out, "pile", pile_v, pile_uv, pile_f, True)
    write_glb(out / "pile.glb", pile_v, pile_uv, pile_f, albedo8, mr8)
    focal, w, h = (float(v) for v in g.cam_intr)
    write_text(out / "transforms.json", json.dumps({
        "convention": "world = object_to_world @ scale_matrix @ x_canon; camera OpenGL camera-to-world",
        "scale_matrix": S.tolist(),
        "instances": [{"index": k, "object_to_world": p.tolist(), "mesh_to_world": (p @ S).tolist()}
                      for k, p in enumerate(poses)],
        "camera": {"camera_to_world": g.cam_c2w.numpy().tolist(), "focal": focal, "width": int(w), "height": int(h),
                   "principal_point": [w / 2, h / 2]},
        "envmap": "envmap.npy (linear lat-long, z up, rows polar angle from +z, columns azimuth +pi..-pi)"},
        indent=1) + "\n")
    env = sg_envmap(system.net.mat.light())
    write_npy(out / "envmap.npy", env)
    write_png(out / "envmap.png", np.clip(env / max(float(np.percentile(env, 99)), 1e-6), 0, 1) ** (1 / 2.2))
    steps.update()
    steps.close()
    a, b, c = uvs[f_uv[:, 0]], uvs[f_uv[:, 1]], uvs[f_uv[:, 2]]
    e1, e2 = b - a, c - a
    chart_area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum() * texture_res ** 2
    summary = {"vertices": int(len(v_uv)), "faces": int(len(f_uv)), "components_kept": 1,
               "watertight": bool(mesh.is_watertight), "atlas_fill": float(cover.mean()),
               "chart_coverage": float(min(cover.sum() / max(chart_area, 1.0), 1.0)),
               "mesh_res": mesh_res, "texture_res": texture_res, "instances": len(poses)}
    write_text(out / "export.json", json.dumps(summary, indent=1) + "\n")
    return summary


def turntable(glb: Path, out_png: Path, views: int = 4, size: int = 160):
    """A small preview: the exported textured mesh seen from `views` azimuths (matplotlib, flat shading by the baked
    albedo x a head light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import trimesh
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from data.io import atomic_write

    mesh = trimesh.load(glb, force="mesh")
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    colours = np.full((len(f), 3), 0.8)
    tex = getattr(getattr(mesh.visual, "material", None), "baseColorTexture", None)
    if tex is not None and getattr(mesh.visual, "uv", None) is not None:  # albedo at each face's uv centroid
        img = np.asarray(tex.convert("RGB"), np.float64) / 255
        uv = mesh.visual.uv[f].mean(1)
        px = np.clip((uv[:, 0] * img.shape[1]).astype(int), 0, img.shape[1] - 1)
        py = np.clip(((1 - uv[:, 1]) * img.shape[0]).astype(int), 0, img.shape[0] - 1)
        colours = img[py, px]
    if len(f) > 20000:  # keep the preview quick
        keep = np.random.default_rng(0).choice(len(f), 20000, replace=False)
        f, colours = f[keep], colours[keep]
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    fig = plt.figure(figsize=(views * size / 80, size / 80), dpi=80)
    lim = np.abs(v).max()
    for i in range(views):
        az = 360 * i / views
        ax = fig.add_subplot(1, views, i + 1, projection="3d")
        a, e = np.radians(az), np.radians(20)
        eye = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
        shade = np.clip(np.abs(normals @ eye), 0.2, 1)[:, None]
        ax.add_collection3d(Poly3DCollection(v[f], facecolors=np.clip(colours * shade, 0, 1), linewidths=0))
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim))
        ax.view_init(elev=20, azim=az)
        ax.set_axis_off()
    with atomic_write(out_png) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return out_png
