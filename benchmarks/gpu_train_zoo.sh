#!/usr/bin/env bash
# Continue the model-zoo trainings (options/zoo/train_LIPT_tiny_{x4,x3}_lr48.yml) on one CUDA device for a few
# minutes, from the state committed in zoo/training/, and bring the new state back for git; results under $OUT
# (default ./gpu_train_zoo_out).
#
#   bash benchmarks/gpu_train_zoo.sh --prepare       # HERE (with network), once: wheels and a copy of the data
#   bash benchmarks/gpu_train_zoo.sh                 # THERE, from the repository root, in a run that carries
#                                                    #   .gpu_wheels and .gpu_shared/datasets
#   bash benchmarks/gpu_train_zoo.sh --collect DIR   # HERE: DIR (what came back from $OUT) into zoo/training/
#   bash benchmarks/gpu_train_zoo.sh --dry-run       # print the steps and their time limits, run nothing
#   bash benchmarks/gpu_train_zoo.sh --cpu-smoke     # the same steps on the CPU, 2 iterations a model, into a
#                                                    #   temporary folder (the tests' check of the pipeline)
#
# Steps THERE (each with its own time limit; a failing step is recorded and the next one runs):
#   1. environment: python3 with torch and a CUDA device (stops with one line if either is missing); basicsr from
#      the wheels (benchmarks/gpu_common.sh, shared with gpu_check.sh)
#   2. x4, then 3. x3: what `python benchmarks/zoo_state.py restore` does (the state in zoo/training/<name>/, when
#      there is one), then `basicsr train --auto_resume` with the option file's own schedule and, through --force_yml,
#      num_gpu 1 and the data folders under .gpu_shared/datasets. The step's time limit stops the training with
#      SIGTERM, which is the expected end: checkpoints are written every 250 iterations, so the newest one is a
#      resumable state. x3 also gets the time x4 leaves unused (x4 ends early when it reaches its total_iter).
#   4. save: for each model with a state newer than zoo/training's, what `zoo_state.py save` keeps (net_g_<iter>.pth,
#      <iter>.state without the Adam moments) and the new train log, into $OUT/<name>/.
# $OUT then holds at most 8 files (what comes back from a run): summary.txt, steps.log (the output of all steps) and
# three files a model. The GPU machine has no network and no ../shared: basicsr travels as wheels (.gpu_wheels,
# shared with gpu_check.sh), the training images and Set5 as a copy (.gpu_shared/datasets; where the copy would not
# fit the 64 MiB with the tracked files, its PNGs become lossless WebP, checked pixel for pixel); both are in
# .gitignore and must be named in the run's carry list. gpu_check.sh's golden copy (.gpu_shared/golden) is not
# needed here and does not fit together with the images: carry .gpu_shared/datasets, not .gpu_shared.
#
# Environment: GPU_TRAIN_ZOO_X4_S / GPU_TRAIN_ZOO_X3_S (the training limits, default 210 / 135 s: lower them to
# share a 15-minute lease with gpu_check.sh), GPU_TRAIN_ZOO_FORCE (more --force_yml entries for both models, e.g.
# "train:compile=network"), GPU_TRAIN_ZOO_DATA (the data copy, default .gpu_shared/datasets), GPU_TRAIN_ZOO_WORK
# (where experiments/ goes, default the repository root), GPU_TRAIN_ZOO_STATES (the saved states restored from and
# collected into, default zoo/training), PYTHON (default python3), OUT.
set -uo pipefail

MODE=run
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  --cpu-smoke) MODE=smoke ;;
  --collect)
    MODE=collect
    if [ $# != 2 ] || [ ! -d "$2" ]; then
      echo "gpu_train_zoo.sh: --collect needs one folder (what came back from \$OUT), got '${2:-}'" >&2; exit 2
    fi
    COLLECT_FROM=$(cd "$2" && pwd) ;;
  '') ;;
  *) echo "gpu_train_zoo.sh: unknown argument '$1' (use --prepare, --dry-run, --collect DIR, --cpu-smoke or" \
       "nothing)" >&2
     exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
