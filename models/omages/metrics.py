"""Weight-free 3D metrics: exact point-to-triangle surface distances (CD-L1, Hausdorff, normal consistency),
point-cloud Chamfer distribution metrics (MMD-CD, COV-CD, 1-NNA-CD, as in Achlioptas et al. 2018 and Yang et al.
2019), Frechet distance / KID on features, and simple omage statistics."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from models.omages import format as fmt


# ------------------------------------------------------------------------------------------ surface sampling
def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` area-uniform points on a triangle mesh and the face each lies on (deterministic by seed)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    cdf = np.cumsum(area)
    fi = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return (w[:, :, None] * v[f[fi]]).sum(axis=1), fi


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


# ------------------------------------------------------------------------ exact point-to-triangle distances
def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest point on triangle (a, b, c) to p, row-wise (Ericson, Real-Time Collision Detection, Sec. 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v = vb / denom
        w = vc / denom
        out = a + ab * v[:, None] + ac * w[:, None]                       # interior
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    cases = [
        ((d1 <= 0) & (d2 <= 0), a),
        ((d3 >= 0) & (d4 <= d3), b),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + ab * t_ab[:, None]),
        ((d6 >= 0) & (d5 <= d6), c),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + ac * t_ac[:, None]),
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), b + (c - b) * t_bc[:, None]),
    ]
    done = np.zeros(len(p), dtype=bool)
    for cond, val in cases:
        sel = cond & ~done
        out[sel] = val[sel]
        done |= sel
    # degenerate triangles (zero area) that fell through: use the nearest vertex
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        cand = np.stack([a[bad], b[bad], c[bad]], 1)
        k = np.argmin(((cand - p[bad][:, None]) ** 2).sum(-1), axis=1)
        out[bad] = cand[np.arange(k.size), k]
    return out


def point_to_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 16):
    """Exact distance from each point to a triangle mesh, the closest point and its face.

    Candidates come from a KD-tree over face centroids. A face closer than the best distance d found among the k
    nearest centroids must have its centroid within d + (largest centroid-to-corner radius), so those faces are all
    checked in a second pass: the result is exact, not an approximation.
    """
    p = np.asarray(points, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tri = v[f]
    cen = tri.mean(axis=1)
    rad = float(np.linalg.norm(tri - cen[:, None], axis=2).max())
    tree = cKDTree(cen)
    k = min(k, len(f))
    _, cand = tree.query(p, k=k)
    cand = cand.reshape(len(p), k)
    rows = np.repeat(np.arange(len(p)), k)
    cf = cand.reshape(-1)
    q = closest_on_triangles(np.repeat(p, k, axis=0), tri[cf, 0], tri[cf, 1], tri[cf, 2])
    d = np.linalg.norm(q - p[rows], axis=1).reshape(len(p), k)
    j = np.argmin(d, axis=1)
    best_d = d[np.arange(len(p)), j]
    best_f = cand[np.arange(len(p)), j]
    best_q = q.reshape(len(p), k, 3)[np.arange(len(p)), j]
    # second pass: every face whose centroid could still hide a closer point
    counts = tree.query_ball_point(p, best_d + rad + 1e-12, return_length=True)
    todo = np.nonzero(counts > k)[0]
    for s in range(0, todo.size, 2048):
        idx = todo[s:s + 2048]
        lists = tree.query_ball_point(p[idx], best_d[idx] + rad + 1e-12)
        lens = np.array([len(x) for x in lists])
        cf = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
        pr = np.repeat(idx, lens)
        q2 = closest_on_triangles(p[pr], tri[cf, 0], tri[cf, 1], tri[cf, 2])
        d2 = np.linalg.norm(q2 - p[pr], axis=1)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        m = np.minimum.reduceat(d2, starts)
        arg = np.array([st + np.argmin(d2[st:st + ln]) for st, ln in zip(starts, lens)])
        better = m < best_d[idx]
        best_d[idx[better]] = m[better]
        best_f[idx[better]] = cf[arg[better]]
        best_q[idx[better]] = q2[arg[better]]
    return best_d, best_q, best_f


def surface_errors(pred_v, pred_f, gt_v, gt_f, n: int = 10_000, seed: int = 0) -> dict:
    """CD-L1 = mean(accuracy) + mean(completeness), Hausdorff, signed normal consistency, all relative to the GT
    bounding-box diagonal where named `_rel`; n area-uniform samples in each direction."""
    gt_v, gt_f = np.asarray(gt_v, np.float64), np.asarray(gt_f, np.int64)
    diag = float(np.linalg.norm(gt_v.max(0) - gt_v.min(0)))
    if len(pred_f) == 0:
        return {"cd_l1": np.inf, "hd": np.inf, "nc": 0.0, "cd_rel": np.inf, "hd_rel": np.inf, "diag": diag,
                "acc": np.inf, "comp": np.inf}
    pred_v, pred_f = np.asarray(pred_v, np.float64), np.asarray(pred_f, np.int64)
    ps, pf = sample_surface(pred_v, pred_f, n, seed)
    gs, gf = sample_surface(gt_v, gt_f, n, seed + 1)
    acc, _, acc_face = point_to_mesh(ps, gt_v, gt_f)
    comp, _, comp_face = point_to_mesh(gs, pred_v, pred_f)
    pn, gn = face_normals(pred_v, pred_f), face_normals(gt_v, gt_f)
    nc = 0.5 * ((pn[pf] * gn[acc_face]).sum(1).mean() + (gn[gf] * pn[comp_face]).sum(1).mean())
    cd = float(acc.mean() + comp.mean())
    hd = float(max(acc.max(), comp.max()))
    return {"cd_l1": cd, "hd": hd, "nc": float(nc), "cd_rel": cd / diag, "hd_rel": hd / diag, "diag": diag,
            "acc": float(acc.mean()), "comp": float(comp.mean()), "acc_rel": float(acc.mean() / diag),
            "comp_rel": float(comp.mean() / diag)}


# --------------------------------------------------------------------- distribution metrics on point clouds
def chamfer_matrix(xs: np.ndarray, ys: np.ndarray, device: str = "cpu", batch: int = 16) -> np.ndarray:
    """(N, M) matrix of CD(X, Y) = mean_x min_y |x-y|^2 + mean_y min_x |x-y|^2 for clouds (N, P, 3) and (M, Q, 3)."""
    import torch

    X = torch.as_tensor(np.asarray(xs, np.float32), device=device)
    Y = torch.as_tensor(np.asarray(ys, np.float32), device=device)
    out = torch.empty(len(X), len(Y), dtype=torch.float64)
    with torch.no_grad():
        for i in range(len(X)):
            xi = X[i]
            for j in range(0, len(Y), batch):
                d = torch.cdist(xi.unsqueeze(0).expand(len(Y[j:j + batch]), -1, -1), Y[j:j + batch]) ** 2
                out[i, j:j + batch] = (d.min(dim=2).values.mean(1) + d.min(dim=1).values.mean(1)).double().cpu()
    return out.numpy()


def mmd_cov_1nna(gen: np.ndarray, ref: np.ndarray, device: str = "cpu") -> dict:
    """MMD-CD (mean over ref of the min CD to gen), COV-CD (fraction of ref that is some gen's nearest neighbour)
    and 1-NNA-CD (leave-one-out 1-NN accuracy on gen + ref; 0.5 is ideal)."""
    d_gr = chamfer_matrix(gen, ref, device)
    d_gg = chamfer_matrix(gen, gen, device)
    d_rr = chamfer_matrix(ref, ref, device)
    mmd = float(d_gr.min(axis=0).mean())
    cov = float(np.unique(d_gr.argmin(axis=1)).size / len(ref))
    ng, nr = len(gen), len(ref)
    full = np.block([[d_gg, d_gr], [d_gr.T, d_rr]])
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(ng), np.ones(nr)]
    nn = full.argmin(axis=1)
    acc = float((labels[nn] == labels).mean())
    return {"mmd_cd": mmd, "cov_cd": cov, "nna_cd": acc}


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    """Zero centroid and unit max radius per cloud (Point-E's evaluator convention)."""
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=-2, keepdims=True)
    return p / np.maximum(np.linalg.norm(p, axis=-1).max(axis=-1)[..., None, None], 1e-12)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) (Heusel et al. 2017), clean-fid's handling of sqrtm."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over random subsets (Binkowski et al. 2018)."""
    rng = np.random.default_rng(seed)
    d = f1.shape[1]
    m = min(len(f1), len(f2), subset_size)
    total = 0.0
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(total / subsets / m)


# ------------------------------------------------------------------------------------------ omage statistics
def omage_stats(omage: np.ndarray) -> dict:
    """Charts (2D components), occupied fraction and per-chart areas (fraction of the image)."""
    from models.omages.decode import patches

    occ = np.asarray(omage)[..., fmt.OCC] >= 0.5
    labels, n = patches(occ)
    areas = np.bincount(labels.reshape(-1), minlength=n + 1)[1:] / occ.size
    return {"n_charts": n, "occupied": float(occ.mean()), "chart_areas": areas}


def stats_distance(omages_a, omages_b) -> dict:
    """1-D Wasserstein distances between two omage sets' chart counts, occupied fractions and chart areas."""
    from scipy.stats import wasserstein_distance

    sa = [omage_stats(o) for o in omages_a]
    sb = [omage_stats(o) for o in omages_b]
    out = {}
    for key in ("n_charts", "occupied"):
        out[key] = float(wasserstein_distance([s[key] for s in sa], [s[key] for s in sb]))
    out["chart_areas"] = float(wasserstein_distance(np.concatenate([s["chart_areas"] for s in sa]),
                                                    np.concatenate([s["chart_areas"] for s in sb])))
    return out
