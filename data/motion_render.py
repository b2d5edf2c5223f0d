"""Scene sampling and rendering of DiffMotion sequences (the reference's on-disk layout; our own scene recipe).

One sequence = one textured object, 5 frames rotating about the world's vertical axis by a constant step. Two backends
produce identical files: Mitsuba 3 (path tracing + AOV passes for the ground truth) and a NumPy sphere tracer over
analytic shapes (Lambertian + normalised Blinn-Phong), used for tests and quick CPU data. Ground-truth conventions:
camera-space normals x right / y up / z toward the viewer stored as (n+1)/2; albedo sRGB; metallic,
specular, roughness linear greyscale; every GT map is 0 on background (pixel coverage < 0.5).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from data import motion_shapes as shp
from data.io import write_png, write_text

FRAMES = 5
CLIP_FRAMES = ((0, 1, 2), (2, 3, 4))  # two clips per sequence sharing frame 2 (the reference pointer file)
MODALITIES = ("rgb", "normal", "albedo", "metallic", "specular", "roughness")


# ----------------------------------------------------------------------------------------------------------- layout
def frame_file(i: int, f: int, modality: str) -> str:
    return f"{i}_motion_{f}_{modality}.png"


def meta_file(i: int) -> str:
    """Written last, atomically: its presence (plus all 30 PNGs) marks sequence i as complete."""
    return f"{i}_motion_meta.json"


def sequence_files(i: int) -> list[str]:
    return [frame_file(i, f, m) for f in range(FRAMES) for m in MODALITIES]


def sequence_status(obj_dir: Path, i: int) -> str:
    """'complete', 'partial' (some files, a temp folder, or a marker without all PNGs) or 'absent'."""
    obj_dir = Path(obj_dir)
    if (obj_dir / meta_file(i)).is_file() and all((obj_dir / n).is_file() for n in sequence_files(i)):
        return "complete"
    if any(obj_dir.glob(f"{i}_motion_*")) or any(obj_dir.glob(f".tmp_{i}_*")):
        return "partial"
    return "absent"


def _clear_sequence(obj_dir: Path, i: int) -> None:
    (obj_dir / meta_file(i)).unlink(missing_ok=True)  # un-commit first, so a crash below still reads as partial
    for pat in (f"{i}_motion_*", f".{i}_motion_*"):  # the latter: a temp file left by an interrupted atomic write
        for p in obj_dir.glob(pat):
            p.unlink()
    for p in obj_dir.glob(f".tmp_{i}_*"):
        shutil.rmtree(p, ignore_errors=True)


def scan_sequences(root: str | Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(complete, partial) lists of (object folder, sequence index) under a dataset root."""
    complete, partial = [], []
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        idx = {int(m.group(1)) for n in os.listdir(d) if (m := re.match(r"^\.?(?:tmp_)?(\d+)_", n))}
        for i in sorted(idx):
            st = sequence_status(d, i)
            (complete if st == "complete" else partial).append((d.name, i))
    return complete, partial


def clip_entries(folder: str, i: int) -> list[dict]:
    """The two pointer entries of one sequence; paths are relative to the dataset root."""
    return [{"folder": folder, "sequence": i, "frame_group": g, "frames": list(fr),
             "paths": [{m: f"{folder}/{frame_file(i, f, m)}" for m in MODALITIES} for f in fr]}
            for g, fr in enumerate(CLIP_FRAMES)]


def build_pointer(root: str | Path, pointer: str = "clips.json") -> list[dict]:
    """Rewrite <root>/<pointer> from the complete sequences only; returns the entries."""
    complete, _ = scan_sequences(root)
    entries = [e for folder, i in complete for e in clip_entries(folder, i)]
    write_text(Path(root) / pointer, json.dumps(entries, indent=1))
    return entries