# shellcheck source=benchmarks/gpu_common.sh
source "$REPO/benchmarks/gpu_common.sh"
OPTIONS=(options/zoo/train_LIPT_tiny_x4_lr48.yml options/zoo/train_LIPT_tiny_x3_lr48.yml)  # the order they train in
DATA=${GPU_TRAIN_ZOO_DATA:-$REPO/.gpu_shared/datasets}
STATES=${GPU_TRAIN_ZOO_STATES:-$REPO/zoo/training}
PY=${PYTHON:-python3}
TITLE='the zoo training' SCRIPT_NAME=gpu_train_zoo.sh REQUIRED_MODULES=basicsr NEED_CUDA=1 DEVICE=cuda SMOKE_ITERS=0
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# The option file's data folders and the overrides for this machine, read from the YAML (one home for the mapping
# ../shared/datasets/<rel> -> $DATA/<rel>). `zoo_options folders OPT` prints each <rel>; `zoo_options plan OPT` the
# --force_yml entries, one a line; `zoo_options train OPT` restores OPT's saved state into $WORK/experiments
# (`zoo_state.py restore`, when $STATES/<name>/ has one), then prints the experiment's name and the entries,
# failing with one line when a data folder is not there.
zoo_options() {
  "$PY" - "$@" "$REPO" "$DATA" "$DEVICE" "$SMOKE_ITERS" "${GPU_TRAIN_ZOO_WORK:-$REPO}" "$STATES" <<'PYTHON'
import os
import sys
from pathlib import Path

import yaml

mode, option, repo, data, device, smoke_iters, work, states = sys.argv[1:]
opt = yaml.safe_load(Path(repo, option).read_text())


def relative(folder):
    """The part of a data folder after its last 'datasets' component."""
    parts = Path(folder).parts
    if 'datasets' not in parts:
        raise SystemExit(f'{option}: {folder}: not under a datasets/ folder')
    return Path(*parts[len(parts) - parts[::-1].index('datasets'):])


folders = {}  # --force_yml key -> the option file's folder(s)
for phase, dataset in opt['datasets'].items():
    if dataset.get('hr_folders'):
        folders[f'datasets:{phase}:hr_folders'] = list(dataset['hr_folders'])
    for key in ('dataroot_gt', 'dataroot_lq'):
        if dataset.get(key):
            folders[f'datasets:{phase}:{key}'] = dataset[key]
if mode == 'folders':
    for value in folders.values():
        for folder in value if isinstance(value, list) else [value]:
            print(relative(folder))
    sys.exit(0)


if mode == 'train':
    sys.path.insert(0, repo)
    from contextlib import redirect_stdout

    from benchmarks import zoo_state

    experiments = Path(work, 'experiments')
    zoo_state.ZOO_TRAINING = Path(states)
    if zoo_state.newest_iteration(zoo_state.ZOO_TRAINING / opt['name']) is None:
        print(f'no state in {states}/{opt["name"]}: the training starts from its option file\'s start',
              file=sys.stderr)
    else:
        with redirect_stdout(sys.stderr):
            zoo_state.main(['restore', str(Path(repo, option)), '--experiments', str(experiments)])
    print(opt['name'])


def here(folder):
    target = Path(data, relative(folder))
    if mode == 'train' and not target.is_dir():
        raise SystemExit(f'no data folder {target} (run bash benchmarks/gpu_train_zoo.sh --prepare here and carry '
                         f'.gpu_shared/datasets)')
    return str(target)


entries = [f'num_gpu={1 if device == "cuda" else 0}']
for key, value in folders.items():
    entries.append(f'{key}=[{",".join(repr(here(v)) for v in value)}]' if isinstance(value, list)
                   else f'{key}={here(value)}')
for key, value in opt['path'].items():  # the x4 start is a path relative to the repository
    if key.startswith('pretrain_network') and isinstance(value, str) and not os.path.isabs(value):
        entries.append(f'path:{key}={Path(repo, value)}')
if mode == 'train' and int(smoke_iters):  # a few iterations beyond the restored state, in float32 and eager
    # (the batch stays: the epoch a state resumes in follows from it)
    done = zoo_state.newest_iteration(experiments / opt['name'] / 'training_states') or 0
    entries += [f'train:total_iter={done + int(smoke_iters)}', 'train:amp=false', 'train:compile=false',
                'logger:print_freq=1', 'logger:save_checkpoint_freq=1']
print('\n'.join(entries))
PYTHON
}

if [ "$MODE" = prepare ]; then
  set -e
  PY=${PYTHON:-python}
  gpu_prepare_wheels
  shared=${LIPT_SHARED:-$REPO/../shared}/datasets
  for rel in $(for opt in "${OPTIONS[@]}"; do zoo_options folders "$opt"; done | sort -u); do
    rm -rf "$DATA/$rel" && mkdir -p "$(dirname "$DATA/$rel")" && cp -r "$shared/$rel" "$DATA/$rel"
  done
  if ! gpu_carry_budget .gpu_wheels .gpu_shared/datasets; then
    # Over the limit (the tracked tree grows with the committed states): each image whose lossless WebP decodes to
    # the same pixels (8-bit colour) is stored so, about a quarter smaller; the datasets read .webp the same way
    # and in the same order.
    echo "re-encoding the images as lossless WebP, checked pixel for pixel"
    "$PY" - "$DATA" <<'PYTHON'
