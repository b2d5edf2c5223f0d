"""Checks of generated omages: validity of each sample, distribution against held-out shapes, omage statistics and the
material stage against a per-class-mean baseline.

Distribution metrics follow Achlioptas et al. 2018 / Yang et al. 2019 (MMD-CD, COV-CD, 1-NNA-CD on 2,048 surface
points); the feature distance is a Frechet distance (Heusel et al. 2017) on our own PointNet (Qi et al. 2017) features.
"""
from __future__ import annotations

import numpy as np

from models.omages import format as fmt
from models.omages.decode import DecodedMesh, patches

# Validity rules for a generated geometry omage.
MAX_CHARTS = 64
MIN_FACES = 200
XYZ_BOUND = 1.05
LONG_EDGE_K = 6.0
MAX_LONG_FRACTION = 0.01


def validity(raw_geometry: np.ndarray, mesh: DecodedMesh) -> dict:
    """Rule by rule validity of one sample: `raw_geometry` is the model-space (4, H, W) sample as generated, `mesh`
    its decoding (long-edge filter at 6 median edges, whose dropped count gives the long-triangle fraction)."""
    g = np.asarray(raw_geometry, np.float64)
    finite = bool(np.isfinite(g).all())
    occ = np.nan_to_num(g[3], nan=-1.0) > 0
    _, n_charts = patches(occ)
    xyz = g[:3][:, occ]
    in_bounds = bool(finite and (xyz.size == 0 or np.abs(xyz).max() <= XYZ_BOUND))
    grid = mesh.stats.get("faces_grid", len(mesh.faces))
    long_frac = mesh.stats.get("faces_long_dropped", 0) / grid if grid else 0.0
    rules = {"no_nan": finite, "charts": 1 <= n_charts <= MAX_CHARTS, "faces": len(mesh.faces) >= MIN_FACES,
             "xyz_in_bounds": in_bounds, "long_edges": long_frac <= MAX_LONG_FRACTION}
    return {"valid": all(rules.values()), **rules, "n_charts": int(n_charts), "n_faces": int(len(mesh.faces)),
            "long_fraction": float(long_frac)}


# ------------------------------------------------------------------------------------------- point clouds
def surface_cloud(mesh: DecodedMesh, n: int = 2048, seed: int = 0) -> np.ndarray:
    """n area-uniform surface points in the data frame ([-1, 1] box); n points at the origin when the mesh is
    empty."""
    from models.omages.metrics import sample_surface

    if mesh.empty:
        return np.zeros((n, 3))
    return sample_surface(mesh.vertices, mesh.faces, n, seed=seed)[0]


def omage_clouds(omages: np.ndarray, n: int = 2048, seed: int = 0) -> np.ndarray:
    """(N, n, 3) clouds of file-space omages (decoded, then sampled)."""
    from models.omages.decode import decode

    return np.stack([surface_cloud(decode(fmt.clean(o)), n, seed + k) for k, o in enumerate(omages)])


def noise_omages(n: int, res: int = 64, seed: int = 0) -> np.ndarray:
    """Calibration set: random occupancy (p = 0.5) with uniform random positions (1-NNA should be ~100 %)."""
    rng = np.random.default_rng(seed)
    om = np.zeros((n, res, res, fmt.N_CHANNELS), np.float32)
    om[..., fmt.POS] = rng.random((n, res, res, 3))
    om[..., fmt.OCC] = rng.random((n, res, res)) < 0.5
    return fmt.clean(om)


def distribution(gen_clouds: np.ndarray, test_clouds: np.ndarray, train_clouds: np.ndarray, device: str = "cpu") -> dict:
    """MMD/COV/1-NNA-CD of generated vs test, and the floor: the same metrics of train vs test."""
    from models.omages.metrics import mmd_cov_1nna

    return {"gen": mmd_cov_1nna(gen_clouds, test_clouds, device), "floor": mmd_cov_1nna(train_clouds, test_clouds, device)}


def pfid(net, gen_clouds, test_clouds, train_clouds) -> dict:
    """Frechet distance of PointNet features (gen vs test) and its floor FD(train, test)."""
    from models.omages.metrics import frechet_distance
    from models.omages.pointnet import extract

    fg, _ = extract(net, gen_clouds)
    ft, _ = extract(net, test_clouds)
    fr, _ = extract(net, train_clouds)
    return {"gen": frechet_distance(fg, ft), "floor": frechet_distance(fr, ft)}


