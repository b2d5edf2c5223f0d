#!/usr/bin/env python
"""Structure-from-Duplicates pose recovery checks P1-P4 and preprocessing time per stage, as a Markdown report.

    python benchmarks/sfd_poses.py                          # renders the Mitsuba scenes itself (about 1-2 min)
    python benchmarks/sfd_poses.py --scene-dir scenes/      # reuse scenes made by scripts/sfd_make_scene.py

P1: oracle correspondences (GT projections + 0.5 px noise + 10 % outliers), N = 6, focal initialised 5 % off.
P2: Mitsuba 2048^2, N = 8, SIFT. P3: P2 with the focal fixed. P4: Mitsuba 1024^2, small blurry instances (must stop).
"""
from __future__ import annotations

import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.core.cli import Parser, UserError, cli_main  # noqa: E402

P2_ARGS = ["--n", "8", "--res", "2048", "--spp", "32"]
P2_SEEDS = (0, 1, 2)  # seed 0 is the check; the others show how much the arrangement matters
P4_ARGS = ["--n", "8", "--res", "1024", "--spp", "16", "--seed", "0", "--atlas-size", "96", "--fill", "0.6"]


def _scene(root: Path, name: str, args: list[str]) -> tuple[Path, float]:
    from scripts.sfd_make_scene import main as make_scene

    path = root / name
    if (path / "scene.json").is_file():
        return path, json.loads((path / "scene.json").read_text()).get("render_seconds", float("nan"))
    t0 = time.time()
    make_scene(["--renderer", "mitsuba", "--out", str(path), *args])
    return path, time.time() - t0


def p1() -> dict:
    from models.sfd import oracle, poses as P, scene_layout as L, sfm

    layout = L.make_layout(6, 2048, 0)
    kp, matches = oracle.oracle_tracks(layout, np.random.default_rng(0), points=1000)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        res = sfm.run_sfm(Path(tmp), kp, matches, 2048, 2048, sfm.SfmOptions(focal=layout.focal * 1.05))
        sec = time.time() - t0
    c2w, poses = P.poses_from_sfm(res.cam_from_world, res.registered)
    m = P.pose_metric(c2w, poses, layout.c2w_gl, [layout.object_to_world[i] for i in res.registered])
    m.update(registered=len(res.registered), instances=6, focal_rel_error=res.focal / layout.focal - 1, seconds=sec)
    m["pass"] = bool(m["registered"] == 6 and m["rel_rot_max_deg"] <= 0.5 and abs(m["focal_rel_error"]) <= 0.03)
    return m


def run_preprocess(scene: Path, out: Path, fixed: bool) -> dict:
    from models.sfd.pipeline import Options, preprocess

    opt = Options(fix_focal=fixed, progress=False)
    return preprocess(scene / "raw/000_rgb.png", scene / "raw/000_instance_seg.png", out, opt, gt_scene=scene)