# ------------------------------------------------------------------------------------------------------ scene specs
def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def sample_scene(seed: int, obj: int, seq: int, *, held_out: bool = False, backend: str = "mitsuba",
                 families: tuple[str, ...] | None = None, user_meshes: tuple[str, ...] = (), mesh_fraction: float = 0.5) -> dict:
    """JSON scene description of sequence `seq` of object `obj`, a pure function of its arguments.

    The shape depends on (seed, split, obj) only; texture, material, light, camera and motion on (seed, split, obj, seq).
    Held-out scenes draw from a disjoint seed stream, so their shapes, textures and env maps are all unseen.
    """
    split = int(held_out)
    orng = _rng(seed, split, 1, obj)
    fams = families or (shp.MESH_FAMILIES if backend == "mitsuba" else shp.SDF_FAMILIES)
    shape = {"family": str(orng.choice(fams)), "seed": int(orng.integers(2**31))}
    if user_meshes and backend == "mitsuba" and orng.random() < mesh_fraction:
        shape = {"family": "file", "file": str(user_meshes[int(orng.integers(len(user_meshes)))]), "seed": shape["seed"]}
    r = _rng(seed, split, 2, obj, seq)
    fov = float(r.uniform(30, 40))
    fill = r.uniform(0.65, 0.85)  # projected bounding-sphere radius / half frame
    return {
        "folder": f"obj_{obj:05d}", "sequence": seq, "seed": seed, "held_out": bool(held_out), "backend": backend,
        "shape": shape,
        "texture_seed": int(r.integers(2**31)), "material_seed": int(r.integers(2**31)),
        "light": {"kind": str(r.choice(["sky", "studio", "area"], p=[0.5, 0.3, 0.2])), "seed": int(r.integers(2**31)),
                  "exposure": float(r.uniform(0.8, 1.3))},
        "camera": {"fov": fov, "distance": float(1 / np.sin(np.arctan(fill * np.tan(np.radians(fov / 2))))),
                   "elevation": float(r.uniform(-5, 30))},
        "motion": {"theta0_deg": float(r.uniform(0, 360)), "dtheta_deg": float(r.uniform(2, 6) * r.choice([-1, 1]))},
    }


