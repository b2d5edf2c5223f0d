#!/usr/bin/env python
"""Analysis of multiscale.py outputs (Han et al. 2024, multistability analysis): modes, Wasserstein distance, 2-D embedding, errors.

    python post_process.py evals/2026-01-01_12-00_sfs_fast            # every input folder of a run
    python post_process.py evals/run/star --gt star_normals.npy      # one input, ground truth given explicitly

Per input folder (the <name>_raw.npz and <name>_run.json written by multiscale.py) it reports:
  - with ground truth and its depth-reversed twin (the ambiguous stimuli): each seed's mode (GT or flip, lower mean
    angle), the mode-assigned error, and W = exact Wasserstein-1 distance between the samples and the reference set
    {GT, flip} (50/50), on 32x32 resized, flattened maps with Euclidean cost. The bar is 1/2 ||GT - flip||: a perfect
    but unimodal predictor scores exactly that. The flat map's W is listed too.
  - with ground truth only (objects): mean/median angular error per seed, best seed, and the flat and
    silhouette-inflation baselines.
  - always: a 2-D embedding (t-SNE with sklearn when there are > 30 maps, else PCA) of the samples and references,
    saved as <name>_embedding.png.
Writes analysis.json and analysis.md in the run folder (atomically). Ground truth is resized to the output size.
Only finished runs are analysed: a run folder without multiscale.py's COMPLETE.json (an interrupted run) is refused
with one line and exit status 2, as is any other bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.core.cli import Parser, UserError, cli_main, require_complete


def _load_normals(path, size: int) -> np.ndarray:
    """(3, H, W) normals file -> renormalized (3, size, size) float32 (background stays 0)."""
    from models.sfs.tiling import resize

    n = torch.from_numpy(_load_array(path, "normals"))
    if n.ndim != 3 or n.shape[0] != 3:
        raise UserError(f"{path}: expected normals of shape (3, H, W), got {tuple(n.shape)}")
    fg = (n.abs().sum(0, keepdim=True) > 0).float()
    n = resize(n[None], size)[0]
    fg = resize(fg[None], size)[0] > 0.5
    n = n / n.norm(dim=0, keepdim=True).clamp_min(1e-6)
    return (n * fg).numpy()


def analyze_input(folder: Path, gt: str | None = None, gt_flip: str | None = None, mask: str | None = None,
                  embed: str = "auto") -> dict:
    """Analyze one input folder of a multiscale.py run; returns a JSON-able dict and writes the embedding plot."""
    from models.sfs import analysis as A

    run_json = next(folder.glob("*_run.json"))
    try:  # the run's own records: a damaged file is the user's to fix, not a bug
        info = json.loads(run_json.read_text())
        name = info["name"]
        raw = np.load(folder / f"{name}_raw.npz", allow_pickle=False)
        fused = torch.from_numpy(raw["fused"]).permute(0, 3, 1, 2)  # [S, 3, R, R]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{folder}: damaged multiscale.py outputs ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''})") from None
    size = fused.shape[-1]
    gt = gt or info.get("ground_truth", {}).get("normals")
    gt_flip = gt_flip or info.get("ground_truth", {}).get("normals_flip")
    m = raw["mask"]
    m = (torch.nn.functional.interpolate(torch.from_numpy(m)[None, None].float(), size=(size, size), mode="bilinear",
                                         align_corners=False)[0, 0] > 0.5).numpy()
    if mask:
        m = _load_normals_mask(mask, size)
    m = m & raw["valid"].all(0)  # ignore pixels marked invalid in any sample
    out = {"name": name, "seeds": raw["seeds"].tolist(), "size": size, "mask_fraction": float(m.mean())}
    feats = A.flatten_maps(fused)
    labels = ["sample"] * len(feats)
    if gt:
        g = _load_normals(gt, size)
        out["per_seed"] = [dict(zip(("mean_deg", "median_deg"), A.angular_error(s, g, m))) for s in fused]
        means = [d["mean_deg"] for d in out["per_seed"]]
        out["best_mean_deg"], out["avg_mean_deg"] = float(np.min(means)), float(np.mean(means))
        out["best_median_deg"] = float(np.min([d["median_deg"] for d in out["per_seed"]]))
        flat = A.flat_normals(size, size, m)
        out["flat_mean_deg"] = A.angular_error(flat, g, m)[0]
        if not m.all():
            out["inflation_mean_deg"] = A.angular_error(A.inflation_normals(m), g, m)[0]
        f = _load_normals(gt_flip, size) if gt_flip else A.flip(g).numpy()
        image = torch.nn.functional.interpolate(torch.from_numpy(raw["image"].astype(np.float32))[None, None],
                                                size=(size, size), mode="area")[0, 0].numpy()
        split = A.mode_split(fused, g, m, image=image)  # a sample counts for a mode only if it explains the image
        out["modes"] = {k: split[k] for k in ("modes", "n_gt", "n_flip", "minority", "mode_err")}
        ref = A.flatten_maps(torch.from_numpy(np.stack([g, f])))
        out["wasserstein"] = A.wasserstein(feats, ref)
        out["wasserstein_bar"] = float(0.5 * np.linalg.norm(ref[0] - ref[1]))
        out["wasserstein_flat"] = A.wasserstein(A.flatten_maps(torch.from_numpy(flat[None])), ref)
        feats = np.concatenate([feats, ref, A.flatten_maps(torch.from_numpy(flat[None]))])
        labels += ["GT", "flip", "flat"]
    pts, method = A.embed_2d(feats, embed)
    A.plot_embedding(pts, labels, folder / f"{name}_embedding.png", f"{name}: {method} of {len(fused)} samples")
    out["embedding"] = {"method": method, "file": f"{name}_embedding.png"}
    out["seam"] = [A.seam_ratio(s, mask=m)["ratio"] for s in raw_stage_last(raw)]
    return out


def raw_stage_last(raw) -> torch.Tensor:
    """Raw x0 of the last stage [S, 3, r, r] (before fusion), for seam statistics."""
    keys = sorted(k for k in raw.files if k.startswith("stage") and k[5:].isdigit())
    return torch.from_numpy(raw[keys[-1]].astype(np.float32))


def _load_array(path, what: str) -> np.ndarray:
    """A finite numeric .npy as float32; UserError naming the file otherwise."""
    from models.core.cli import check_finite, existing_file

    path = existing_file(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # not an .npy, pickled object array, truncated
        raise UserError(f"{path}: cannot read {what} ({str(err).strip().splitlines()[0][:200]})") from None
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)) or np.iscomplexobj(arr):
        raise UserError(f"{path}: unsupported {what} dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    check_finite(arr, f"{what} {path}")
    return arr


def _load_normals_mask(path, size: int) -> np.ndarray:
    m = _load_array(path, "mask")
    if m.ndim != 2:
        raise UserError(f"{path}: expected a 2-D mask (H, W), got shape {m.shape}")
    m = torch.from_numpy(m)[None, None]
    return (torch.nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0, 0] > 0.5).numpy()


def to_markdown(results: list[dict]) -> str:
    lines = ["| input | modes GT/flip | mode err ° | W | bar ½‖GT−flip‖ | W flat | best/avg mean ° | flat ° | "
             "inflation ° | seam S (last stage) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        def g(k, fmt="{:.2f}"):
            return fmt.format(r[k]) if k in r else "–"

        modes = f"{r['modes']['n_gt']}/{r['modes']['n_flip']}" if "modes" in r else "–"
        mode_err = f"{r['modes']['mode_err']:.1f}" if "modes" in r else "–"
        best = f"{r['best_mean_deg']:.1f}/{r['avg_mean_deg']:.1f}" if "best_mean_deg" in r else "–"
        lines.append(f"| {r['name']} | {modes} | {mode_err} | {g('wasserstein')} | {g('wasserstein_bar')} | "
                     f"{g('wasserstein_flat')} | {best} | {g('flat_mean_deg', '{:.1f}')} | "
                     f"{g('inflation_mean_deg', '{:.1f}')} | {np.mean(r['seam']):.2f} |")
    return "\n".join(lines) + "\n"


def input_folders(run_dir: str | Path) -> list[Path]:
    """The input folders of a finished multiscale.py run (or the one input folder given); UserError otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"not a run folder: {run_dir}")
    if any(run_dir.glob("*_run.json")):  # one input's folder: its run (the parent) must be complete
        require_complete(run_dir.parent)
        return [run_dir]
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir() and any(p.glob("*_run.json")))
    if not folders:
        raise UserError(f"{run_dir}: no multiscale.py outputs (*_run.json) found")
    require_complete(run_dir)
    return folders