def _pose_run(scene: Path, out: Path, fixed: bool) -> dict:
    t0 = time.time()
    try:
        rep = run_preprocess(scene, out, fixed)
    except UserError as err:
        return {"pass": False, "message": str(err), "total_s": time.time() - t0}
    ev = rep["pose_eval"]
    ev.update(timings_s=rep["timings_s"], total_s=time.time() - t0, points=rep["points"],
              keypoints=rep["keypoints"], pairs=len(rep["matches"]), reproj_px=rep["mean_reprojection_error_px"])
    ok = ev["registered"] == 8 and ev["rel_rot_median_deg"] <= 1.0
    if not fixed:
        ok = ok and ev["rel_rot_max_deg"] <= 2.0 and abs(ev["focal_rel_error"]) <= 0.03 and ev["dt_max"] <= 0.02
    ev["pass"] = bool(ok)
    return ev


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--scene-dir", default=None, help="folder for the rendered scenes (kept; default: a temp folder)")
    p.add_argument("--out", default="benchmarks/results/sfd_poses.md")
    args = p.parse_args(argv)
    root = Path(args.scene_dir or tempfile.mkdtemp(prefix="sfd_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.date.today().isoformat(), "python": platform.python_version()}
    results["P1"] = p1()
    p4_scene, results["render_p4_s"] = _scene(root, "mitsuba_1024_n8_blurry", P4_ARGS)
    results["seeds"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in P2_SEEDS:
            scene, render_s = _scene(root, f"mitsuba_2048_n8_seed{seed}", P2_ARGS + ["--seed", str(seed)])
            for key, fixed in (("P2", False), ("P3", True)):
                ev = _pose_run(scene, Path(tmp) / f"{key}_{seed}", fixed)
                ev["render_s"] = render_s
                results["seeds"][f"{key}/seed{seed}"] = ev
                if seed == P2_SEEDS[0]:
                    results[key] = ev
                    results["render_p2_s"] = render_s
        out4 = Path(tmp) / "P4"
        try:
            run_preprocess(p4_scene, out4, False)
            results["P4"] = {"message": "no error (poses written)", "pass": False}
        except UserError as err:
            results["P4"] = {"message": str(err), "pass": "insufficient matches/registration" in str(err)
                             and not out4.exists()}
    out = Path(args.out)
    from data.io import write_text

    write_text(out.with_suffix(".json"), json.dumps(results, indent=1) + "\n")
    write_text(out, report(results))
    print(report(results))
    return 0


def report(r: dict) -> str:
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    p1, p2, p3, p4 = r["P1"], r["P2"], r["P3"], r["P4"]
    lines = [
        "# Structure from Duplicates: pose recovery (P1-P4) and preprocessing time",
        "",
        f"Hardware: 2-core AMD EPYC CPU, shared with other jobs. Date {r['date']}. Command: `python benchmarks/sfd_poses.py`",
        "(renders the scenes with `scripts/sfd_make_scene.py --renderer mitsuba`, then runs the preprocessing library",
        "exactly as `scripts/sfd_preprocess.py --scene ...` does, defaults: SIFT 4000 features, ratio 0.85, erosion 3 px,",
        "initial focal 1111/800 x width = the renderer's focal, COLMAP 1 thread). Rotation errors are the pairwise relative",
        "rotations over all instance pairs (frame and scale free); dr/dt are the SfD metric (virtual cameras relative to",
        "instance 0, unit mean centre distance, Sim(3) alignment).",
        "",
        "| check | setup | measured | threshold | result |",
        "|---|---|---|---|---|",
        f"| P1 | oracle tracks, N = 6, 2048², 0.5 px noise, 10 % outliers, focal init +5 % | {p1['registered']}/6 registered; "
        f"rel. rotation median {p1['rel_rot_median_deg']:.3f}°, max {p1['rel_rot_max_deg']:.3f}°; focal "
        f"{100 * p1['focal_rel_error']:+.2f} % | all registered, ≤ 0.5°, focal ≤ 3 % | {ok(p1['pass'])} |",
        f"| P2 | Mitsuba 2048², N = 8, 32 spp, seed 0, SIFT | {p2['registered']}/8 registered, {p2['points']} points; "
        f"median {p2['rel_rot_median_deg']:.3f}°, max {p2['rel_rot_max_deg']:.3f}°; focal "
        f"{100 * p2['focal_rel_error']:+.2f} %; dt mean {p2['dt_mean']:.4f}, max {p2['dt_max']:.4f}; dr mean "
        f"{p2['dr_mean_deg']:.3f}° | 8/8, ≤ 1°, ≤ 2°, ≤ 3 %, dt ≤ 0.02 | {ok(p2['pass'])} |",
        f"| P3 | P2 with `--fix-focal` | median {p3['rel_rot_median_deg']:.3f}°, max {p3['rel_rot_max_deg']:.3f}°; "
        f"dt max {p3['dt_max']:.4f} | median ≤ 1° | {ok(p3['pass'])} |",
        f"| P4 | Mitsuba 1024², N = 8, small blurry instances (atlas 96 px, fill 0.6) | `{p4['message'][:230]}` | "
        f"stops with \"insufficient matches/registration\", writes nothing | {ok(p4['pass'])} |",
        "",
        f"Preprocessing time per stage, P2 input (N = 8, 2048² photo, train_res 800), seconds "
        f"(total {p2['total_s']:.1f} s; rendering the photo took {r['render_p2_s']:.0f} s):",
        "",
        "| stage | " + " | ".join(p2["timings_s"]) + " |",
        "|---|" + "---|" * len(p2["timings_s"]),
        "| seconds | " + " | ".join(f"{v:.2f}" for v in p2["timings_s"].values()) + " |",
        "",
        f"Keypoints per instance (P2): {list(p2['keypoints'].values())}; {p2['pairs']} of 28 pairs kept; mean "
        f"reprojection error {p2['reproj_px']:.2f} px.",
        "",
        "Other arrangements (same generator and settings, other --seed; not part of the check):",
        "",
        "| run | registered | rel. rot. median / max | focal | dt max | result |",
        "|---|---|---|---|---|---|",
    ]
    for name, ev in r["seeds"].items():
        if "message" in ev:
            lines.append(f"| {name} | - | - | - | - | FAIL (stopped: `{ev['message'][:120]}`) |")
        else:
            lines.append(f"| {name} | {ev['registered']}/8 | {ev['rel_rot_median_deg']:.3f}° / "
                         f"{ev['rel_rot_max_deg']:.3f}° | {100 * ev['focal_rel_error']:+.2f} % | {ev['dt_max']:.4f} | "
                         f"{ok(ev['pass'])} |")
    lines += [
        "",
        "Notes: the renders use 32 spp (the 1024² negative 16 spp), `max_depth` 2, the generator's default camera",
        "(focal 1111/800 × width); the initial SfM focal equals the true one except in P1 (+5 %). A FAIL in the",
        "arrangements table means fewer than 8 of 8 registered: the instances SfM could not add become background",
        "(the run still succeeds with the others, which meet `--min-registered`), and the registered ones keep",
        "sub-degree errors. P4 stops through a hard check, not silently: the error line above says which one.",
        "Timings are wall-clock on a CPU shared with other jobs, so they vary by about 2x between runs.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    cli_main(main)