def camera_basis(cam: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(origin, right, up, forward) of a camera looking at the origin; image right = `right`, image up = `up`."""
    e = np.radians(cam["elevation"])
    o = cam["distance"] * np.array([0.0, np.sin(e), np.cos(e)])
    f = -o / np.linalg.norm(o)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    return o, r, np.cross(r, f), f


def scene_assets(spec: dict, tex_size: int = 256) -> dict:
    """Textures, material maps and lights of a scene spec (the geometry is built by each backend)."""
    tr, mr, lr = _rng(spec["texture_seed"]), _rng(spec["material_seed"]), _rng(spec["light"]["seed"])
    base, tex_family = shp.make_base_color(tr, size=tex_size)
    if mr.random() < 0.5:
        metallic, minfo = np.zeros((tex_size, tex_size), np.float32), {"value": 0.0}
    else:
        metallic, minfo = shp.make_param_map(mr, 0.0, 1.0, 0.3, tex_size)
    roughness, rinfo = shp.make_param_map(mr, 0.05, 1.0, 0.3, tex_size)
    specular = float(mr.uniform(0.0, 1.0))  # mitsuba's principled `specular` is a scalar, so constant per object
    kind = spec["light"]["kind"]
    env, light = shp.make_environment(lr, kind="sky" if kind == "area" else kind)
    areas = []
    if kind == "area":  # dim sky + 1-2 rectangular lights on the camera's side
        env = env * 0.3
        light = {"kind": "area", "lights": [], "sky": [0.3 * x for x in light["sky"]], "ground": [0.3 * x for x in light["ground"]]}
        for _ in range(int(lr.integers(1, 3))):
            el, az = np.radians(lr.uniform(15, 70)), np.radians(lr.uniform(-100, 100))
            d = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
            dist, size, irr = lr.uniform(3, 5), lr.uniform(0.6, 2.0), lr.uniform(1.5, 3.0)
            areas.append({"pos": (d * dist).tolist(), "size": size, "radiance": irr * dist**2 / size**2})
            light["lights"].append({"dir": d.tolist(), "irradiance": [irr] * 3})
    exp = spec["light"]["exposure"]
    info = {"texture": tex_family, "metallic": minfo, "roughness": rinfo, "specular": round(specular, 4), "light": light}
    return {"base": base, "metallic": metallic, "roughness": roughness, "specular": specular, "env": env * exp,
            "areas": [{**a, "radiance": a["radiance"] * exp} for a in areas], "light": light, "exposure": exp, "info": info}


# --------------------------------------------------------------------------------------------------- frame encoding
def encode_frame(cov, rgb, albedo, normal_world, metallic, specular, roughness, basis) -> dict[str, np.ndarray]:
    """Coverage-normalised float maps -> the six uint8 images of one frame (GT background = 0)."""
    _, r, u, f = basis
    fg = cov >= 0.5
    n = np.stack([normal_world @ r, normal_world @ u, -(normal_world @ f)], -1)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
    q = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    out = {"rgb": q(shp.linear_to_srgb(rgb)), "normal": q((n + 1) / 2), "albedo": q(shp.linear_to_srgb(albedo)),
           "metallic": q(metallic), "specular": q(np.broadcast_to(specular, cov.shape)), "roughness": q(roughness)}
    for k in MODALITIES[1:]:
        out[k][~fg] = 0
    return out


# ------------------------------------------------------------------------------------------------- NumPy backend
def _lookup(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup, periodic in u, clamped in v (row = v)."""
    S = tex.shape[0]
    x, y = uv[:, 0] * S - 0.5, np.clip(uv[:, 1] * S - 0.5, 0, S - 1)
    x0, y0 = np.floor(x).astype(int), np.minimum(np.floor(y).astype(int), S - 2)
    fx, fy = x - x0, y - y0
    if tex.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    t = lambda yy, xx: tex[yy, xx % S]  # noqa: E731
    return (t(y0, x0) * (1 - fx) + t(y0, x0 + 1) * fx) * (1 - fy) + (t(y0 + 1, x0) * (1 - fx) + t(y0 + 1, x0 + 1) * fx) * fy


def _march(shape, o, d, t0, t1, steps=96):
    """Sphere-trace rays o + t d (object space) from t0 to t1; returns (hit mask, t)."""
    t, hit = t0.copy(), np.zeros(len(t0), bool)
    live = t0 < t1
    for _ in range(steps):
        idx = np.nonzero(live)[0]
        if idx.size == 0:
            break
        dist = shp.sdf_eval(shape, o[idx] + t[idx, None] * d[idx])
        done = dist < 5e-4
        hit[idx[done]] = True
        t[idx] += 0.9 * np.where(done, 0, dist)
        live[idx] = ~done & (t[idx] < t1[idx])
    return hit, t


def render_frame_numpy(spec: dict, assets: dict, shape: dict, rot: np.ndarray, res: int, ss: int = 2) -> dict[str, np.ndarray]:
    """Ray-cast one frame with ss x ss supersampling; returns coverage-normalised float maps (see encode_frame)."""
    o, r, u, f = camera_basis(spec["camera"])
    n_sub = res * ss
    c = (np.arange(n_sub) + 0.5) / n_sub * 2 - 1
    th = np.tan(np.radians(spec["camera"]["fov"]) / 2)
    yy, xx = np.meshgrid(-c * th, c * th, indexing="ij")
    dw = f + xx.reshape(-1, 1) * r + yy.reshape(-1, 1) * u
    dw /= np.linalg.norm(dw, axis=1, keepdims=True)
    do, oo = dw @ rot, np.broadcast_to(o @ rot, dw.shape)  # to object space (rot maps object -> world)
    b = (oo * do).sum(1)
    disc = b * b - ((oo * oo).sum(1) - 1.0005)
    sq = np.sqrt(np.maximum(disc, 0))
    t0, t1 = np.where(disc > 0, -b - sq, 1.0), np.where(disc > 0, -b + sq, 0.0)
    hit, t = _march(shape, oo, do, np.maximum(t0, 0), t1)
    P = (oo + t[:, None] * do)[hit]
    e = 1e-3
    g = np.stack([shp.sdf_eval(shape, P + e * ax) - shp.sdf_eval(shape, P - e * ax) for ax in np.eye(3)], 1)
    n_obj = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    n = n_obj @ rot.T
    pd = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-9)
    uv = np.stack([(np.arctan2(pd[:, 0], pd[:, 2]) / (2 * np.pi)) % 1.0, np.arccos(np.clip(pd[:, 1], -1, 1)) / np.pi], 1)  # = mesh uv
    alb, met, rough = _lookup(assets["base"], uv), _lookup(assets["metallic"], uv), _lookup(assets["roughness"], uv)
    spec_v = assets["specular"]
    L = assets["light"]
    v = -dw[hit]
    sky, ground = np.asarray(L["sky"]), np.asarray(L["ground"])
    amb = lambda y: ground + (sky - ground) * ((y + 1) / 2)[:, None]  # noqa: E731
    f0 = 0.08 * spec_v * (1 - met)[:, None] + alb * met[:, None]
    refl = 2 * (n * v).sum(1, keepdims=True) * n - v
    col = (1 - met)[:, None] * alb * amb(n[:, 1]) + f0 * amb(refl[:, 1]) * (1 - 0.5 * rough)[:, None]
    alpha = np.clip(2 / np.maximum(rough, 0.03) ** 4 - 2, 1, 3000)[:, None]
    for lt in L["lights"]:
        ld, E = np.asarray(lt["dir"], float), np.asarray(lt["irradiance"], float)
        ndl = np.clip(n @ ld, 0, None)[:, None]
        lo = P + 2e-3 * n_obj
        vis, _ = _march(shape, lo, np.broadcast_to(ld @ rot, lo.shape), np.full(len(lo), 1e-2), np.full(len(lo), 2.5), 48)
        h = ld + v
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
        fres = f0 + (1 - f0) * (1 - np.clip((v * h).sum(1, keepdims=True), 0, 1)) ** 5
        spec_term = fres * (alpha + 8) / (8 * np.pi) * np.clip((n * h).sum(1, keepdims=True), 0, 1) ** alpha
        col = col + (~vis)[:, None] * E * ndl * ((1 - met)[:, None] * alb / np.pi + spec_term)
    col = col * assets["exposure"]

    def pool(vals, normalise):  # average ss x ss subsamples per pixel; GT maps average over covered subsamples only
        full = np.zeros((n_sub * n_sub,) + vals.shape[1:])
        full[hit] = vals
        s = full.reshape(res, ss, res, ss, *vals.shape[1:]).sum((1, 3))
        return s / np.maximum(cnt, 1).reshape(res, res, *([1] * (vals.ndim - 1))) if normalise else s / ss**2

    cnt = hit.reshape(res, ss, res, ss).sum((1, 3))
    return {"cov": cnt / ss**2, "rgb": pool(col, False), "albedo": pool(alb, True), "normal_world": pool(n, True),
            "metallic": pool(met, True), "specular": spec_v, "roughness": pool(rough, True)}


