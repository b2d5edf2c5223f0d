#!/usr/bin/env bash
# One prepared GPU check, run the moment a CUDA machine is available (about 10 minutes in all):
#   1. the gpu / natten tests            4. SfS faithful vcycle160 timing, 16 batched seeds
#   2. natten vs our attention           5. what is left of the budget: train the SfS faithful recipe
#   3. DiffMotion nattn_mid bf16 training throughput at 256^2 with MFU
# Everything goes to one results folder (summary.md + one file per step).
#
#   bash scripts/device_check.sh [RESULTS_DIR] [BUDGET_SECONDS]      # on the GPU machine (default budget 540 s)
#   bash scripts/device_check.sh --dry-run RESULTS_DIR                # the same steps, CPU-sized (tested in CI)
#
# Wheels the GPU machine lacks can be carried in .whl/ (installed to /tmp/site first when present).
set -uo pipefail
cd "$(dirname "$0")/.."
DEFAULT_BUDGET=540
source scripts/device_common.sh "$@"

if [ "$DRY" = 1 ]; then
  step tests_gpu 120 python3 -m pytest -q -m "gpu and not slow" tests/test_attention.py
  step attention 120 python3 benchmarks/bench_attention.py --sizes 16 --reps 1 --warmup 0 --threads 1 --out "$R/attention.md"
  step diffmotion_step 120 python3 benchmarks/bench_train_step.py --config configs/diffmotion/tiny.json --steps 1 \
    --warmup 0 --threads 1 --out "$R/diffmotion_step.json"
  step sfs_vcycle 240 python3 multiscale.py --inputs test_data/sfs/star_image.npy --schedule fast --seeds 0-1 \
    --threads 1 --quiet --out "$R/sfs_vcycle"
  step sfs_train 240 python3 train_diffusion.py --config configs/sfs/tiny.json --out "$R/sfs_train" --no-demo \
    --data-root "$R/sfs_cache" --set train.steps=2
else
  step tests_gpu 150 python3 -m pytest -q -m "gpu or natten" -p no:cacheprovider
  step attention 90 python3 benchmarks/bench_attention.py --device cuda --dtype bfloat16 --sizes 64 128 256 \
    --out "$R/attention.md"
  step diffmotion_step 120 python3 benchmarks/bench_train_step.py --config configs/diffmotion/nattn_mid.json \
    --resolution 256 --batch 16 --device cuda --precision bf16 --steps 10 --peak-tflops 989 --out "$R/diffmotion_step.json"
  step sfs_vcycle 150 python3 multiscale.py --ckpt ckpts/sfs.safetensors --inputs test_data/sfs/star_image.npy \
    --schedule vcycle160 --seeds 0-15 --device cuda --precision bf16 --quiet --out "$R/sfs_vcycle"
  # the rest of the budget trains the faithful recipe (auto-resumes next time from the same folder if carried)
  step sfs_train $(( $(left) - 10 )) python3 train_diffusion.py --config configs/sfs/faithful.json --out "$R/sfs_train" \
    --precision bf16 --tf32 --save-every 500 --no-demo --data-root "$R/sfs_cache"
fi
echo "total $(( $(date +%s) - START )) s" >> "$SUMMARY"
cat "$SUMMARY"
