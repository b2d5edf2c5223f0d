#!/usr/bin/env bash
# The SfD pipeline end to end on our own Mitsuba pile (N = 5), at a CPU scale (configs/sfd/cpu.json): render, part 1
# (SIFT + SfM poses), Geo -> Vis -> Mat, export, eval. Re-running continues where it stopped (each stage resumes).
#   nohup bash benchmarks/sfd_real_run.sh > runs/sfd_real.log 2>&1 &
set -euo pipefail
export OMP_NUM_THREADS=1
R=${R:-runs/sfd_real}
mkdir -p "$R"
[ -d "$R/scene" ] || python scripts/sfd_make_scene.py --out "$R/scene" --renderer mitsuba --n 5 --res 2048 --spp 16 --seed 1
[ -f "$R/data/COMPLETE.json" ] || python scripts/sfd_preprocess.py --scene "$R/scene" --out "$R/data" --train-res 128 \
    --fix-focal --no-progress
T="python train_diffusion.py --config configs/sfd/cpu.json --data-root $R/data --save-every 250 --no-demo"
$T --out "$R/geo"
$T --out "$R/vis" --set stage=vis train.steps=200 --init-from "$R/geo/model.safetensors" --init-map geo.=geo.
$T --out "$R/mat" --set stage=mat train.steps=300 --init-from "$R/vis/model.safetensors" --init-map geo.=geo. vis.=vis.
[ -f "$R/export/COMPLETE.json" ] || python scripts/sfd_export.py --ckpt "$R/mat/model.safetensors" --out "$R/export" \
    --mesh-res 128 --texture-res 512 --overwrite
python scripts/sfd_eval.py --ckpt "$R/mat/model.safetensors" --data-root "$R/data" --export "$R/export" \
    --gt-scene "$R/scene" --samples 50000 --out "$R/metrics.json"
