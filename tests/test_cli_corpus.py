"""The bad-input corpus: malformed files, flags and output paths x every CLI.

Every row must end the same way: exit status 2, exactly one stderr line naming the file or flag, no traceback, and
nothing written (neither next to the inputs, nor under --out, nor in the repository's evals/ or benchmarks/results/).
Rows run in-process (`cli_main(main, argv)`, as each script's __main__ does) so the table stays fast; a few rows run
as real subprocesses through tests/cli_corpus.py to prove the path users see. Every row fails before a model runs.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_corpus import ROOT, assert_user_error, snapshot
from models.core.cli import cli_main

SCRIPTS = {
    "run_inference": "run_inference.py", "multiscale": "multiscale.py", "render_diffuse": "render_diffuse.py",
    "post_process": "post_process.py", "render_motion": "scripts/render_motion.py", "plot_log": "scripts/plot_log.py",
    "check_env": "scripts/check_env.py", "make_sfs_test_data": "scripts/make_sfs_test_data.py",
    "sfs_checks": "benchmarks/sfs_checks.py", "diffmotion_checks": "benchmarks/diffmotion_checks.py",
    "bench_attention": "benchmarks/bench_attention.py",
}
_MODULES: dict = {}


def module(cli: str):
    """The CLI's module, imported once from its file (scripts/ and benchmarks/ are not packages)."""
    if cli not in _MODULES:
        spec = importlib.util.spec_from_file_location(f"corpus_{cli}", ROOT / SCRIPTS[cli])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _MODULES[cli] = mod
    return _MODULES[cli]