def classifier_accuracy(net, clouds: np.ndarray, labels: np.ndarray) -> float:
    from models.omages.pointnet import extract

    _, logits = extract(net, clouds)
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


# --------------------------------------------------------------------------------------------- statistics
def chart_stats(omages) -> dict:
    from models.omages.metrics import omage_stats

    s = [omage_stats(o) for o in omages]
    return {"median_charts": float(np.median([x["n_charts"] for x in s])),
            "median_occupied": float(np.median([x["occupied"] for x in s]))}


# ------------------------------------------------------------------------------------------ material stage
def class_mean_albedo(train_omages: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, 3) mean albedo over occupied pixels of each class of the train split (the baseline predictor)."""
    out = np.full((n_classes, 3), 0.5)
    for k in range(n_classes):
        sel = np.asarray(train_omages)[np.asarray(labels) == k]
        if len(sel):
            occ = sel[..., fmt.OCC] >= 0.5
            out[k] = sel[..., fmt.ALB][occ].mean(axis=0)
    return out


def material_errors(pred: np.ndarray, gt: np.ndarray, labels: np.ndarray, class_albedo: np.ndarray) -> dict:
    """Material stage on GT geometry: albedo L1 (vs the per-class-mean baseline), metallic binary accuracy and
    roughness MAE, all on occupied pixels of file-space (N, H, W, 12) omages."""
    occ = gt[..., fmt.OCC] >= 0.5
    alb_l1 = np.abs(pred[..., fmt.ALB] - gt[..., fmt.ALB])[occ].mean()
    base = np.broadcast_to(class_albedo[np.asarray(labels)][:, None, None, :], gt[..., fmt.ALB].shape)
    base_l1 = np.abs(base - gt[..., fmt.ALB])[occ].mean()
    met = ((pred[..., fmt.MET] >= 0.5) == (gt[..., fmt.MET] >= 0.5))[occ].mean()
    rgh = np.abs(pred[..., fmt.RGH] - gt[..., fmt.RGH])[occ].mean()
    return {"albedo_l1": float(alb_l1), "albedo_l1_baseline": float(base_l1),
            "albedo_gain": float(1.0 - alb_l1 / base_l1) if base_l1 > 0 else 0.0,
            "metallic_accuracy": float(met), "roughness_mae": float(rgh)}


def material_check(g2m, test, test_recs, train, train_recs, n: int, steps: int, batch: int = 16) -> dict:
    """G2M on the GT geometry of n test shapes spread evenly over the (class-ordered) test split, against the
    per-class-mean-colour baseline of the train split (at most 2,000 train shapes)."""
    from models.omages.pipeline import clean_geometry

    idx = np.unique(np.linspace(0, len(test) - 1, min(n, len(test))).round().astype(int))
    gt = np.stack([fmt.validate(test[i]) for i in idx])
    labels = np.array([int(test_recs[i]["class_id"]) for i in idx])
    train_labels = np.array([int(r["class_id"]) for r in train_recs])
    sub = np.random.default_rng(1).choice(len(train), min(2000, len(train)), replace=False)
    sub_oms = np.stack([fmt.validate(train[i]) for i in sub])
    means = class_mean_albedo(sub_oms, train_labels[sub], int(train_labels.max()) + 1)
    geo = clean_geometry(np.moveaxis(fmt.to_model(gt[..., fmt.GEOMETRY]), -1, 1))
    mat = [g2m.infer({"geometry": geo[s:s + batch], "labels": labels[s:s + batch].tolist()},
                     seeds=list(range(s, min(s + batch, len(idx)))), steps=steps, cfg_scale=1.0,
                     sampler="ddim")["material"] for s in range(0, len(idx), batch)]
    pred = gt.copy()
    pred[..., fmt.MATERIAL] = np.clip(fmt.to_file(np.moveaxis(np.concatenate(mat), 1, -1)), 0, 1)
    return {**material_errors(pred, gt, labels, means), "n": int(len(idx)), "steps": steps,
            "albedo_l1_class_draw": class_draw_albedo_l1(gt, labels, sub_oms, train_labels[sub])}


def class_draw_albedo_l1(gt: np.ndarray, labels: np.ndarray, train_omages: np.ndarray, train_labels: np.ndarray,
                         seed: int = 0) -> float:
    """Albedo L1 of a predictor that knows each class's colour distribution but nothing of the shape: every occupied
    GT pixel against the albedo of a random occupied pixel of its class in the train split. When materials are
    drawn independently of geometry (as in the procedural data), a perfect sampler scores about this, above the
    class-mean L1."""
    rng = np.random.default_rng(seed)
    pools = {}  # class -> its occupied train albedo pixels
    errs = []
    for g, c in zip(gt, labels):
        if c not in pools:
            sel = train_omages[train_labels == c]
            pools[c] = sel[..., fmt.ALB][sel[..., fmt.OCC] >= 0.5]
        px = pools[c]
        target = g[..., fmt.ALB][g[..., fmt.OCC] >= 0.5]
        if len(px) and len(target):
            errs.append(np.abs(px[rng.integers(0, len(px), len(target))] - target).sum(1))
    return float(np.concatenate(errs).mean() / 3) if errs else float("nan")


# ----------------------------------------------------------------------------------------------- verdicts
def verdicts(r: dict) -> list[tuple[str, str, str, bool]]:
    """(check, measured, threshold, pass) rows for whatever parts of the report `r` holds."""
    rows = []
    if "validity_rate" in r:
        rows.append(("B4 validity rate", f"{r['validity_rate']:.1%}", ">= 90%", r["validity_rate"] >= 0.9))
    if "distribution" in r:
        g, f = r["distribution"]["gen"], r["distribution"]["floor"]
        rows += [("B5 1-NNA-CD", f"{g['nna_cd']:.1%} (floor {f['nna_cd']:.1%})", "<= 75%", g["nna_cd"] <= 0.75),
                 ("B5 COV-CD", f"{g['cov_cd']:.1%} (floor {f['cov_cd']:.1%})", ">= 40%", g["cov_cd"] >= 0.40),
                 ("B5 MMD-CD", f"{g['mmd_cd']:.4g} (floor {f['mmd_cd']:.4g})", "<= 1.5x floor",
                  g["mmd_cd"] <= 1.5 * f["mmd_cd"])]
    if "noise_nna" in r:
        rows.append(("B5 calibration: noise 1-NNA-CD", f"{r['noise_nna']:.1%}", "~100%", r["noise_nna"] >= 0.9))
    if "pfid" in r:
        p = r["pfid"]
        rows.append(("B5 P-FID-proc", f"{p['gen']:.3g} (floor {p['floor']:.3g})", "<= 3x floor + 1",
                     p["gen"] <= 3 * p["floor"] + 1.0))
    if "accuracy_cfg" in r:
        a = r["accuracy_cfg"]
        rows.append(("B5 classifier accuracy", f"CFG4 {a['4']:.1%}, CFG1 {a['1']:.1%}", ">= 80%, CFG4 > CFG1",
                     a["4"] >= 0.8 and a["4"] > a["1"]))
    if "stats" in r:
        g, d = r["stats"]["gen"], r["stats"]["data"]
        rows += [("B6 median charts", f"{g['median_charts']:.1f} (data {d['median_charts']:.1f})", "within 30%",
                  abs(g["median_charts"] - d["median_charts"]) <= 0.3 * d["median_charts"]),
                 ("B6 median occupied", f"{g['median_occupied']:.3f} (data {d['median_occupied']:.3f})", "within 20%",
                  abs(g["median_occupied"] - d["median_occupied"]) <= 0.2 * d["median_occupied"])]
    if "material" in r:
        m = r["material"]
        rows += [("B7 albedo L1", f"{m['albedo_l1']:.4f} (class mean {m['albedo_l1_baseline']:.4f})",
                  ">= 20% below baseline", m["albedo_gain"] >= 0.2),
                 ("B7 metallic accuracy", f"{m['metallic_accuracy']:.1%}", ">= 85%", m["metallic_accuracy"] >= 0.85),
                 ("B7 roughness MAE", f"{m['roughness_mae']:.4f}", "<= 0.15", m["roughness_mae"] <= 0.15)]
    return rows


def markdown(rows) -> str:
    lines = ["| check | measured | threshold | pass |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {'pass' if ok else 'FAIL'} |" for a, b, c, ok in rows]
    return "\n".join(lines) + "\n"
