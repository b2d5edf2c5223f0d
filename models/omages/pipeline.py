"""The two-stage generator: class label -> geometry omage (N2G) -> material omage (G2M) -> textured mesh.

Yan et al. 2024, Sec. 4: a DiT samples the 4 geometry channels, a second model samples the 5 material channels given
the geometry. Two deliberate departures from the released pipeline:
- the geometry is cleaned before conditioning G2M (occupancy binarised at 0, xyz reset to -1 outside the charts), the
  clean form G2M was trained on; the raw sample would be a train/test shift;
- normals are not left at zero (which orients every face towards one octant): each chart is oriented away from the
  object's centroid, and the normal channels are then filled from those oriented faces.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.core.cli import UserError
from models.core.io import write_png, write_text
from models.omages import format as fmt
from models.omages.decode import DecodedMesh, decode

GEO_CHANNELS, MAT_CHANNELS, RES = 4, 5, 64


def check_geometry(geometry: np.ndarray, where: str = "geometry") -> np.ndarray:
    """(N, 4, 64, 64) float32, or a one-line UserError (a G2M input of the wrong shape)."""
    g = np.asarray(geometry)
    if g.ndim != 4 or g.shape[1:] != (GEO_CHANNELS, RES, RES) or not np.issubdtype(g.dtype, np.floating):
        raise UserError(f"{where}: expected float geometry omages of shape (N, {GEO_CHANNELS}, {RES}, {RES}), "
                        f"got {g.dtype} {tuple(g.shape)}")
    return g.astype(np.float32)


def clean_geometry(geometry: np.ndarray) -> np.ndarray:
    """Model-space (N, 4, H, W) -> occupancy in {-1, 1} (threshold 0), xyz clipped to [-1, 1] and -1 outside."""
    g = check_geometry(geometry)
    occ = np.nan_to_num(g[:, 3], nan=-1.0) > 0
    xyz = np.clip(np.nan_to_num(g[:, :3], nan=-1.0), -1.0, 1.0)
    xyz = np.where(occ[:, None], xyz, -1.0)
    return np.concatenate([xyz, np.where(occ, 1.0, -1.0)[:, None]], axis=1).astype(np.float32)


def vertex_normals(mesh: DecodedMesh) -> np.ndarray:
    """Area-weighted unit vertex normals of the (oriented) faces; 0 for unused vertices."""
    v, f = mesh.vertices, mesh.faces
    n = np.zeros_like(v)
    if len(f):
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        for k in range(3):
            np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def assemble(geometry_clean: np.ndarray, material: np.ndarray) -> tuple[np.ndarray, DecodedMesh]:
    """One clean model-space geometry (4, H, W) + material (5, H, W) -> (file-space (H, W, 12) omage, mesh).

    Normals come from the decoded faces, each chart oriented outwards (they are not generated)."""
    om = np.zeros(geometry_clean.shape[1:] + (fmt.N_CHANNELS,), np.float32)
    om[..., fmt.GEOMETRY] = fmt.to_file(np.moveaxis(geometry_clean, 0, -1))
    om[..., fmt.MATERIAL] = np.clip(fmt.to_file(np.moveaxis(np.nan_to_num(material), 0, -1)), 0.0, 1.0)
    om = fmt.clean(om)
    mesh = decode(om)                       # zero normal channels: each chart faces away from the object
    vn = vertex_normals(mesh)
    r, c = mesh.pixel[:, 0], mesh.pixel[:, 1]
    om[r, c, fmt.NRM] = np.clip((vn + 1.0) * 0.5, 0.0, 1.0)
    mesh.normals = vn
    return om, mesh


@dataclass
class Sample:
    label: int
    class_name: str
    seed: int
    raw_geometry: np.ndarray      # (4, H, W) model space, as sampled (validity is judged on it)
    omage: np.ndarray             # (H, W, 12) file space
    mesh: DecodedMesh


def sample_geometry(n2g, labels: list[int], seeds: list[int], **sampling) -> np.ndarray:
    return check_geometry(n2g.infer({"labels": list(labels)}, seeds=list(seeds), **sampling)["geometry"], "N2G output")


def sample_material(g2m, geometry_clean: np.ndarray, labels: list[int], seeds: list[int], **sampling) -> np.ndarray:
    mat = np.asarray(g2m.infer({"geometry": geometry_clean, "labels": list(labels)}, seeds=list(seeds),
                               **sampling)["material"], np.float32)
    if mat.shape != (len(labels), MAT_CHANNELS) + geometry_clean.shape[2:]:
        raise ValueError(f"G2M returned {mat.shape}, expected {(len(labels), MAT_CHANNELS) + geometry_clean.shape[2:]}")
    return mat


def run(n2g, g2m, labels: list[int], seeds: list[int], class_names: list[str], *, n2g_sampling: dict,
        g2m_sampling: dict, geometry: np.ndarray | None = None, batch: int = 16, progress=None) -> list[Sample]:
    """Generate one sample per (label, seed); `geometry` (raw model space) skips N2G and re-samples materials only.

    Samplers use per-sample generators, so batching does not change results."""
    if geometry is not None:
        geometry = check_geometry(geometry, "--geometry")
        if len(geometry) != len(labels):
            raise UserError(f"--geometry holds {len(geometry)} shapes but {len(labels)} samples were asked for")
    out = []
    for i in range(0, len(labels), batch):
        lab, sd = labels[i:i + batch], seeds[i:i + batch]
        raw = geometry[i:i + batch] if geometry is not None else sample_geometry(n2g, lab, sd, **n2g_sampling)
        clean = clean_geometry(raw)
        mat = sample_material(g2m, clean, lab, sd, **g2m_sampling)
        for k in range(len(lab)):
            om, mesh = assemble(clean[k], mat[k])
            out.append(Sample(int(lab[k]), class_names[lab[k]], int(sd[k]), raw[k], om, mesh))
        if progress is not None:
            progress.update(len(lab))
    return out


def write_samples(folder: Path, samples: list[Sample], validity: list[dict], sheets: bool = True) -> dict:
    """Per sample: `<name>.glb`, `<name>.png` (channel tiles + renders), `<name>.npz` (the omage); plus geometry.npz
    (raw N2G output, reusable with --geometry) and samples.json."""
    from models.core.io import write_npz
    from models.omages.export import write_glb
    from models.omages.preview import sheet

    records = []
    for k, (s, v) in enumerate(zip(samples, validity)):
        name = f"{k:03d}_{s.class_name}_s{s.seed}"
        fmt.save_omage(folder / f"{name}.npz", s.omage)
        write_glb(folder / f"{name}.glb", s.mesh, s.omage)
        if sheets:
            write_png(folder / f"{name}.png", sheet(s.omage, s.mesh))
        records.append({"name": name, "label": s.label, "class": s.class_name, "seed": s.seed,
                        "faces": int(len(s.mesh.faces)), "valid": bool(v["valid"]), "validity": v})
    write_npz(folder / "geometry.npz", geometry=np.stack([s.raw_geometry for s in samples]),
              labels=np.array([s.label for s in samples]), seeds=np.array([s.seed for s in samples]))
    summary = {"n": len(records), "valid": int(sum(r["valid"] for r in records)), "samples": records}
    write_text(folder / "samples.json", json.dumps(summary, indent=1) + "\n")
    return summary


def grid_image(samples: list[Sample], cols: int, size: int = 160) -> np.ndarray:
    """Rendered samples in a grid, each titled with its class and seed (one row per class when `cols` = samples per
    class)."""
    from models.omages.preview import labelled_grid, render_view

    tiles = [render_view(s.mesh, size, 30.0, 20.0) for s in samples]
    return labelled_grid(tiles, [f"{s.class_name} (seed {s.seed})" for s in samples], cols)
