"""Codec measurements shared by the tests and the benchmark: round-trip errors, chart preservation and seams."""
from __future__ import annotations

import numpy as np

from models.omages.decode import DecodedMesh, decode, face_components
from models.omages.encode import EncodeResult
from models.omages.metrics import surface_errors
from models.omages.pool import naive_downsample
from models.omages.seams import boundary_stats, seam_gaps, zip_seams


def roundtrip(res: EncodeResult, which: str = "sparse", n: int = 10_000, seed: int = 0) -> tuple[dict, DecodedMesh]:
    """Surface errors of the decoded omage against the normalised input mesh.

    which: 'sparse' (the pooled 64 omage), 'naive' (stride subsampling of the bake), 'source' (the bake itself).
    """
    factor = res.source.shape[0] // res.omage.shape[0]
    om = {"sparse": res.omage, "naive": naive_downsample(res.source, factor), "source": res.source}[which]
    mesh = decode(om)
    return surface_errors(mesh.vertices, mesh.faces, res.vertices, res.input_faces, n=n, seed=seed), mesh


def block_charts(res: EncodeResult, out_res: int | None = None) -> np.ndarray:
    """Chart id of every output pixel (majority over its block's occupied source pixels; -1 when none)."""
    r = res.chart_map.shape[0]
    out_res = out_res or res.omage.shape[0]
    f = r // out_res
    cm = res.chart_map.reshape(out_res, f, out_res, f).transpose(0, 2, 1, 3).reshape(out_res, out_res, f * f)
    n = res.n_charts
    counts = np.stack([(cm == k).sum(axis=2) for k in range(n)], axis=2)
    lab = counts.argmax(axis=2)
    return np.where(counts.max(axis=2) > 0, lab, -1)


def chart_preservation(res: EncodeResult, mesh: DecodedMesh, min_px: int = 3) -> dict:
    """Per chart whose packed UV box spans >= `min_px` output pixels in both directions: does it decode to exactly
    one mesh component holding no other chart? Also whether the whole shape has components == charts."""
    out_res = res.omage.shape[0]
    lab = block_charts(res, out_res)
    ncomp, comp = face_components(len(mesh.vertices), mesh.faces)
    vchart = lab[mesh.pixel[:, 0], mesh.pixel[:, 1]] if len(mesh.vertices) else np.zeros(0, dtype=int)
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces.reshape(-1)] = True
    box_px = (res.chart_boxes[:, 2:] - res.chart_boxes[:, :2]) * out_res
    big = np.nonzero((box_px >= min_px).all(axis=1))[0]
    ok = 0
    for k in big:
        comps = np.unique(comp[used & (vchart == k)])
        if comps.size == 1 and np.all(vchart[used & (comp == comps[0])] == k):
            ok += 1
    return {"charts": res.n_charts, "big_charts": int(big.size), "big_preserved": ok,
            "big_fraction": ok / max(big.size, 1), "components": ncomp,
            "components_equal_charts": bool(ncomp == res.n_charts)}


def seam_report(res: EncodeResult, mesh: DecodedMesh, eps: float = 0.5) -> dict:
    """Boundary gap p95 (fraction of the GT diagonal), boundary-edge fraction, and what zipping at `eps` does."""
    diag = float(np.linalg.norm(res.vertices.max(0) - res.vertices.min(0)))
    gaps = seam_gaps(mesh.vertices, mesh.faces, mesh.patch)
    gaps = gaps[np.isfinite(gaps)]
    zipped = zip_seams(mesh, eps)
    before, after = boundary_stats(mesh.faces), zipped.stats["zip_after"]
    closed = 1 - after["boundary_edges"] / max(before["boundary_edges"], 1)
    return {"gap_p95_rel": float(np.percentile(gaps, 95) / diag) if gaps.size else 0.0,
            "boundary_fraction": before["boundary_fraction"], "zip_closed_fraction": float(closed),
            "zip_nonmanifold_fraction": after["nonmanifold_fraction"]}