# ----------------------------------------------------------------------------------------------- Mitsuba backend
class MitsubaRenderer:
    """Per-process Mitsuba state. Frame = 1 path-traced RGB pass + 2 AOV-only passes that share sample positions:
    A: albedo (diffuse BSDF carrying the base colour) + sh_normal; B: albedo of a diffuse BSDF whose reflectance is
    (metallic, roughness, 1), whose third channel is the pixel coverage used to un-premultiply every GT map."""

    def __init__(self, variant: str = "scalar_rgb", threads: int | None = None):
        from models.core.optional import require

        if variant.startswith("llvm"):
            raise ValueError("llvm_* mitsuba variants crash on this machine; use scalar_rgb (CPU) or cuda_ad_rgb (GPU)")
        self.mi = require("mitsuba", feature="Mitsuba rendering of DiffMotion data", extra="mitsuba")
        self.mi.set_variant(variant)
        if threads:
            import drjit as dr

            dr.set_thread_count(threads)
        self._mesh_cache: dict = {}

    def mesh(self, spec: dict) -> shp.Mesh:
        s = spec["shape"]
        key = (s["family"], s.get("file"), s["seed"])
        if key not in self._mesh_cache:  # objects share their mesh across sequences rendered by this process
            if s["family"] == "file":
                self._mesh_cache = {key: self._load_file(s["file"])}
            else:
                self._mesh_cache = {key: shp.make_mesh(_rng(s["seed"]), s["family"])}
        return self._mesh_cache[key]

    def _load_file(self, path: str) -> shp.Mesh:
        """User .obj/.ply through mitsuba's own loaders; spherical uv when the file has none."""
        m = self.mi.load_dict({"type": Path(path).suffix.lower()[1:], "filename": str(path)})
        p = self.mi.traverse(m)
        V = np.array(p["vertex_positions"], np.float64).reshape(-1, 3)
        F = np.array(p["faces"], np.int64).reshape(-1, 3)
        uv = np.array(p["vertex_texcoords"], np.float32).reshape(-1, 2) if m.has_vertex_texcoords() else shp.spherical_uv(V)
        N = np.array(p["vertex_normals"], np.float64).reshape(-1, 3) if m.has_vertex_normals() else None
        return shp.finish_mesh(V, F, uv, N, "file", {"file": str(path)})

    def _object(self, mesh: shp.Mesh, rot: np.ndarray, bsdf):
        mi = self.mi
        props = mi.Properties()
        props["bsdf"] = bsdf
        m = mi.Mesh("object", len(mesh.vertices), len(mesh.faces), props=props, has_vertex_normals=True,
                    has_vertex_texcoords=True)
        p = mi.traverse(m)
        for key, arr in (("vertex_positions", mesh.vertices @ rot.T.astype(np.float32)), ("faces", mesh.faces.astype(np.uint32)),
                         ("vertex_normals", mesh.normals @ rot.T.astype(np.float32)), ("vertex_texcoords", mesh.uvs)):
            p[key] = type(p[key])(np.ascontiguousarray(arr).ravel())
        p.update()
        return m

    def _sensor(self, cam: dict, res: int, spp: int, seed: int) -> dict:
        o, _, u, f = camera_basis(cam)
        T = self.mi.ScalarTransform4f
        return {"type": "perspective", "fov": cam["fov"], "near_clip": 0.01,
                "to_world": T().look_at(origin=o.tolist(), target=(o + f).tolist(), up=u.tolist()),
                "film": {"type": "hdrfilm", "width": res, "height": res, "rfilter": {"type": "box"}},
                "sampler": {"type": "independent", "sample_count": spp, "seed": seed}}

    def _bitmap(self, arr: np.ndarray) -> dict:
        return {"type": "bitmap", "bitmap": self.mi.Bitmap(np.ascontiguousarray(arr, dtype=np.float32)), "raw": True,
                "filter_type": "bilinear", "wrap_mode": "repeat"}

    def render_frame(self, spec: dict, assets: dict, rot: np.ndarray, res: int, spp: int, spp_gt: int = 16, frame: int = 0) -> dict:
        mi, mesh = self.mi, self.mesh(spec)
        par = np.stack([assets["metallic"], assets["roughness"], np.ones_like(assets["metallic"])], -1)
        principled = mi.load_dict({"type": "principled", "base_color": self._bitmap(assets["base"]), "specular": assets["specular"],
                                   "metallic": self._bitmap(assets["metallic"]), "roughness": self._bitmap(assets["roughness"])})
        scene = {"type": "scene", "integrator": {"type": "path", "max_depth": 6, "hide_emitters": True},
                 "sensor": self._sensor(spec["camera"], res, spp, frame), "object": self._object(mesh, rot, principled),
                 "env": {"type": "envmap", "bitmap": mi.Bitmap(assets["env"])}}
        T = mi.ScalarTransform4f
        for k, a in enumerate(assets["areas"]):
            h = a["size"] / 2
            scene[f"area{k}"] = {"type": "rectangle", "to_world": T().look_at(origin=a["pos"], target=[0, 0, 0], up=[0, 1, 0]) @ T().scale([h, h, 1]),
                                 "emitter": {"type": "area", "radiance": {"type": "rgb", "value": a["radiance"]}}}
        rgb = np.array(mi.render(mi.load_dict(scene)))[..., :3]
        out = []
        for aovs, refl in (("al:albedo,nn:sh_normal", assets["base"]), ("al:albedo", par)):
            bsdf = mi.load_dict({"type": "diffuse", "reflectance": self._bitmap(refl)})
            sc = {"type": "scene", "integrator": {"type": "aov", "aovs": aovs},
                  "sensor": self._sensor(spec["camera"], res, spp_gt, 7), "object": self._object(mesh, rot, bsdf)}
            out.append(np.array(mi.render(mi.load_dict(sc))))
        a, b = out
        cov = b[..., 2]
        un = lambda x: x / np.maximum(cov, 1e-6).reshape(cov.shape + (1,) * (x.ndim - 2))  # noqa: E731
        return {"cov": cov, "rgb": rgb, "albedo": un(a[..., 0:3]), "normal_world": un(a[..., 3:6]),
                "metallic": un(b[..., 0]), "specular": assets["specular"], "roughness": un(b[..., 1])}


