#!/usr/bin/env bash
# GPU check of lipt_arch on one CUDA device, <= 8 minutes on an H200; results under $OUT (default ./gpu_check_out).
#
#   bash benchmarks/gpu_check.sh --prepare   # HERE (with network), once: builds what the GPU machine lacks
#   bash benchmarks/gpu_check.sh             # THERE, from the repository root, in a run that carries
#                                            #   .gpu_wheels and .gpu_shared/golden
#   bash benchmarks/gpu_check.sh --dry-run   # print the steps and their time limits, run nothing
#
# Steps (each with its own time limit; a failing step is recorded and the next one runs):
#   1. environment: python3 with torch and a CUDA device (stops with one line if either is missing), nvidia-smi
#   2. the CUDA-marked tests (tests/test_cuda.py: golden cases on CUDA, fp16/bf16 parity against fp32, a train step)
#   3. the latency table at 1280x720 output, x4 (320x180 input): fp32, fp16, bf16 and torch.compile rows for
#      LIPT-Tiny and LIPT-Small, and SPAN, SAFMN, SwinIR-light (benchmarks/latency.py --device cuda --compile)
#   4. 200 training iterations of LIPT-Small x2 under `basicsr train` (options/gpu_check_LIPT_x2.yml)
# The GPU machine has no network: basicsr and spandrel travel as wheels (.gpu_wheels, made by --prepare), the
# golden tensors as a copy of the files of ../shared/golden that the CUDA tests read (.gpu_shared/golden); both
# folders are in .gitignore and must be named in the run's carry list. The wheels, the environment step and the step
# runner are benchmarks/gpu_common.sh.
set -uo pipefail

MODE=run
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  '') ;;
  *) echo "gpu_check.sh: unknown argument '$1' (use --prepare, --dry-run or nothing)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
# shellcheck source=benchmarks/gpu_common.sh
source "$REPO/benchmarks/gpu_common.sh"
OUT=${OUT:-$REPO/gpu_check_out}
PY=${PYTHON:-python3}
TITLE='the GPU check' SCRIPT_NAME=gpu_check.sh REQUIRED_MODULES='basicsr pytest' NEED_CUDA=1 DEVICE=cuda
# What tests/test_cuda.py reads of each golden case (the converted-form files stay behind: the carry is 64 MiB).
CUDA_GOLDEN_FILES=(config.json state_dict.pt input.pt output_eval.pt output_train.pt)

if [ "$MODE" = prepare ]; then
  set -e
  gpu_prepare_wheels
  mkdir -p .gpu_shared
  rm -rf .gpu_shared/golden
  for case in "${LIPT_SHARED:-$REPO/../shared}"/golden/*/; do
    [ -f "$case/config.json" ] || continue
    mkdir -p ".gpu_shared/golden/$(basename "$case")"
    for file in "${CUDA_GOLDEN_FILES[@]}"; do cp "$case/$file" ".gpu_shared/golden/$(basename "$case")/"; done
  done
  gpu_carry_budget .gpu_wheels .gpu_shared/golden
  echo "prepared: run the check with carry [\".gpu_wheels\", \".gpu_shared/golden\"]"
  exit 0
fi

STEPS=(
  "environment|60|step_environment"
  "cuda_tests|110|step_cuda_tests"
  "latency|210|step_latency"
  "train|90|step_train"
)

if [ "$MODE" = dry ]; then gpu_dry_run; exit 0; fi

mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export LIPT_SHARED=${LIPT_SHARED:-$REPO/.gpu_shared}

step_cuda_tests() {
  [ -d "$LIPT_SHARED/golden" ] || echo "no golden tensors at $LIPT_SHARED/golden: the golden cases will skip"
  "$PY" -m pytest tests/test_cuda.py -m cuda -q -rs -p no:cacheprovider
}

step_latency() {
  "$PY" benchmarks/latency.py --device cuda --threads 16 --height 180 --width 320 --scale 4 --repeats 20 --compile \
    --markdown "$OUT/latency_cuda.md"
}

step_train() {
  local work
  work=$(mktemp -d)
  (cd "$work" && "$PY" -m lipt_arch.basicsr_support.command train -opt "$REPO/options/gpu_check_LIPT_x2.yml") || return $?
  find "$work/experiments" -name 'train_*.log' -exec cp {} "$OUT/basicsr_train.log" \;
}

gpu_run_steps
exit $?