# ---------------------------------------------------------------------------------------------------- the inputs
def _png(path: Path, arr: np.ndarray) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, arr)
    return path


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> Path:
    """One folder of good and bad inputs, tiny checkpoints and tiny run folders, shared by every row."""
    from data import motion_render as mr
    from models import build_system
    from models.core.checkpoint import export_checkpoint
    from models.core.cli import mark_complete
    from models.core.config import load_config, to_dict

    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    # checkpoints: tiny but real, a wrong system, a truncated file, a text file
    for name, cfg_path in (("dm", "configs/diffmotion/tiny.json"), ("sfs", "configs/sfs/tiny.json")):
        cfg = load_config(ROOT / cfg_path)
        torch.manual_seed(0)
        system = build_system(cfg)
        export_checkpoint(d / f"{name}.safetensors", system=cfg.system, config=to_dict(cfg),
                          state_dict=system.net.state_dict(), step=1)
    export_checkpoint(d / "toy.safetensors", system="toy", config={"system": "toy"}, state_dict={"w": torch.zeros(1)})
    (d / "trunc.safetensors").write_bytes((d / "dm.safetensors").read_bytes()[:200])
    (d / "text.safetensors").write_text("not a checkpoint\n")
    # images and arrays
    _png(d / "good.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    _png(d / "other.png", rng.integers(0, 256, (40, 32, 3), dtype=np.uint8))
    np.save(d / "good.npy", rng.random((32, 32)).astype(np.float32))
    bad = np.full((32, 32, 3), 0.5, np.float32)
    bad[3, 3, 0] = np.nan
    np.save(d / "nan.npy", bad)
    np.save(d / "inf.npy", np.where(np.eye(32, dtype=bool), np.inf, 0.5).astype(np.float32))
    np.save(d / "range.npy", np.full((32, 32), 255.0, np.float32))
    np.save(d / "bool.npy", np.ones((32, 32), bool))
    np.save(d / "five.npy", np.zeros((32, 32, 5), np.float32))
    np.save(d / "tiny.npy", np.full((8, 8), 0.5, np.float32))
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "mask_small.npy", np.ones((20, 20), np.float32))
    np.save(d / "mask_zero.npy", np.zeros((32, 32), np.float32))
    np.save(d / "mask_nan.npy", np.full((32, 32), np.nan, np.float32))
    (d / "trunc.png").write_bytes((d / "good.png").read_bytes()[:60])
    (d / "text.png").write_text("hello\n")
    (d / "zero.png").write_bytes(b"")
    (d / "dir.png").mkdir()
    (d / "afile").write_text("a file where a folder is expected\n")
    (d / "empty_dir").mkdir()
    (d / "full_dir").mkdir()
    (d / "full_dir" / "old_result.txt").write_text("previous results\n")
    # normal maps (render_diffuse)
    n = np.zeros((3, 16, 16), np.float32)
    n[2] = 1
    np.save(d / "normals.npy", n)
    np.save(d / "normals_nan.npy", np.where(np.eye(16, dtype=bool)[None], np.nan, n).astype(np.float32))
    np.save(d / "normals_range.npy", n * 3)
    np.save(d / "normals_two.npy", n[:2])
    (d / "rendered").mkdir()
    for ext in ("png", "npy", "json"):
        (d / "rendered" / f"normals.{ext}").write_text("an earlier result\n")
    # clips (run_inference)
    (d / "clip2").mkdir()
    for k in range(2):
        _png(d / "clip2" / f"f{k}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for name, text in (("idx_broken", "[{"), ("idx_dict", '{"a": 1}'), ("idx_entry", '[{"x": 1}]')):
        (d / name).mkdir()
        (d / name / "clips.json").write_text(text)
    (d / "stim_broken").mkdir()
    (d / "stim_broken" / "stimuli.json").write_text('{"stimuli": [1, 2]}')
    (d / "bad_schedule.json").write_text("{ not json")
    # multiscale-like run folders (post_process)
    for name, complete in (("run_partial", False), ("run_done", True), ("run_damaged", True)):
        (d / name / "star").mkdir(parents=True)
        (d / name / "star" / "star_run.json").write_text('{"name": "star"}' if name != "run_damaged" else "{")
        if complete:
            mark_complete(d / name)
    np.save(d / "gt_2d.npy", np.zeros((32, 32), np.float32))
    np.save(d / "mask_3d.npy", np.zeros((3, 32, 32), np.float32))
    # a tiny rendered dataset (render_motion): resolution 16, seed 0, numpy backend
    mr.generate(d / "motion16", 1, 1, resolution=16, backend="numpy", seed=0, progress=False)
    (d / "meshes_empty").mkdir()
    # training logs (plot_log)
    for name, text in (("log_badjson", '{"step": 1, "loss": 1}\n{oops\n'), ("log_nostep", '{"loss": 1}\n'),
                       ("log_empty", "\n"), ("log_good", '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')):
        (d / name).mkdir()
        (d / name / "log.jsonl").write_text(text)
    (d / "exists.png").write_bytes(b"an earlier plot")
    (d / "exists.md").write_text("an earlier report\n")
    return d


# ---------------------------------------------------------------------------------------------------- the table
# (cli, args with {d} = the env folder and {o} = a fresh, absent output folder, text the error line must contain)
RI = ["--ckpt", "{d}/dm.safetensors", "--out-dir", "{o}", "--device", "cpu", "--seeds", "0", "--steps", "1"]
RI_CLIP = ["{d}/good.png"] + RI
MS = ["--ckpt", "{d}/sfs.safetensors", "--out", "{o}", "--seeds", "0", "--device", "cpu", "--quiet"]
MS_IN = ["--inputs", "{d}/good.npy"] + MS
RD = ["{d}/normals.npy", "--out", "{o}"]
RM = ["--out", "{o}", "--backend", "numpy", "--resolution", "16", "--num-objects", "1", "--sequences-per-object", "1",
      "--workers", "1", "--no-progress"]
RM16 = ["--out", "{d}/motion16", "--backend", "numpy", "--num-objects", "1", "--sequences-per-object", "1",
        "--workers", "1", "--no-progress"]
PL = ["{d}/log_good", "--out", "{o}/loss.png"]
SC = ["--ckpt", "{d}/sfs.safetensors", "--out", "{o}", "--fast", "--device", "cpu"]
DC = ["--ckpt", "{d}/dm.safetensors", "--out", "{o}/checks.md", "--device", "cpu"]
BA = ["--sizes", "8", "--kernel", "3", "--reps", "1", "--warmup", "0"]

ROWS = [
    # run_inference.py: flags
    ("run_inference", RI_CLIP + ["--device", "bogus"], "--device"),
    ("run_inference", RI_CLIP + ["--device", "cuda:7"], "--device"),
    ("run_inference", RI_CLIP + ["--threads", "-1"], "--threads"),
    ("run_inference", RI_CLIP + ["--threads", "many"], "--threads"),
    ("run_inference", RI_CLIP + ["--sampling-shift", "nan"], "--sampling-shift"),
    ("run_inference", RI_CLIP + ["--sampling-shift", "inf"], "--sampling-shift"),
    ("run_inference", RI_CLIP + ["--sampling-shift", "-1"], "--sampling-shift"),
    ("run_inference", RI_CLIP + ["--steps", "0"], "--steps"),
    ("run_inference", RI_CLIP + ["--batch", "0"], "--batch"),
    ("run_inference", RI_CLIP + ["--seeds", "x"], "--seeds"),
    ("run_inference", RI_CLIP + ["--seeds", "5-2"], "--seeds"),
    ("run_inference", RI_CLIP + ["--precision", "fp8"], "--precision"),
    ("run_inference", RI_CLIP + ["--resolution", "0"], "--resolution"),
    ("run_inference", RI_CLIP + ["--resolution", "30"], "--resolution"),
    ("run_inference", RI_CLIP + ["--fit", "crop"], "--fit"),
    ("run_inference", RI_CLIP + ["--no-such-flag"], "--no-such-flag"),
    # run_inference.py: input files
    ("run_inference", ["{d}/nan.npy"] + RI, "nan.npy"),
    ("run_inference", ["{d}/inf.npy"] + RI, "inf.npy"),
    ("run_inference", ["{d}/range.npy"] + RI, "range.npy"),
    ("run_inference", ["{d}/five.npy"] + RI, "five.npy"),
    ("run_inference", ["{d}/pickled.npy"] + RI, "pickled.npy"),
    ("run_inference", ["{d}/trunc.png"] + RI, "trunc.png"),
    ("run_inference", ["{d}/text.png"] + RI, "text.png"),
    ("run_inference", ["{d}/zero.png"] + RI, "zero.png"),
    ("run_inference", ["{d}/missing.png"] + RI, "missing.png"),
    ("run_inference", ["{d}/clip2"] + RI, "clip2"),
    ("run_inference", ["--clip", "{d}/good.png", "{d}/good.png"] + RI, "3 frames"),
    ("run_inference", ["--clip", "{d}/good.png", "{d}/other.png", "{d}/good.png"] + RI, "other.png"),
    ("run_inference", ["{d}/idx_broken"] + RI, "clips.json"),
    ("run_inference", ["{d}/idx_dict"] + RI, "clips.json"),
    ("run_inference", ["{d}/idx_entry"] + RI, "clips.json"),
    # run_inference.py: checkpoints and output paths
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/none.safetensors", "--out-dir", "{o}"], "none.safetensors"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/trunc.safetensors", "--out-dir", "{o}"], "trunc.safetensors"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/text.safetensors", "--out-dir", "{o}"], "text.safetensors"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/sfs.safetensors", "--out-dir", "{o}"], "multiscale.py"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/toy.safetensors", "--out-dir", "{o}"], "diffmotion"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/empty_dir", "--out-dir", "{o}"], "empty_dir"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/dm.safetensors", "--out-dir", "{d}/afile"], "--out-dir"),
    ("run_inference", ["{d}/good.png", "--ckpt", "{d}/dm.safetensors", "--out-dir", "{d}/afile/sub"], "afile"),
    # multiscale.py: inputs
    ("multiscale", ["--inputs", "{d}/nan.npy"] + MS, "nan.npy"),
    ("multiscale", ["--inputs", "{d}/inf.npy"] + MS, "inf.npy"),
    ("multiscale", ["--inputs", "{d}/range.npy"] + MS, "range.npy"),
    ("multiscale", ["--inputs", "{d}/bool.npy"] + MS, "bool.npy"),
    ("multiscale", ["--inputs", "{d}/tiny.npy"] + MS, "tiny.npy"),
    ("multiscale", ["--inputs", "{d}/five.npy"] + MS, "five.npy"),
    ("multiscale", ["--inputs", "{d}/pickled.npy"] + MS, "pickled.npy"),
    ("multiscale", ["--inputs", "{d}/trunc.png"] + MS, "trunc.png"),
    ("multiscale", ["--inputs", "{d}/text.png"] + MS, "text.png"),
    ("multiscale", ["--inputs", "{d}/missing.npy"] + MS, "missing.npy"),
    ("multiscale", ["--inputs", "{d}/empty_dir"] + MS, "empty_dir"),
    ("multiscale", ["--inputs", "{d}/stim_broken"] + MS, "stimuli.json"),
    ("multiscale", MS_IN + ["--mask", "{d}/missing_mask.npy"], "missing_mask.npy"),
    ("multiscale", MS_IN + ["--mask", "{d}/mask_small.npy"], "mask_small.npy"),
    ("multiscale", MS_IN + ["--mask", "{d}/mask_zero.npy"], "mask_zero.npy"),
    ("multiscale", MS_IN + ["--mask", "{d}/mask_nan.npy"], "mask_nan.npy"),
    # multiscale.py: flags, checkpoints, output paths
    ("multiscale", MS_IN + ["--schedule", "bogus"], "--schedule"),
    ("multiscale", MS_IN + ["--schedule", "{d}/bad_schedule.json"], "bad_schedule.json"),
    ("multiscale", MS_IN + ["--seeds", "a-b"], "--seeds"),
    ("multiscale", MS_IN + ["--device", "bogus"], "--device"),
    ("multiscale", MS_IN + ["--threads", "0"], "--threads"),
    ("multiscale", MS_IN + ["--precision", "fp16"], "--precision"),
    ("multiscale", MS_IN + ["--fit", "crop"], "--fit"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/none.safetensors", "--out", "{o}"], "none.safetensors"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/trunc.safetensors", "--out", "{o}"], "trunc.safetensors"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/dm.safetensors", "--out", "{o}"], "dm.safetensors"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/sfs.safetensors", "--out", "{d}/afile"], "--out"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/sfs.safetensors", "--out", "{d}/afile/x"], "afile"),
    ("multiscale", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/sfs.safetensors", "--out", "{d}/full_dir"], "not empty"),
    # render_diffuse.py
    ("render_diffuse", ["{d}/normals_nan.npy", "--out", "{o}"], "normals_nan.npy"),
    ("render_diffuse", ["{d}/normals_range.npy", "--out", "{o}"], "normals_range.npy"),
    ("render_diffuse", ["{d}/normals_two.npy", "--out", "{o}"], "normals_two.npy"),
    ("render_diffuse", ["{d}/pickled.npy", "--out", "{o}"], "pickled.npy"),
    ("render_diffuse", ["{d}/missing.npy", "--out", "{o}"], "missing.npy"),
    ("render_diffuse", ["{d}/empty_dir", "--out", "{o}"], "empty_dir"),
    ("render_diffuse", ["{d}/normals.npy", "--out", "{d}/afile"], "--out"),
    ("render_diffuse", ["{d}/normals.npy", "--out", "{d}/rendered"], "exists already"),
    ("render_diffuse", RD + ["--light", "0", "0", "0"], "--light"),
    ("render_diffuse", RD + ["--light", "nan", "0", "1"], "--light"),
    ("render_diffuse", RD + ["--albedo", "0"], "--albedo"),
    ("render_diffuse", RD + ["--albedo", "1.5"], "--albedo"),
    ("render_diffuse", RD + ["--albedo-range", "0.9", "0.1"], "--albedo-range"),
    ("render_diffuse", RD + ["--min-lz", "1"], "--min-lz"),
    ("render_diffuse", RD + ["--noise", "-1"], "--noise"),
    ("render_diffuse", RD + ["--downsample", "0"], "--downsample"),
    ("render_diffuse", RD + ["--fg-tol", "0"], "--fg-tol"),
    ("render_diffuse", RD + ["--seed", "-3"], "--seed"),
    ("render_diffuse", RD + ["--threads", "-1"], "--threads"),
    ("render_diffuse", RD + ["--mask", "{d}/missing_mask.npy"], "missing_mask.npy"),
    ("render_diffuse", RD + ["--mask", "{d}/mask_small.npy"], "mask_small.npy"),
    # post_process.py
    ("post_process", ["{d}/run_partial"], "incomplete"),
    ("post_process", ["{d}/run_partial/star"], "incomplete"),
    ("post_process", ["{d}/missing_run"], "missing_run"),
    ("post_process", ["{d}/empty_dir"], "empty_dir"),
    ("post_process", ["{d}/afile"], "afile"),
    ("post_process", ["{d}/run_done", "--gt", "{d}/missing_gt.npy"], "missing_gt.npy"),
    ("post_process", ["{d}/run_done", "--gt", "{d}/nan.npy"], "nan.npy"),
    ("post_process", ["{d}/run_done", "--gt", "{d}/gt_2d.npy"], "--gt"),
    ("post_process", ["{d}/run_done", "--gt", "{d}/pickled.npy"], "pickled.npy"),
    ("post_process", ["{d}/run_done", "--mask", "{d}/mask_3d.npy"], "--mask"),
    ("post_process", ["{d}/run_damaged"], "run_damaged"),
    ("post_process", ["{d}/run_done", "--embed", "umap"], "--embed"),
    # scripts/render_motion.py
    ("render_motion", RM + ["--spp", "0"], "--spp"),
    ("render_motion", RM16 + ["--resolution", "32"], "resolution"),
    ("render_motion", RM16 + ["--resolution", "16", "--seed", "1"], "seed"),
    ("render_motion", RM16 + ["--resolution", "16", "--held-out"], "held_out"),
    ("render_motion", RM + ["--resolution", "4"], "--resolution"),
    ("render_motion", RM + ["--resolution", "100000"], "--resolution"),
    ("render_motion", RM + ["--seed", "-1"], "--seed"),
    ("render_motion", RM + ["--num-objects", "0"], "--num-objects"),
    ("render_motion", RM + ["--sequences-per-object", "-2"], "--sequences-per-object"),
    ("render_motion", RM + ["--workers", "0"], "--workers"),
    ("render_motion", RM + ["--variant", "llvm_ad_rgb"], "--variant"),
    ("render_motion", RM + ["--backend", "blender"], "--backend"),
    ("render_motion", RM + ["--mesh-fraction", "1.5"], "--mesh-fraction"),
    ("render_motion", RM + ["--mesh-fraction", "nan"], "--mesh-fraction"),
    ("render_motion", RM + ["--meshes", "{d}/no_meshes"], "--meshes"),
    ("render_motion", RM + ["--meshes", "{d}/meshes_empty"], "--meshes"),
    ("render_motion", RM + ["--families", "teapot"], "--families"),
    ("render_motion", RM + ["--pointer", "../up.json"], "--pointer"),
    ("render_motion", ["--out", "{d}/afile", "--backend", "numpy"], "--out"),
    ("render_motion", ["--out", "{d}/afile/sub", "--backend", "numpy"], "afile"),
    ("render_motion", ["--out", "{d}/full_dir", "--backend", "numpy", "--test-clips"], "not empty"),
    ("render_motion", ["--out", "{o}", "--reindex"], "--out"),
    # scripts/plot_log.py
    ("plot_log", ["{d}/missing_run", "--out", "{o}/a.png"], "missing_run"),
    ("plot_log", ["{d}/log_badjson", "--out", "{o}/a.png"], "log.jsonl:2"),
    ("plot_log", ["{d}/log_nostep", "--out", "{o}/a.png"], "step"),
    ("plot_log", ["{d}/log_empty", "--out", "{o}/a.png"], "no log records"),
    ("plot_log", PL[:1] + ["--out", "{o}/a.png", "--keys", "nope"], "--keys"),
    ("plot_log", PL[:1] + ["--out", "{d}/exists.png"], "exists already"),
    ("plot_log", PL[:1] + ["--out", "{d}/empty_dir"], "--out"),
    ("plot_log", PL[:1] + ["--out", "{o}/a.txt"], "--out"),
    ("plot_log", PL[:1] + ["--out", "{d}/afile/a.png"], "afile"),
    ("plot_log", PL[:1], "--out"),
    # scripts/check_env.py, scripts/make_sfs_test_data.py
    ("check_env", ["--verbose"], "--verbose"),
    ("make_sfs_test_data", ["--out", "{d}/afile"], "--out"),
    ("make_sfs_test_data", ["--out", "{d}/afile/sub"], "afile"),
    ("make_sfs_test_data", ["--out", "{d}/full_dir"], "not empty"),
    # benchmarks/sfs_checks.py
    ("sfs_checks", SC + ["--device", "bogus"], "--device"),
    ("sfs_checks", SC + ["--seeds", "0"], "--seeds"),
    ("sfs_checks", SC + ["--heldout", "2"], "--heldout"),
    ("sfs_checks", SC + ["--threads", "0"], "--threads"),
    ("sfs_checks", SC + ["--schedule", "bogus"], "--schedule"),
    ("sfs_checks", SC + ["--stimuli", "{d}/empty_dir"], "stimuli.json"),
    ("sfs_checks", SC + ["--stimuli", "{d}/stim_broken"], "stimuli.json"),
    ("sfs_checks", ["--ckpt", "{d}/none.safetensors", "--out", "{o}", "--fast"], "none.safetensors"),
    ("sfs_checks", ["--ckpt", "{d}/dm.safetensors", "--out", "{o}", "--fast"], "dm.safetensors"),
    ("sfs_checks", ["--ckpt", "{d}/sfs.safetensors", "--out", "{d}/afile", "--fast"], "--out"),
    ("sfs_checks", ["--ckpt", "{d}/sfs.safetensors", "--out", "{d}/full_dir", "--fast"], "not empty"),
    # benchmarks/diffmotion_checks.py
    ("diffmotion_checks", DC + ["--steps", "0"], "--steps"),
    ("diffmotion_checks", DC + ["--max-clips", "-1"], "--max-clips"),
    ("diffmotion_checks", DC + ["--device", "bogus"], "--device"),
    ("diffmotion_checks", DC + ["--seeds", "x"], "--seeds"),
    ("diffmotion_checks", ["--ckpt", "{d}/none.safetensors", "--out", "{o}/c.md"], "none.safetensors"),
    ("diffmotion_checks", ["--ckpt", "{d}/dm.safetensors", "--out", "{d}/exists.md"], "exists already"),
    ("diffmotion_checks", ["--ckpt", "{d}/dm.safetensors", "--out", "{o}/c.txt"], "--out"),
    ("diffmotion_checks", ["--ckpt", "{d}/dm.safetensors", "--out", "{d}/afile/c.md"], "afile"),
    # benchmarks/bench_attention.py
    ("bench_attention", BA + ["--kernel", "4"], "--kernel"),
    ("bench_attention", BA + ["--kernel", "9"], "--kernel"),
    ("bench_attention", ["--sizes", "0"], "--sizes"),
    ("bench_attention", BA + ["--device", "bogus"], "--device"),
    ("bench_attention", BA + ["--backends", "natten"], "--backends"),
    ("bench_attention", BA + ["--backends", "flash"], "--backends"),
    ("bench_attention", BA + ["--threads", "-1"], "--threads"),
    ("bench_attention", BA + ["--reps", "0"], "--reps"),
    ("bench_attention", BA + ["--out", "{d}/exists.md"], "exists already"),
    ("bench_attention", BA + ["--out", "{d}/afile/r.md"], "afile"),
]
if torch.cuda.is_available():  # these two are valid on a GPU machine
    ROWS = [r for r in ROWS if "cuda:7" not in r[1] and "natten" not in r[1]]


