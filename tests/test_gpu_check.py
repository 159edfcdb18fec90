"""benchmarks/gpu_check.sh and its option file, checked without a GPU: syntax, time budget, clean stops."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from .conftest import REPO

SCRIPT = REPO / 'benchmarks' / 'gpu_check.sh'
OPTION = REPO / 'options' / 'gpu_check_LIPT_x2.yml'
BUDGET_S = 8 * 60
pytestmark = pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_script_parses_and_its_steps_fit_the_budget():
    assert subprocess.run(['bash', '-n', str(SCRIPT)]).returncode == 0
    dry = _run('--dry-run')
    assert dry.returncode == 0, dry.stderr
    steps = re.findall(r'^(\w+): limit (\d+) s', dry.stdout, re.M)
    assert [name for name, _ in steps] == ['environment', 'cuda_tests', 'latency', 'train']
    total = int(re.search(r'total limit: (\d+) s', dry.stdout).group(1))
    assert total == sum(int(limit) for _, limit in steps) <= BUDGET_S


def test_unknown_argument_is_one_line_and_exit_2():
    result = _run('--fast')
    assert result.returncode == 2 and result.stderr.strip().count('\n') == 0 and "'--fast'" in result.stderr


def test_stops_with_a_clear_line_when_python_has_no_torch(tmp_path):
    fake = tmp_path / 'python3'
    fake.write_text('#!/bin/sh\nexit 1\n')  # a python3 on which `import torch` fails
    fake.chmod(0o755)
    result = _run(env={'OUT': str(tmp_path / 'out'), 'PYTHON': str(fake)})
    assert result.returncode == 3
    assert 'torch is not installed' in result.stdout and 'cannot run' in result.stdout
    summary = (tmp_path / 'out' / 'summary.txt').read_text()
    assert 'environment: exit 3' in summary and 'stopping' in summary


def test_option_file_is_a_200_iteration_cuda_run_on_bundled_photos():
    opt = yaml.safe_load(OPTION.read_text())
    assert opt['num_gpu'] == 1 and opt['train']['total_iter'] == 200 and opt['model_type'] == 'LIPTModel'
    assert opt['network_g'] == {'type': 'LIPT_small', 'upscale': opt['scale']}
    assert {d['type'] for d in opt['datasets'].values()} == {'SkimageSRDataset'}  # no data files needed
    assert opt['val']['val_freq'] == opt['train']['total_iter']
    assert 'gpu_check_LIPT_x2.yml' in SCRIPT.read_text()


def _files_test_cuda_reads() -> set[str]:
    """The golden file names tests/test_cuda.py opens: quoted literals and ``output_{key}.pt`` over its keys."""
    source = (REPO / 'tests' / 'test_cuda.py').read_text()
    names = set(re.findall(r"'(\w+\.(?:pt|json))'", source))
    for keys in re.findall(r"output_\{key\}\.pt'.*?for key in \(([^)]*)\)", source):
        names |= {f'output_{key}.pt' for key in re.findall(r"'(\w+)'", keys)}
    return names


def test_prepare_copies_only_the_golden_files_the_cuda_tests_read(tmp_path):
    # the script and its helpers in a scratch repository, so the real .gpu_shared is left alone
    (tmp_path / 'repo' / 'benchmarks').mkdir(parents=True)
    for name in ('gpu_check.sh', 'gpu_common.sh'):
        shutil.copy2(REPO / 'benchmarks' / name, tmp_path / 'repo' / 'benchmarks' / name)
    subprocess.run(['git', 'init', '-q', str(tmp_path / 'repo')], check=True)
    wheels = tmp_path / 'repo' / '.gpu_wheels'  # already built: --prepare builds nothing
    wheels.mkdir()
    for wheel in ('basicsr-1.4.2-py3-none-any.whl', 'spandrel-0.4.1-py3-none-any.whl'):
        (wheels / wheel).write_bytes(b'')
    case = tmp_path / 'shared' / 'golden' / 'A_tiny_x2'
    case.mkdir(parents=True)
    shipped = {'config.json', 'state_dict.pt', 'deploy_state_dict.pt', 'input.pt', 'output_eval.pt',
               'output_train.pt', 'output_deploy.pt'}
    for name in shipped:
        (case / name).write_bytes(b'x')
    (tmp_path / 'shared' / 'golden' / 'README.md').write_text('not a case')
    result = subprocess.run(['bash', str(tmp_path / 'repo' / 'benchmarks' / 'gpu_check.sh'), '--prepare'],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, 'LIPT_SHARED': str(tmp_path / 'shared')})
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'carry budget:' in result.stdout and '.gpu_shared/golden' in result.stdout
    copied = {p.name for p in (tmp_path / 'repo' / '.gpu_shared' / 'golden' / 'A_tiny_x2').iterdir()}
    reads = _files_test_cuda_reads()
    assert {'config.json', 'state_dict.pt', 'output_eval.pt', 'output_train.pt'} <= reads
    assert copied == reads and 'deploy_state_dict.pt' not in copied
    assert sorted(p.name for p in (tmp_path / 'repo' / '.gpu_shared' / 'golden').iterdir()) == ['A_tiny_x2']
