"""Tiny end-to-end trainings: from an LMDB made by BasicSR's tools, as a drop-in to a stock BasicSR script with
``model_type: SRModel``, and two CPU processes under torchrun (gloo)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lipt_arch.basicsr_support.command import main

from .basicsr_helpers import make_pairs, train_options, write_options
from .conftest import REPO

STOCK_SCRIPT = '''import sys
import lipt_arch  # the only line a BasicSR project adds
from basicsr.train import train_pipeline
train_pipeline(sys.argv.pop(1))
'''


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))


def _env() -> dict[str, str]:
    return {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}


def test_train_from_lmdb_built_with_basicsr_tools(tmp_path, monkeypatch):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    hr_dir, lr_dir = make_pairs(tmp_path / 'data')
    names = sorted(p.name for p in hr_dir.iterdir())
    keys = [Path(n).stem for n in names]
    for folder in (hr_dir, lr_dir):
        make_lmdb_from_imgs(str(folder), f'{folder}.lmdb', names, keys, n_thread=1)
    lmdb = {'io_backend': {'type': 'lmdb'}, 'dataroot_gt': f'{hr_dir}.lmdb', 'dataroot_lq': f'{lr_dir}.lmdb'}
    opt = train_options(tmp_path, name='lmdb', datasets={'train': lmdb})  # val from folders: an LMDB opens once
    monkeypatch.chdir(tmp_path)
    assert main(['train', '-opt', str(write_options(opt, tmp_path / 'lmdb.yml'))]) == 0
    assert (tmp_path / 'experiments' / 'lmdb' / 'models' / 'net_g_deploy_latest.pth').is_file()


def test_drop_in_stock_basicsr_script_with_srmodel(tmp_path):
    opt = train_options(tmp_path, name='stock', model_type='SRModel')
    script = tmp_path / 'train.py'
    script.write_text(STOCK_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), '-opt',
                             str(write_options(opt, tmp_path / 'stock.yml'))], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(tmp_path / 'experiments' / 'stock' / 'models' / 'net_g_2.pth', weights_only=True)
    assert {'params', 'params_ema'} <= set(saved) and 'tail.weight' in saved['params']
    assert 'Model [SRModel] is created' in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_under_torchrun(tmp_path):
    console = Path(sys.executable).parent / 'basicsr'
    if not console.exists():
        pytest.skip('the basicsr console script is not installed next to this python')
    opt = train_options(tmp_path, name='ddp', val={'compare_bicubic': True})
    option = write_options(opt, tmp_path / 'ddp.yml')
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={_free_port()}',
         '--no-python', str(console), 'train', '-opt', str(option), '--launcher', 'pytorch'],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'ddp'
    log = next(exp.glob('train_ddp_*.log')).read_text()
    assert 'World size (gpu number): 2' in log and 'dist: True' in log
    assert (exp / 'models' / 'net_g_deploy_2.pth').is_file() and (exp / 'training_states' / '2.state').is_file()
    assert 'Fused LIPT: PSNR' in result.stdout
