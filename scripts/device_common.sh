# Sourced by the prepared device scripts (device_check.sh, omages_device_run.sh) with their arguments
# ([--dry-run] [RESULTS_DIR] [BUDGET_SECONDS]; the caller sets DEFAULT_BUDGET): sets DRY, R and BUDGET, installs carried
# wheels, starts the budget clock, writes $R/summary.md and defines `step NAME SECONDS CMD...`.
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
R=${1:-${OUT:-device_results}}
BUDGET=${2:-$DEFAULT_BUDGET}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
SUMMARY="$R/summary.md"
echo "# $(basename "$0" .sh) $(date -u +%FT%TZ) dry_run=$DRY" > "$SUMMARY"

step() {  # step NAME SECONDS CMD...: run with a timeout, log to $R/NAME.log, record status and wall time
  local name=$1 limit=$2; shift 2
  local avail; avail=$(left)
  if [ "$avail" -le 5 ]; then echo "- $name: skipped (budget spent)" >> "$SUMMARY"; return; fi
  [ "$limit" -gt "$avail" ] && limit=$avail
  local t0; t0=$(date +%s)
  timeout --signal=INT --kill-after=15 "$limit" "$@" > "$R/$name.log" 2>&1
  local rc=$?
  echo "- $name: exit $rc in $(( $(date +%s) - t0 )) s (limit $limit s), log $name.log" >> "$SUMMARY"
}

python3 scripts/check_env.py > "$R/env.txt" 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi > "$R/nvidia-smi.txt" 2>&1
