#!/usr/bin/env bash
# GPU check of lipt_arch on one CUDA device, <= 8 minutes on an H200; results under $OUT (default ./gpu_check_out).
#
#   bash benchmarks/gpu_check.sh --prepare   # HERE (with network), once: builds what the GPU machine lacks
#   bash benchmarks/gpu_check.sh             # THERE, from the repository root, in a run that carries
#                                            #   .gpu_wheels and .gpu_shared
#   bash benchmarks/gpu_check.sh --dry-run   # print the steps and their time limits, run nothing
#
# Steps (each with its own time limit; a failing step is recorded and the next one runs):
#   1. environment: python3 with torch and a CUDA device (stops with one line if either is missing), nvidia-smi
#   2. the CUDA-marked tests (tests/test_cuda.py: golden cases on CUDA, fp16/bf16 parity against fp32, a train step)
#   3. the latency table at 1280x720 output, x4 (320x180 input): fp32, fp16, bf16 and torch.compile rows for
#      LIPT-Tiny and LIPT-Small, and SPAN, SAFMN, SwinIR-light (benchmarks/latency.py --device cuda --compile)
#   4. 200 training iterations of LIPT-Small x2 under `basicsr train` (options/gpu_check_LIPT_x2.yml)
# The GPU machine has no network: basicsr and spandrel travel as wheels (.gpu_wheels, made by --prepare), the
# golden tensors as a copy of ../shared/golden (.gpu_shared/golden); both folders are in .gitignore and must be
# named in the run's carry list.
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
OUT=${OUT:-$REPO/gpu_check_out}
WHEELS=${LIPT_WHEELS:-$REPO/.gpu_wheels}
PY=${PYTHON:-python3}
# Pure-Python packages the GPU image lacks (its python3 has torch, numpy, opencv, scikit-image, scipy, pyyaml).
WHEEL_PACKAGES=(basicsr==1.4.2 spandrel)

if [ "$MODE" = prepare ]; then
  set -e
  mkdir -p "$WHEELS" .gpu_shared
  python -m pip wheel --no-deps --no-build-isolation -w "$WHEELS" "${WHEEL_PACKAGES[@]}"
  rm -rf .gpu_shared/golden && cp -r "${LIPT_SHARED:-$REPO/../shared}/golden" .gpu_shared/golden
  du -sh "$WHEELS" .gpu_shared
  echo "prepared: run the check with carry [\".gpu_wheels\", \".gpu_shared\"] (64 MiB in all with the tree)"
  exit 0
fi

STEPS=(
  "environment|60|step_environment"
  "cuda_tests|110|step_cuda_tests"
  "latency|210|step_latency"
  "train|90|step_train"
)

if [ "$MODE" = dry ]; then
  total=0
  for s in "${STEPS[@]}"; do IFS='|' read -r name limit fn <<< "$s"; echo "$name: limit ${limit} s ($fn)"; total=$((total + limit)); done
  echo "total limit: ${total} s"
  exit 0
fi

mkdir -p "$OUT"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export LIPT_SHARED=${LIPT_SHARED:-$REPO/.gpu_shared}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step_environment() {
  if ! command -v "$PY" > /dev/null; then echo "no $PY on this machine: the GPU check cannot run"; return 3; fi
  if ! "$PY" -c 'import torch' 2> /dev/null; then
    echo "torch is not installed for $PY on this machine: the GPU check cannot run (it needs the image's PyTorch)"
    return 3
  fi
  "$PY" -c 'import torch, sys; ok = torch.cuda.is_available(); print("torch", torch.__version__, "CUDA", torch.version.cuda, "device:", torch.cuda.get_device_name(0) if ok else "none"); sys.exit(0 if ok else 3)' || return 3
  nvidia-smi || true
  local missing
  missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("basicsr", "spandrel", "yaml", "cv2", "skimage", "pytest") if u.find_spec(m) is None))')
  if [ -n "$missing" ] && [ -d "$WHEELS" ]; then
    echo "installing from $WHEELS: $missing"
    "$PY" -m pip install --no-index --no-deps --find-links "$WHEELS" "${WHEEL_PACKAGES[@]}" || true
    missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("basicsr", "spandrel", "yaml", "cv2", "skimage", "pytest") if u.find_spec(m) is None))')
  fi
  if [ -n "$missing" ]; then
    echo "missing Python packages: $missing (run 'bash benchmarks/gpu_check.sh --prepare' here and carry .gpu_wheels)"
    [[ " $missing " == *" basicsr "* || " $missing " == *" pytest "* ]] && return 3
  fi
  "$PY" -c 'import lipt_arch; from benchmarks.machine import describe, load_average; print(describe(load_average(), device="cuda"))'
}

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

status=0
for s in "${STEPS[@]}"; do
  IFS='|' read -r name limit fn <<< "$s"
  start=$(date +%s)
  echo "== $name (limit ${limit} s)"
  timeout "$limit" bash -c "$(declare -f "$fn"); REPO='$REPO' OUT='$OUT' PY='$PY' WHEELS='$WHEELS'; WHEEL_PACKAGES=(${WHEEL_PACKAGES[*]}); $fn" \
    > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 40 "$OUT/$name.log"
  line="$name: exit $rc, $(( $(date +%s) - start )) s"
  [ "$rc" = 124 ] && line="$line (timed out)"
  echo "$line" | tee -a "$SUMMARY"
  if [ "$rc" != 0 ]; then status=1; fi
  if [ "$name" = environment ] && [ "$rc" != 0 ]; then echo "environment not usable: stopping" | tee -a "$SUMMARY"; exit 3; fi
done
cat "$SUMMARY"
exit $status
