"""benchmarks/gpu_train_zoo.sh checked without a GPU: syntax, time budget, clean stops, the --force_yml overrides
against the option files, --collect, and (slow) the whole pipeline on the CPU with 2 iterations a model."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.utils.options import _postprocess_yml_value

from lipt_arch.checkpoints import read_checkpoint
from lipt_arch.validation import check_basicsr_argv

from .conftest import REPO

SCRIPT = REPO / 'benchmarks' / 'gpu_train_zoo.sh'
COMMON = REPO / 'benchmarks' / 'gpu_common.sh'
OPTIONS = {'x4': REPO / 'options' / 'zoo' / 'train_LIPT_tiny_x4_lr48.yml',
           'x3': REPO / 'options' / 'zoo' / 'train_LIPT_tiny_x3_lr48.yml'}
BUDGET_S = 8 * 60
MAX_FILES_BACK = 8  # what one device run brings back from $OUT
pytestmark = pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')


def _run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'PYTHON': sys.executable, **(env or {})})


def _name(option: Path) -> str:
    return yaml.safe_load(option.read_text())['name']


def test_script_parses_and_its_steps_fit_the_budget():
    for script in (SCRIPT, COMMON):
        assert subprocess.run(['bash', '-n', str(script)]).returncode == 0, script
    dry = _run('--dry-run')
    assert dry.returncode == 0, dry.stderr
    steps = re.findall(r'^(\w+): limit (\d+) s', dry.stdout, re.M)
    assert [name for name, _ in steps] == ['environment', 'x4', 'x3', 'save']  # x4 first
    total = int(re.search(r'total limit: (\d+) s', dry.stdout).group(1))
    assert total == sum(int(limit) for _, limit in steps) <= BUDGET_S
    shorter = _run('--dry-run', env={'GPU_TRAIN_ZOO_X4_S': '100', 'GPU_TRAIN_ZOO_X3_S': '50'})
    assert re.search(r'^x4: limit 100 s', shorter.stdout, re.M) and re.search(r'^x3: limit 50 s', shorter.stdout, re.M)


def test_overrides_name_existing_options_and_point_at_the_carried_data(tmp_path):
    data = tmp_path / 'datasets'
    dry = _run('--dry-run', env={'GPU_TRAIN_ZOO_DATA': str(data)})
    for step, option in OPTIONS.items():
        line = re.search(rf'^{step} runs: (.*)$', dry.stdout, re.M).group(1)
        argv = shlex.split(line)
        assert argv[:6] == ['basicsr', 'train', '-opt', str(option.relative_to(REPO)), '--auto_resume', '--force_yml']
        entries = argv[6:]
        opt = yaml.safe_load(option.read_text())
        check_basicsr_argv(['-opt', str(option), '--force_yml', *entries])  # what `basicsr train` checks first
        forced = {}
        for entry in entries:  # applied the way basicsr's parse_options applies them
            keys, value = entry.split('=')
            node = opt
            for key in keys.split(':')[:-1]:
                node = node[key]
            assert keys.split(':')[-1] in node, f'{entry}: not an option of {option.name}'
            node[keys.split(':')[-1]] = forced[keys] = _postprocess_yml_value(value)
        assert forced['num_gpu'] == 1
        train, val = opt['datasets']['train'], opt['datasets']['val']
        assert train['hr_folders'] == [str(data / 'train' / sub) for sub in ('T91', 'BSD200', 'General100')]
        assert val['dataroot_gt'] == str(data / 'Set5' / 'HR')
        start = opt['path']['pretrain_network_g']
        assert start is None or (Path(start).is_absolute() and Path(start).is_file())
        assert opt['train']['total_iter'] == yaml.safe_load(option.read_text())['train']['total_iter']  # own schedule
    assert 'path:pretrain_network_g=' in re.search(r'^x4 runs: .*$', dry.stdout, re.M).group(0)


def test_unknown_argument_and_collect_without_a_folder_are_one_line_and_exit_2(tmp_path):
    for args, word in ((['--fast'], "'--fast'"), (['--collect'], '--collect'),
                       (['--collect', str(tmp_path / 'missing')], 'missing')):
        result = _run(*args)
        assert result.returncode == 2 and result.stderr.strip().count('\n') == 0 and word in result.stderr, args


def test_stops_with_a_clear_line_when_python_has_no_torch(tmp_path):
    fake = tmp_path / 'python3'
    fake.write_text('#!/bin/sh\nexit 1\n')  # a python3 on which `import torch` fails
    fake.chmod(0o755)
    out = tmp_path / 'out'
    result = _run(env={'OUT': str(out), 'PYTHON': str(fake), 'GPU_TRAIN_ZOO_WORK': str(tmp_path / 'work')})
    assert result.returncode == 3
    assert 'torch is not installed' in result.stdout and 'the zoo training cannot run' in result.stdout
    summary = (out / 'summary.txt').read_text()
    assert 'environment: exit 3' in summary and 'stopping' in summary and 'x4' not in summary
    assert sorted(p.name for p in out.iterdir()) == ['steps.log', 'summary.txt']  # one log for all steps


def _state(path: Path, iteration: int, moments: bool = False) -> None:
    param = torch.zeros(2)
    state = {0: {'step': torch.tensor(3.0), 'exp_avg': param, 'exp_avg_sq': param}} if moments else {}
    torch.save({'epoch': 1, 'iter': iteration, 'schedulers': [],
                'optimizers': [{'state': state, 'param_groups': [{'lr': 1e-3, 'params': [0]}]}]}, path)


def test_collect_copies_newer_stripped_states_and_refuses_others(tmp_path):
    x4, x3 = _name(OPTIONS['x4']), _name(OPTIONS['x3'])
    back, zoo = tmp_path / 'back', tmp_path / 'zoo'
    for folder in (back / x4, back / x3, zoo / x3):
        folder.mkdir(parents=True)
    (zoo / x3 / 'net_g_3000.pth').write_bytes(b'old')
    _state(zoo / x3 / '3000.state', 3000)
    (zoo / x3 / 'train_old.log').write_text('old')
    (back / x3 / 'net_g_3250.pth').write_bytes(b'new')
    _state(back / x3 / '3250.state', 3250)
    (back / x3 / 'train_new.log').write_text('new')
    (back / x4 / 'net_g_500.pth').write_bytes(b'x4')
    _state(back / x4 / '500.state', 500, moments=True)  # not saved the zoo_state.py way: refused
    result = _run('--collect', str(back), env={'GPU_TRAIN_ZOO_STATES': str(zoo)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f'{x3}: iteration 3000 -> 3250' in result.stdout
    assert f'{x4}: not collected' in result.stdout and 'Adam moments' in result.stdout
    assert sorted(p.name for p in (zoo / x3).iterdir()) == ['3250.state', 'net_g_3250.pth', 'train_new.log',
                                                            'train_old.log']
    assert not (zoo / x4).exists()


def _tiny_data(root: Path) -> Path:
    """One 200x300 HR image a training folder (x4 skips images under 192 pixels), one 64x64 for Set5."""
    import cv2
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    for sub in ('train/T91', 'train/BSD200', 'train/General100', 'Set5/HR'):
        (root / sub).mkdir(parents=True)
        assert cv2.imwrite(str(root / sub / 'a.png'), image if sub.startswith('train') else image[:64, :64])
    return root


@pytest.mark.slow
def test_cpu_smoke_trains_both_models_and_brings_back_stripped_states(tmp_path):
    zoo = tmp_path / 'zoo'  # a copy of zoo/training: the saved states to resume from and collect into
    shutil.copytree(REPO / 'zoo' / 'training', zoo)
    out, work = tmp_path / 'out', tmp_path / 'work'
    env = {'OUT': str(out), 'GPU_TRAIN_ZOO_WORK': str(work), 'GPU_TRAIN_ZOO_DATA': str(_tiny_data(tmp_path / 'data')),
           'GPU_TRAIN_ZOO_STATES': str(zoo), 'OMP_NUM_THREADS': '1'}
    starts = {}
    for option in OPTIONS.values():
        saved = [int(p.stem) for p in (zoo / _name(option)).glob('*.state')]
        starts[_name(option)] = max(saved, default=0)
    before = {p: p.stat().st_mtime_ns for p in zoo.rglob('*')}
    result = _run('--cpu-smoke', env=env, timeout=2700)  # about 30 s of CPU; far longer on a busy machine
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in zoo.rglob('*')} == before  # the saved states stay untouched
    files = [p for p in out.rglob('*') if p.is_file()]
    assert len(files) <= MAX_FILES_BACK and all(len(p.relative_to(out).parts) <= 2 for p in files)
    summary = (out / 'summary.txt').read_text()
    for name, start in starts.items():
        assert f'{name}: iteration {start} -> {start + 2}' in summary
        state = read_checkpoint(out / name / f'{start + 2}.state')
        assert state['iter'] == start + 2 and all(not o['state'] for o in state['optimizers'])
        assert (out / name / f'net_g_{start + 2}.pth').is_file()
        assert len(list((out / name).glob('train_*.log'))) == 1  # the new log only
    collected = _run('--collect', str(out), env={'GPU_TRAIN_ZOO_STATES': str(zoo)})
    assert collected.returncode == 0 and collected.stdout.count(' -> ') == 2, collected.stdout + collected.stderr
    for name, start in starts.items():
        assert sorted(p.name for p in (zoo / name).glob('*.state')) == [f'{start + 2}.state']