# ------------------------------------------------------------------------------------------------ sequence writer
def render_sequence(root: str | Path, spec: dict, resolution: int, spp: int = 64, renderer=None, ss: int = 2) -> Path:
    """Render the 5 frames of `spec` into <root>/<folder>/ (temp folder -> per-file renames -> meta marker last)."""
    obj_dir = Path(root) / spec["folder"]
    i = spec["sequence"]
    obj_dir.mkdir(parents=True, exist_ok=True)
    _clear_sequence(obj_dir, i)
    tmp = obj_dir / f".tmp_{i}_{os.getpid()}"
    tmp.mkdir()
    assets = scene_assets(spec)
    basis = camera_basis(spec["camera"])
    shape = shp.make_sdf_shape(_rng(spec["shape"]["seed"]), spec["shape"]["family"]) if renderer is None else None
    m = spec["motion"]
    for fr in range(FRAMES):
        rot = shp.rotation_y(np.radians(m["theta0_deg"] + fr * m["dtheta_deg"]))
        if renderer is None:
            maps = render_frame_numpy(spec, assets, shape, rot, resolution, ss)
        else:
            maps = renderer.render_frame(spec, assets, rot, resolution, spp, frame=fr)
        for mod, img in encode_frame(basis=basis, **maps).items():
            write_png(tmp / frame_file(i, fr, mod), img)
    for name in sequence_files(i):
        os.replace(tmp / name, obj_dir / name)
    meta = {**spec, "resolution": resolution, "spp": spp if renderer is not None else ss * ss, "assets": assets["info"],
            "files": sequence_files(i)}
    if renderer is not None:
        meta["shape"] = {**spec["shape"], **renderer.mesh(spec).params}
    write_text(obj_dir / meta_file(i), json.dumps(meta, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return obj_dir


# ------------------------------------------------------------------------------------------------ dataset driver
_WORKER: dict = {}


def _init_worker(backend: str, variant: str, threads: int | None) -> None:
    _WORKER["renderer"] = MitsubaRenderer(variant, threads) if backend == "mitsuba" else None


def _job(args: tuple) -> str:
    root, spec, res, spp = args
    render_sequence(root, spec, res, spp, _WORKER.get("renderer"))
    return f"{spec['folder']}/{spec['sequence']}"


def generate(out: str | Path, num_objects: int, sequences_per_object: int, *, resolution: int = 128, spp: int = 64,
             workers: int = 1, backend: str = "mitsuba", variant: str = "scalar_rgb", seed: int = 0, held_out: bool = False,
             families: tuple[str, ...] | None = None, user_meshes: tuple[str, ...] = (), mesh_fraction: float = 0.5,
             pointer: str = "clips.json", progress: bool = True) -> dict:
    """Render every missing or partial sequence, then rebuild the pointer JSON from the complete ones. Resumable:
    complete sequences are skipped, half-written ones (a crash mid-sequence) are cleared and rendered again."""
    out = Path(out)
    known = shp.MESH_FAMILIES if backend == "mitsuba" else shp.SDF_FAMILIES
    if backend not in ("mitsuba", "numpy") or (families and set(families) - set(known)):
        raise ValueError(f"backend {backend!r} / families {families}: {backend} knows {known}")
    out.mkdir(parents=True, exist_ok=True)
    jobs, skipped = [], 0
    for obj in range(num_objects):
        for seq in range(sequences_per_object):
            spec = sample_scene(seed, obj, seq, held_out=held_out, backend=backend, families=families,
                                user_meshes=user_meshes, mesh_fraction=mesh_fraction)
            if sequence_status(out / spec["folder"], seq) == "complete":
                skipped += 1
            else:
                jobs.append((str(out), spec, resolution, spp))
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"render {backend}", unit="seq", disable=not progress or not jobs)
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        _init_worker(backend, variant, None)
        for j in jobs:
            _job(j)
            bar.update()
    else:  # spawn: never fork a process that may hold mitsuba/drjit state
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // workers)
        with mp.get_context("spawn").Pool(workers, _init_worker, (backend, variant, threads)) as pool:
            for _ in pool.imap_unordered(_job, jobs):
                bar.update()
    bar.close()
    entries = build_pointer(out, pointer)
    _, partial = scan_sequences(out)
    return {"rendered": len(jobs), "skipped": skipped, "clips": len(entries), "partial": partial}