def _fill(args: list, d: Path, o: Path) -> list[str]:
    return [a.replace("{d}", str(d)).replace("{o}", str(o)) for a in args]


def _watched(d: Path) -> dict:
    """What the corpus may not change: the inputs folder (recursively) and the repository's output folders."""
    tops = {p: sorted(x.name for x in p.iterdir()) if p.is_dir() else None
            for p in (ROOT / "evals", ROOT / "benchmarks" / "results", ROOT / "test_data" / "sfs")}
    return {"inputs": snapshot(d), "repo": tops}


def _row_id(row) -> str:
    cli, args, _ = row
    return f"{cli}:{' '.join(a.replace('{d}/', '').replace('{o}', 'OUT') for a in args if not a.startswith('{o}'))}"[:90]


@pytest.mark.parametrize("row", ROWS, ids=[f"{i:03d}-{_row_id(r)}" for i, r in enumerate(ROWS)])
def test_bad_input_is_one_line_exit_2(row, env, tmp_path, capsys):
    cli, args, mentions = row
    out = tmp_path / "out"
    argv = _fill(args, env, out)
    main = module(cli).main
    before = _watched(env)
    threads = torch.get_num_threads()
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exc:
            cli_main(main, argv)
    finally:
        torch.set_num_threads(threads)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 2, f"{cli} {argv}: exit {exc.value.code}\n{err}"
    assert len(err) == 1, f"{cli} {argv}: expected one stderr line, got\n" + "\n".join(err)
    assert "Traceback" not in err[0] and "error" in err[0].lower(), err[0]
    assert mentions.lower() in err[0].lower(), f"{err[0]!r} does not name {mentions!r}"
    assert not out.exists(), f"{cli} {argv}: created {out}"
    assert _watched(env) == before, f"{cli} {argv}: wrote files"