import sys
from pathlib import Path

import cv2
import numpy as np

before = after = 0
for png in sorted(Path(sys.argv[1]).rglob('*.png')):
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    ok, data = cv2.imencode('.webp', img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # a quality above 100 is lossless
    if ok and data.size < png.stat().st_size and np.array_equal(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), img):
        before, after = before + png.stat().st_size, after + data.size
        png.with_suffix('.webp').write_bytes(data.tobytes())
        png.unlink()
print(f'lossless WebP: {before / 2**20:.1f} MiB of PNG -> {after / 2**20:.1f} MiB')
PYTHON
    gpu_carry_budget .gpu_wheels .gpu_shared/datasets
  fi
  echo "prepared: run the training with carry [\".gpu_wheels\", \".gpu_shared/datasets\"]"
  exit 0
fi

if [ "$MODE" = collect ]; then
  # Copy each $OUT/<name>/ into zoo/training/<name>/ when its state is newer, replacing the older net_g_<iter>.pth
  # and <iter>.state there (the train logs accumulate), as `zoo_state.py save` leaves that folder.
  PY=${PYTHON:-python}
  "$PY" - "$COLLECT_FROM" "$STATES" "$REPO" "${OPTIONS[@]}" <<'PYTHON'
import shutil
import sys
from pathlib import Path

import yaml

source, target, repo, *options = sys.argv[1:]
sys.path.insert(0, repo)
from benchmarks.zoo_state import newest_iteration  # noqa: E402
from lipt_arch.checkpoints import read_checkpoint  # noqa: E402

status = 0
for option in options:
    name = yaml.safe_load(Path(repo, option).read_text())['name']
    src, dst = Path(source, name), Path(target, name)
    it, have = newest_iteration(src), newest_iteration(dst)
    if it is None:
        print(f'{name}: nothing came back')
        continue
    state = read_checkpoint(src / f'{it}.state')
    problem = None
    if not (src / f'net_g_{it}.pth').is_file():
        problem = f'no net_g_{it}.pth beside {it}.state'
    elif state.get('iter') != it:
        problem = f'{it}.state holds iteration {state.get("iter")}'
    elif any(optimizer['state'] for optimizer in state['optimizers']):
        problem = f'{it}.state still holds the Adam moments (not saved the zoo_state.py way)'
    if problem:
        print(f'{name}: not collected: {problem}')
        status = 1
        continue
    if have is not None and it <= have:
        print(f'{name}: not collected: iteration {it} is not newer than {dst}\'s {have}')
        continue
    dst.mkdir(parents=True, exist_ok=True)
    for old in [*dst.glob('net_g_*.pth'), *dst.glob('*.state')]:
        old.unlink()
    for path in [src / f'net_g_{it}.pth', src / f'{it}.state', *src.glob('train_*.log')]:
        shutil.copyfile(path, dst / path.name)  # not copy2: what came back may be read-only
    print(f'{name}: iteration {have or 0} -> {it} in {dst} (continue here: python benchmarks/zoo_state.py restore '
          f'{option}; commit: git add {dst})')
sys.exit(status)
PYTHON
  exit $?
fi

# The limits; a CPU smoke run (a slow machine's imports and a CPU step) gets 10 minutes a step.
if [ "$MODE" = smoke ]; then LIMITS=(600 600 600 600); else LIMITS=(45 210 135 40); fi
X4_S=${GPU_TRAIN_ZOO_X4_S:-${LIMITS[1]}}
X3_S=${GPU_TRAIN_ZOO_X3_S:-${LIMITS[2]}}
STEPS=(
  "environment|${LIMITS[0]}|step_environment"
  "x4|${X4_S}|step_train_x4"
  "x3|${X3_S}+|step_train_x3"
  "save|${LIMITS[3]}|step_save"
)

if [ "$MODE" = dry ]; then
  gpu_dry_run
  for i in 0 1; do  # the command each training step runs (the data folders are not checked here)
    mapfile -t overrides < <(zoo_options plan "${OPTIONS[i]}")
    echo "${STEPS[i + 1]%%|*} runs: basicsr train -opt ${OPTIONS[i]} --auto_resume --force_yml" \
      "$(printf '"%s" ' "${overrides[@]}")"
  done
  exit 0
