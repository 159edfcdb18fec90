# What the scripts for a lent GPU machine share (benchmarks/gpu_check.sh, benchmarks/gpu_train_zoo.sh); sourced by
# them, not run. That machine has one CUDA device, no network, and a python3 with torch, numpy, opencv,
# scikit-image, scipy and pyyaml, but without basicsr and spandrel.
#
#   gpu_prepare_wheels         HERE (with network): wheels of the packages the GPU image lacks, into $WHEELS
#   gpu_carry_budget PATH...   HERE: the size of a run's working tree with PATH... carried, against the 64 MiB limit
#   step_environment           THERE: python3 with torch (and CUDA unless NEED_CUDA=0), the wheels installed
#   gpu_dry_run, gpu_run_steps the STEPS table ("name|limit|function"; a limit written "N+" also gets the time the
#                              earlier steps left unused), printed, or run with each step under its own `timeout`
#
# The sourcing script sets REPO (the repository root) first; for the steps also PY, OUT, TITLE (how one-line errors
# name the run, e.g. "the GPU check"), SCRIPT_NAME, REQUIRED_MODULES, NEED_CUDA, DEVICE and STEPS, and optionally
# STEP_LOG (one file for the output of all steps instead of $OUT/<step>.log each).

WHEELS=${LIPT_WHEELS:-$REPO/.gpu_wheels}
# Pure-Python packages the GPU image lacks.
WHEEL_PACKAGES=(basicsr==1.4.2 spandrel)
CARRY_LIMIT_BYTES=$((64 * 1024 * 1024))  # tracked + untracked-not-ignored files + carried paths, per run
KILL_AFTER_S=10                          # a step still alive this long after its SIGTERM is killed

