"""Seams between decoded charts: boundary statistics and a radius-based zipper.

Decoded omages are not watertight by design (each chart is its own grid patch). Zipping merges boundary vertices that
lie closer than a fraction of the median edge length; a small radius (0.5x) closes most seams without creating many
non-manifold edges, a large one over-merges.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def edge_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and how many faces use each."""
    if len(faces) == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq, counts


def boundary_stats(faces: np.ndarray) -> dict:
    edges, counts = edge_counts(faces)
    n = max(len(edges), 1)
    return {"edges": int(len(edges)), "boundary_edges": int((counts == 1).sum()),
            "nonmanifold_edges": int((counts > 2).sum()), "boundary_fraction": float((counts == 1).sum() / n),
            "nonmanifold_fraction": float((counts > 2).sum() / n)}


def boundary_vertices(faces: np.ndarray) -> np.ndarray:
    edges, counts = edge_counts(faces)
    return np.unique(edges[counts == 1].reshape(-1))


def median_edge(vertices: np.ndarray, faces: np.ndarray) -> float:
    e = np.linalg.norm(vertices[faces] - vertices[np.roll(faces, -1, axis=1)], axis=2)
    return float(np.median(e)) if e.size else 0.0


def seam_gaps(vertices: np.ndarray, faces: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """Distance from every boundary vertex to the nearest boundary vertex of another patch (inf if there is none)."""
    bv = boundary_vertices(faces)
    if bv.size == 0:
        return np.zeros(0)
    pts, lab = vertices[bv], patch[bv]
    out = np.full(bv.size, np.inf)
    for p in np.unique(lab):
        mine, other = lab == p, lab != p
        if other.any():
            out[mine] = cKDTree(pts[other]).query(pts[mine])[0]
    return out


def remove_degenerate(faces: np.ndarray) -> np.ndarray:
    """Drop faces with a repeated vertex and duplicate faces (same vertex set, either winding)."""
    f = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    if len(f) == 0:
        return f
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    return f[np.sort(first)]


def zip_seams(mesh, eps: float = 0.5):
    """Merge boundary vertices closer than `eps` x the median edge (clusters collapse to their mean position)."""
    f = mesh.faces
    med = median_edge(mesh.vertices, f)
    bv = boundary_vertices(f)
    before = boundary_stats(f)
    if bv.size < 2 or med <= 0:
        return replace(mesh, stats={**mesh.stats, "zip_before": before, "zip_after": before})
    pairs = cKDTree(mesh.vertices[bv]).query_pairs(eps * med, output_type="ndarray")
    n = len(mesh.vertices)
    if len(pairs) == 0:
        return replace(mesh, stats={**mesh.stats, "zip_before": before, "zip_after": before})
    i, j = bv[pairs[:, 0]], bv[pairs[:, 1]]
    g = coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    _, label = connected_components(g, directed=False)
    # representative = smallest vertex id of each cluster, placed at the cluster mean
    rep = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(rep, label, np.arange(n))
    target = rep[label]
    v = mesh.vertices.copy()
    sums = np.zeros((label.max() + 1, 3))
    np.add.at(sums, label, mesh.vertices)
    cnt = np.bincount(label)[:, None]
    v = np.where((cnt[label] > 1), (sums / cnt)[label], v)
    f2 = remove_degenerate(target[f])
    after = boundary_stats(f2)
    return replace(mesh, vertices=v, faces=f2, stats={**mesh.stats, "zip_before": before, "zip_after": after})