SLOW = pytest.mark.slow  # each subprocess pays torch's start-up (2-8 s on the shared CPU); two stay in the default run
SUBPROCESS_ROWS = [  # the real entry points: no traceback on the path users take
    pytest.param("run_inference.py", ["{d}/nan.npy", "--ckpt", "{d}/dm.safetensors", "--out-dir", "{o}"], "nan.npy",
                 id="run_inference.py"),
    pytest.param("post_process.py", ["{d}/run_partial"], "incomplete", id="post_process.py"),
    pytest.param("multiscale.py", ["--inputs", "{d}/good.npy", "--ckpt", "{d}/sfs.safetensors", "--out", "{d}/afile"],
                 "--out", id="multiscale.py", marks=SLOW),
    pytest.param("scripts/render_motion.py", RM16 + ["--resolution", "32"], "resolution", id="render_motion.py",
                 marks=SLOW),
    pytest.param("render_diffuse.py", ["{d}/normals.npy", "--out", "{d}/rendered"], "exists already",
                 id="render_diffuse.py", marks=SLOW),
    pytest.param("benchmarks/bench_attention.py", BA + ["--kernel", "4"], "--kernel", id="bench_attention.py",
                 marks=SLOW),
]


@pytest.mark.parametrize("script, args, mentions", SUBPROCESS_ROWS)
def test_bad_input_subprocess(script, args, mentions, env, tmp_path):
    assert_user_error(script, _fill(args, env, tmp_path / "out"), watch=env, mentions=mentions)
    assert not (tmp_path / "out").exists()


def test_corpus_covers_every_cli():
    """The table is the issue's corpus: at least 60 rows, every CLI, each named in SCRIPTS, none duplicated."""
    assert len(ROWS) >= 60
    assert {cli for cli, _, _ in ROWS} == set(SCRIPTS)
    keys = [(cli, tuple(args)) for cli, args, _ in ROWS]
    assert len(keys) == len(set(keys))


def test_a_real_bug_keeps_its_traceback(capsys):
    """Only UserError becomes one line: any other exception (a bug) propagates with its traceback."""
    def broken(argv):
        raise ValueError("a bug, not a user error")

    with pytest.raises(ValueError, match="a bug"):
        cli_main(broken, [])
    assert capsys.readouterr().err == ""