def analyze_run(run_dir: str | Path, gt=None, gt_flip=None, mask=None, embed="auto", verbose=False) -> list[dict]:
    """Analyze every input folder of a finished run (or one input folder); writes analysis.json / analysis.md."""
    from data.io import write_text

    run_dir = Path(run_dir)
    results = [analyze_input(f, gt, gt_flip, mask, embed) for f in input_folders(run_dir)]
    write_text(run_dir / "analysis.json", json.dumps(results, indent=2))
    md = to_markdown(results)
    write_text(run_dir / "analysis.md", f"# Analysis of {run_dir.name}\n\n{md}")
    if verbose:
        print(md)
    return results


def main(argv=None) -> int:
    p = Parser(prog="post_process.py", description=__doc__)
    p.add_argument("runs", nargs="+", help="multiscale.py output folders (run folder or one input's folder)")
    p.add_argument("--gt", help="ground-truth normals .npy (3, H, W), overriding the run's record")
    p.add_argument("--gt-flip", help="depth-reversed twin (default: computed from --gt)")
    p.add_argument("--mask", help="evaluation mask .npy (H, W)")
    p.add_argument("--embed", default="auto", choices=["auto", "tsne", "pca"])
    args = p.parse_args(argv)
    for run in args.runs:  # every folder and file is checked before anything is analysed or written
        input_folders(run)
    for path, what, ndim in ((args.gt, "--gt", 3), (args.gt_flip, "--gt-flip", 3), (args.mask, "--mask", 2)):
        if path:
            arr = _load_array(path, what)
            if arr.ndim != ndim or (ndim == 3 and arr.shape[0] != 3):
                raise UserError(f"{what} {path}: expected shape {'(3, H, W)' if ndim == 3 else '(H, W)'}, "
                                f"got {arr.shape}")
    for run in args.runs:
        analyze_run(run, args.gt, args.gt_flip, args.mask, args.embed, verbose=True)
    return 0


if __name__ == "__main__":
    cli_main(main)
