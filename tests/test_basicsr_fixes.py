"""One test per basicsr 1.4.2 fix in lipt_arch.basicsr_support.fixes."""
from __future__ import annotations

import collections
import os
import sys

import basicsr.test
import basicsr.train
import basicsr.utils.options
import pytest
import torch
import torch.distributed as dist
from basicsr.models.base_model import BaseModel

from lipt_arch.basicsr_support import fixes as basicsr_fixes
from lipt_arch.checkpoints import CheckpointError

from .basicsr_helpers import TINY_NET


def _opt(tmp_path, **extra):
    states = tmp_path / 'experiments' / 'x' / 'training_states'
    states.mkdir(parents=True, exist_ok=True)
    opt = {'name': 'x', 'auto_resume': False, 'network_g': dict(TINY_NET),
           'path': {'resume_state': None, 'training_states': str(states), 'models': str(states.parent / 'models')}}
    opt.update(extra)
    return opt


def _resume_state() -> dict:
    """A real BasicSR resume state: Adam + MultiStepRestartLR state dicts after one step."""
    from basicsr.models.lr_scheduler import MultiStepRestartLR
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([param], 1e-3)
    scheduler = MultiStepRestartLR(optimizer, milestones=[2, 4], gamma=0.5)
    param.sum().backward()
    optimizer.step()
    scheduler.step()
    return {'epoch': 1, 'iter': 7, 'optimizers': [optimizer.state_dict()], 'schedulers': [scheduler.state_dict()]}


def test_fixes_installed():
    assert basicsr.train.load_resume_state is basicsr_fixes.load_resume_state
    assert basicsr.train.parse_options is basicsr.test.parse_options is basicsr_fixes.parse_options
    assert basicsr.utils.options.init_dist is basicsr_fixes.init_dist
    assert BaseModel.save_network is basicsr_fixes.save_network
    assert BaseModel.save_training_state is basicsr_fixes.save_training_state
    assert BaseModel.model_to_device is basicsr_fixes.model_to_device


def test_resume_on_cpu_weights_only(tmp_path, monkeypatch):
    """1.4.2 calls torch.cuda.current_device() and plain torch.load; ours loads on CPU, weights-only."""
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: pytest.fail('touched CUDA'))
    weights_only = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: weights_only.append(k.get('weights_only')) or real_load(*a, **k))
    opt = _opt(tmp_path)
    for it in (3, 12):
        torch.save(_resume_state(), os.path.join(opt['path']['training_states'], f'{it}.state'))
    opt['auto_resume'] = True  # the newest state, found under root_path (not the current directory)
    state = basicsr.train.load_resume_state(opt)
    assert weights_only == [True]
    assert opt['path']['resume_state'].endswith('12.state') and state['iter'] == 7
    assert isinstance(state['schedulers'][0]['milestones'], collections.Counter)
    assert state['optimizers'][0]['state'][0]['exp_avg'].device.type == 'cpu'
    assert opt['path']['pretrain_network_g'].endswith(os.path.join('models', 'net_g_7.pth'))  # check_resume ran


def test_resume_state_refuses_code_and_names_corrupt_file(tmp_path):
    opt = _opt(tmp_path)
    evil = os.path.join(opt['path']['training_states'], '5.state')
    torch.save({'iter': 5, 'epoch': 0, 'optimizers': [], 'schedulers': [], 'x': _Unsafe()}, evil)
    opt['path']['resume_state'] = evil
    with pytest.raises(CheckpointError, match='refused to load'):
        basicsr.train.load_resume_state(opt)
    torch.save({'params': {'w': torch.ones(1)}}, evil)  # a network checkpoint, not a training state
    with pytest.raises(CheckpointError, match=r'5\.state: not a BasicSR training state'):
        basicsr.train.load_resume_state(opt)
    torch.save(_resume_state(), evil)
    with open(evil, 'r+b') as f:  # truncated, as an interrupted copy leaves it
        f.truncate(os.path.getsize(evil) // 2)
    with pytest.raises(CheckpointError, match=r'5\.state: not a readable PyTorch checkpoint'):
        basicsr.train.load_resume_state(opt)


class _Unsafe:
    pass


def test_local_rank_flag_of_torch_distributed_launch(tmp_path, monkeypatch):
    assert basicsr_fixes.normalize_argv(['-opt', 'a.yml', '--local-rank=1', '--local-rank', '2']) == [
        '-opt', 'a.yml', '--local_rank=1', '--local_rank', '2']
    option = tmp_path / 'o.yml'
    option.write_text('name: x\nnum_gpu: 0\nmanual_seed: 1\ndatasets: {}\npath: {}\n')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', str(option), '--local-rank=1'])
    opt, args = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert args.local_rank == 1 and opt['dist'] is False


def test_launcher_pytorch_without_cuda_uses_gloo_and_cpu_ddp(tmp_path, monkeypatch):
    """1.4.2 divides by torch.cuda.device_count() (0), hard-codes nccl and gives DDP a CUDA device id."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    monkeypatch.setattr(torch.multiprocessing, 'set_start_method', lambda *a, **k: None)  # keep pytest's method
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(29400 + os.getpid() % 500))
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    basicsr.utils.options.init_dist('pytorch')
    try:
        assert dist.get_backend() == 'gloo' and dist.get_world_size() == 1
        model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': True})
        wrapped = model.model_to_device(torch.nn.Conv2d(3, 3, 1))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
        assert wrapped.device_ids is None and next(wrapped.parameters()).device.type == 'cpu'
    finally:
        dist.destroy_process_group()


def test_checkpoints_written_atomically(tmp_path, monkeypatch):
    """1.4.2 writes straight to the final path; an interrupted save must leave the previous file intact."""
    opt = _opt(tmp_path)
    os.makedirs(opt['path']['models'])
    model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': False, 'path': opt['path']})
    model.optimizers, model.schedulers = [], []
    net = torch.nn.Conv2d(3, 3, 1)
    model.save_network(net, 'net_g', 4)
    model.save_training_state(0, 4)
    saved = torch.load(os.path.join(opt['path']['models'], 'net_g_4.pth'), weights_only=True)
    torch.testing.assert_close(saved['params']['weight'], net.weight.detach())

    def interrupted(obj, path, *args, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', interrupted)
    with pytest.raises(OSError, match='disk full'):
        model.save_network(torch.nn.Conv2d(3, 3, 1), 'net_g', 4)
    with pytest.raises(OSError, match='disk full'):
        model.save_training_state(0, 4)
    monkeypatch.undo()
    again = torch.load(os.path.join(opt['path']['models'], 'net_g_4.pth'), weights_only=True)
    torch.testing.assert_close(again['params']['weight'], net.weight.detach())
    assert torch.load(os.path.join(opt['path']['training_states'], '4.state'), weights_only=True)['iter'] == 4
    assert sorted(os.listdir(opt['path']['models'])) == ['net_g_4.pth']
