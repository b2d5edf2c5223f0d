#!/usr/bin/env bash
# The Omages GPU run, prepared for a lent CUDA machine (about 12 minutes in all):
#   1. 9,000 procedural shapes (1,000 train + 125 test per class) on every core
#   2. N2G DiT-S/2 (configs/omages/n2g_s2_gpu20.json, 32.48 M, batch 256) in bf16 for most of the budget
#   3. G2M DiT-S/2 with concatenated geometry (configs/omages/g2m_gpu20.json)
#   4. the B4-B7 report (benchmarks/omages_generation.py) for the new pair, to compare with the shipped CPU models
# Everything goes to one results folder (summary.md + one log per step); the runs resume from it when carried back.
#
#   bash scripts/omages_device_run.sh [RESULTS_DIR] [BUDGET_SECONDS]     # on the GPU machine (default 720 s)
#   bash scripts/omages_device_run.sh --dry-run RESULTS_DIR               # the same steps, CPU-sized (tested)
#
# The dataset needs xatlas, trimesh and scikit-image: carry their wheels in .whl/ if the machine lacks them.
set -uo pipefail
cd "$(dirname "$0")/.."
DEFAULT_BUDGET=720
source scripts/device_common.sh "$@"

if [ "$DRY" = 1 ]; then
  DATA="$R/data"
  step dataset 120 python3 scripts/omages_dataset.py --out "$DATA" --families chair,vase --train-per-class 2 \
    --test-per-class 1 --workers 1
  step n2g 120 python3 train_diffusion.py --config configs/omages/tiny.json --data-root "$DATA" --out "$R/n2g" \
    --set data.synthetic=0 --no-demo --cpu
  step g2m 120 python3 train_diffusion.py --config configs/omages/g2m_tiny.json --data-root "$DATA" --out "$R/g2m" \
    --set data.synthetic=0 --no-demo --cpu
  step report 300 python3 benchmarks/omages_generation.py --n2g "$R/n2g/model.safetensors" \
    --g2m "$R/g2m/model.safetensors" --data-root "$DATA" --classes chair,vase --per-class 1 --steps 2 --ref 2 \
    --material-n 2 --work "$R/gen" --out "$R/omages_generation.md"
else
  DATA=data_cache/omages/proc9000
  step dataset 240 python3 scripts/omages_dataset.py --out "$DATA" --train-per-class 1000 --test-per-class 125 \
    --workers "$(nproc)"
  step n2g 330 python3 train_diffusion.py --config configs/omages/n2g_s2_gpu20.json --data-root "$DATA" \
    --out "$R/n2g" --precision bf16 --tf32 --save-every 250 --no-demo
  step g2m 120 python3 train_diffusion.py --config configs/omages/g2m_gpu20.json --data-root "$DATA" \
    --out "$R/g2m" --precision bf16 --tf32 --save-every 250 --no-demo
  step report $(( $(left) - 10 )) python3 benchmarks/omages_generation.py --n2g "$R/n2g/model.safetensors" \
    --g2m "$R/g2m/model.safetensors" --data-root "$DATA" --per-class 16 --steps 100 --ref 128 --material-n 64 \
    --device cuda --work "$R/gen" --out "$R/omages_generation.md"
fi
echo "total $(( $(date +%s) - START )) s" >> "$SUMMARY"
cat "$SUMMARY"