fi

if [ "$MODE" = smoke ]; then
  NEED_CUDA=0 DEVICE=cpu SMOKE_ITERS=2
  GPU_TRAIN_ZOO_WORK=${GPU_TRAIN_ZOO_WORK:-$(mktemp -d)}
  OUT=${OUT:-$GPU_TRAIN_ZOO_WORK/out}
fi
WORK=${GPU_TRAIN_ZOO_WORK:-$REPO}
OUT=${OUT:-$REPO/gpu_train_zoo_out}
STEP_LOG=$OUT/steps.log
mkdir -p "$OUT" "$WORK" || exit 2
export WORK DATA STATES SMOKE_ITERS GPU_TRAIN_ZOO_WORK=$WORK GPU_TRAIN_ZOO_FORCE=${GPU_TRAIN_ZOO_FORCE:-}
export OPTION_X4=${OPTIONS[0]} OPTION_X3=${OPTIONS[1]}

# Restore OPT's committed state into $WORK/experiments (when there is one) and train it until STEP_LIMIT is near.
train_zoo() {
  local opt=$1 name deadline left rc found overrides extra
  deadline=$(( $(date +%s) + STEP_LIMIT - 15 ))  # the training's SIGTERM comes well before the step's
  found=$(zoo_options train "$opt") || return
  mapfile -t overrides <<< "$found"
  name=${overrides[0]}
  overrides=("${overrides[@]:1}")
  read -ra extra <<< "$GPU_TRAIN_ZOO_FORCE"
  echo "--force_yml ${overrides[*]} ${extra[*]}"
  left=$(( deadline - $(date +%s) ))
  if [ "$left" -lt 20 ]; then echo "$name: only $left s left of the step: not trained"; return 1; fi
  (cd "$WORK" && timeout -k 5 "$left" "$PY" -m lipt_arch.basicsr_support.command train -opt "$REPO/$opt" \
    --auto_resume --force_yml "${overrides[@]}" "${extra[@]}")
  rc=$?
  if [ "$rc" = 124 ]; then echo "$name: stopped at the time limit (expected); the newest checkpoint is kept"; rc=0; fi
  echo "$name: newest state: $(ls "$WORK/experiments/$name/training_states" 2> /dev/null | sort -n | tail -n 1)"
  return $rc
}

step_train_x4() { train_zoo "$OPTION_X4"; }
step_train_x3() { train_zoo "$OPTION_X3"; }

# What `zoo_state.py save` keeps of each model's newest state (its own code, pointed at $OUT instead of
# zoo/training), when it is newer than the saved one in $STATES; of the train logs only the new ones; a line per
# model in the summary (iterations, the last Set5 PSNR).
step_save() {
  "$PY" - "$REPO" "$WORK/experiments" "$OUT" "$STATES" "$OPTION_X4" "$OPTION_X3" <<'PYTHON' | tee -a "$SUMMARY"
import re
import sys
from pathlib import Path

import yaml

repo, experiments, out, states, *options = sys.argv[1:]
sys.path.insert(0, repo)
from benchmarks import zoo_state  # noqa: E402

committed = Path(states)
for option in options:
    name = yaml.safe_load(Path(repo, option).read_text())['name']
    it = zoo_state.newest_iteration(Path(experiments, name, 'training_states'))
    before = zoo_state.newest_iteration(committed / name)
    if it is None or (before is not None and it <= before):
        print(f'{name}: no new state (zoo/training: {before}, here: {it})')
        continue
    old_logs = {log.name for log in (committed / name).glob('train_*.log')}
    zoo_state.ZOO_TRAINING = Path(out)  # zoo_state.py's own save, into $OUT
    target = zoo_state.save(name, Path(experiments))
    logs = sorted(log for log in target.glob('train_*.log') if log.name not in old_logs)
    for log in target.glob('train_*.log'):
        if log.name in old_logs:
            log.unlink()
    psnr = re.findall(r'Validation (\S+)\n\s+# psnr: ([\d.]+)', logs[-1].read_text()) if logs else []
    last = f', {psnr[-1][0]} PSNR {psnr[-1][1]} dB' if psnr else ''
    print(f'{name}: iteration {before or 0} -> {it}{last}')
PYTHON
}

gpu_run_steps
status=$?
if [ "$status" != 3 ]; then
  echo "back HERE: bash benchmarks/gpu_train_zoo.sh --collect <the folder the files of \$OUT came back to>"
fi
exit $status