# Build the wheels of WHEEL_PACKAGES into $WHEELS, unless a wheel of each is there already.
gpu_prepare_wheels() {
  local spec name version missing=()
  mkdir -p "$WHEELS" || return
  for spec in "${WHEEL_PACKAGES[@]}"; do
    name=${spec%%==*}
    version=${spec#"$name"}; version=${version#==}
    compgen -G "$WHEELS/${name}-${version:-*}-*.whl" > /dev/null || missing+=("$spec")
  done
  if [ ${#missing[@]} = 0 ]; then echo "wheels: ${WHEEL_PACKAGES[*]} already in $WHEELS"; return 0; fi
  python -m pip wheel --no-deps --no-build-isolation -w "$WHEELS" "${missing[@]}"
}

# Print what a run carrying PATH... sends (tracked files, untracked files git does not ignore, each carried path)
# and the total against the limit; returns 1 when it is over.
gpu_carry_budget() {
  local tree untracked total path size line
  tree=$(git -C "$REPO" ls-files -z | _bytes) || true
  untracked=$(git -C "$REPO" ls-files -z -o --exclude-standard | _bytes) || true
  total=$((${tree:-0} + ${untracked:-0}))
  line="carry budget: tracked files $(_mib "${tree:-0}"), untracked files $(_mib "${untracked:-0}")"
  for path in "$@"; do
    size=$(du -sb "$REPO/$path" 2> /dev/null | cut -f1) || size=0  # a path not there counts 0
    total=$((total + ${size:-0}))
    line="$line, $path $(_mib "${size:-0}")"
  done
  if [ "$total" -le "$CARRY_LIMIT_BYTES" ]; then
    echo "$line: $(_mib "$total") of $(_mib "$CARRY_LIMIT_BYTES") ($(_mib $((CARRY_LIMIT_BYTES - total))) left)"
  else
    echo "$line: $(_mib "$total") of $(_mib "$CARRY_LIMIT_BYTES")," \
      "$(_mib $((total - CARRY_LIMIT_BYTES))) OVER the limit"
    return 1
  fi
}

_bytes() { (cd "$REPO" && du -cb --files0-from=- 2> /dev/null) | tail -n 1 | cut -f1; }  # of the files named on stdin
_mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

_missing_modules() {
  "$PY" -c 'import importlib.util as u, sys; print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' \
    basicsr spandrel yaml cv2 skimage pytest
}

# Step 1 of every run: python3 with torch and (unless NEED_CUDA=0) a CUDA device, stopping with one line when
# either is missing; the wheels installed when basicsr or spandrel is missing; the machine described.
step_environment() {
  if ! command -v "$PY" > /dev/null; then echo "no $PY on this machine: $TITLE cannot run"; return 3; fi
  local info rc missing required
  info=$("$PY" -c 'import sys
try:
    import torch
except ImportError:
    sys.exit(4)
ok = torch.cuda.is_available()
device = torch.cuda.get_device_name(0) if ok else "none"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "device:", device)
sys.exit(0 if ok or sys.argv[1] == "0" else 3)' "${NEED_CUDA:-1}" 2>&1)
  rc=$?
  if [ "$rc" = 4 ] || { [ "$rc" != 0 ] && [ "$rc" != 3 ] && [ -z "$info" ]; }; then
    echo "torch is not installed for $PY on this machine: $TITLE cannot run (it needs the image's PyTorch)"
    return 3
  elif [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    echo "torch does not import for $PY on this machine ($(tail -n 1 <<< "$info")): $TITLE cannot run"
    return 3
  fi
  echo "$info"
  if [ "$rc" = 3 ]; then echo "no CUDA device on this machine: $TITLE cannot run"; return 3; fi
  if [ "${NEED_CUDA:-1}" != 0 ]; then nvidia-smi || true; fi
  missing=$(_missing_modules)
  if [ -n "$missing" ] && [ -d "$WHEELS" ]; then
    echo "installing from $WHEELS: $missing"
    "$PY" -m pip install --no-index --no-deps --find-links "$WHEELS" "${WHEEL_PACKAGES[@]}" || true
    missing=$(_missing_modules)
  fi
  if [ -n "$missing" ]; then
    echo "missing Python packages: $missing (run 'bash benchmarks/$SCRIPT_NAME --prepare' here and carry .gpu_wheels)"
    for required in $REQUIRED_MODULES; do [[ " $missing " == *" $required "* ]] && return 3; done
  fi
  "$PY" -c 'import sys, lipt_arch
from benchmarks.machine import describe, load_average
print(describe(load_average(), device=sys.argv[1]))' "${DEVICE:-cuda}"
}

# Print the steps and their limits, and their sum (the most the steps can take, KILL_AFTER_S a step aside).
gpu_dry_run() {
  local s name limit fn total=0 extra
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name limit fn <<< "$s"
    extra=''
    [[ $limit == *+ ]] && extra=', plus the time the earlier steps left unused'
    limit=${limit%+}
    echo "$name: limit ${limit} s ($fn$extra)"
    total=$((total + limit))
  done
  echo "total limit: ${total} s"
}

# Run the STEPS in order, each under `timeout` (SIGTERM at its limit, SIGKILL KILL_AFTER_S later), the step's
# output into $OUT/<step>.log (or appended to STEP_LOG) with its last 40 lines echoed; one line a step in
# $OUT/summary.txt. A failing step is recorded and the next one runs, but a failing environment step stops the run
# (exit 3). Returns 1 when a step failed. The step functions run under `set -o pipefail` and see the exported
# variables, STEP_LIMIT (their limit) and WHEEL_PACKAGES.
gpu_run_steps() {
  local s name limit fn start rc line log status=0 t0 planned=0
  export REPO OUT PY WHEELS TITLE SCRIPT_NAME REQUIRED_MODULES NEED_CUDA DEVICE SUMMARY="$OUT/summary.txt"
  : > "$SUMMARY"
  [ -n "${STEP_LOG:-}" ] && : > "$STEP_LOG"
  t0=$(date +%s)
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name limit fn <<< "$s"
    planned=$((planned + ${limit%+}))
    if [[ $limit == *+ ]]; then  # this step may also use what the earlier steps left of their limits
      limit=${limit%+}
      (( t0 + planned - $(date +%s) > limit )) && limit=$((t0 + planned - $(date +%s)))
    fi
    start=$(date +%s)
    echo "== $name (limit ${limit} s)"
    log=${STEP_LOG:+$OUT/.step.log}
    log=${log:-$OUT/$name.log}
    STEP_LIMIT=$limit timeout -k "$KILL_AFTER_S" "$limit" \
      bash -c "set -o pipefail; $(declare -f); $(declare -p WHEEL_PACKAGES); $fn" > "$log" 2>&1
    rc=$?
    tail -n 40 "$log"
    if [ -n "${STEP_LOG:-}" ]; then { echo "== $name"; cat "$log"; } >> "$STEP_LOG"; rm -f "$log"; fi
    line="$name: exit $rc, $(( $(date +%s) - start )) s"
    [ "$rc" = 124 ] && line="$line (timed out)"
    echo "$line" | tee -a "$SUMMARY"
    if [ "$rc" != 0 ]; then status=1; fi
    if [ "$name" = environment ] && [ "$rc" != 0 ]; then
      echo "environment not usable: stopping" | tee -a "$SUMMARY"
      return 3
    fi
  done
  cat "$SUMMARY"
  return $status
}
