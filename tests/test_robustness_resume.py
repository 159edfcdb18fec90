"""Training survives ``kill -9``: ``--auto_resume`` continues from the last complete state, ignores what a killed save
left behind, and ends with the same weights (bitwise) as a run that was never interrupted."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from basicsr.data.data_sampler import EnlargedSampler

from lipt_arch.basicsr_support import resume
from lipt_arch.checkpoints import read_checkpoint

from .basicsr_helpers import make_pairs, start_basicsr, train_options, write_options
from .conftest import REPO

# `basicsr train` with a real SIGKILL at a fixed point: inside iteration KILL_AT, or halfway through writing the
# temporary file of checkpoint KILL_SAVE (e.g. '9.state'), as a kill during torch.save leaves it.
KILLER = '''import os, signal, sys
import torch
import lipt_arch
from basicsr.models.sr_model import SRModel
from lipt_arch.basicsr_support.command import main
from lipt_arch.models.lipt_model import LIPTModel

kill_at, kill_save = int(os.environ.get('KILL_AT', 0)), os.environ.get('KILL_SAVE', '')
save = torch.save


def killing(step):
    def optimize(self, current_iter):
        if current_iter == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        step(self, current_iter)
    return optimize


def killed_save(obj, path, *args, **kwargs):
    save(obj, path, *args, **kwargs)
    if kill_save and os.path.basename(str(path)).startswith(kill_save + '.tmp'):
        with open(path, 'r+b') as f:
            f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)


for cls in (LIPTModel, SRModel):
    cls.optimize_parameters = killing(cls.optimize_parameters)
torch.save = killed_save
sys.exit(main(sys.argv[1:]))
'''
ITERS = 12
RUNS = {  # name: (environment of the killed run, extra flags); 6 images, batch 2: 3 iterations per epoch
    'uninterrupted': ({}, []),
    'killed_mid_epoch': ({'KILL_AT': '7'}, []),  # states at 4 (epoch 1, batch 1 of 3): resume mid-epoch
    'killed_during_save': ({'KILL_SAVE': '9.state'}, ['--force_yml', 'logger:save_checkpoint_freq=3']),  # from 6
    # fp16 autocast with its gradient scaler (on CPU), channels-last: the scaler's state is in the training state
    'fp16_uninterrupted': ({}, ['--force_yml', 'train:amp=fp16', 'train:channels_last=true']),
    'fp16_killed_mid_epoch': ({'KILL_AT': '7'}, ['--force_yml', 'train:amp=fp16', 'train:channels_last=true']),
    # BasicSR's SRModel: its EMA averages BatchNorm statistics and it validates the fused network (basicsr_support)
    'srmodel_uninterrupted': ({}, ['--force_yml', 'model_type=SRModel']),
    'srmodel_killed_mid_epoch': ({'KILL_AT': '7'}, ['--force_yml', 'model_type=SRModel']),
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict[str, Path]:
    """Each case's experiment folder, after the kill (exit -9) and an ``--auto_resume`` run to iteration 12."""
    procs = {}
    for name, (env, flags) in RUNS.items():
        root = tmp_path_factory.mktemp(name)
        make_pairs(root / 'data', count=6)
        opt = train_options(root, name='run', iters=ITERS, logger={'save_checkpoint_freq': 4}, val={'val_freq': 4})
        write_options(opt, root / 'run.yml')
        make_pairs(root / 'data', count=6)  # train_options wrote 4 pairs; the same first 4 plus 2 more
        (root / 'killer.py').write_text(KILLER)
        full_env = {**os.environ, **env, 'PYTHONPATH': f'{root}{os.pathsep}{REPO}', 'OMP_NUM_THREADS': '1'}
        command = [sys.executable, str(root / 'killer.py'), 'train', '-opt', 'run.yml', *flags]
        procs[name] = root, flags, subprocess.Popen(command, cwd=root, env=full_env, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE, text=True)
    resumed = {}
    for name, (root, flags, proc) in procs.items():
        _, err = proc.communicate(timeout=600)
        killed = bool(RUNS[name][0])
        assert proc.returncode == (-9 if killed else 0), (name, err[-3000:])
        if killed:
            resumed[name] = root, start_basicsr(['train', '-opt', 'run.yml', '--auto_resume', *flags], root)
    for name, (_, proc) in resumed.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (name, err[-3000:])
    return {name: root / 'experiments' / 'run' for name, (root, _, _) in procs.items()}


def _weights(exp: Path, it: int) -> dict[str, dict[str, torch.Tensor]]:
    return read_checkpoint(exp / 'models' / f'net_g_{it}.pth')


@pytest.mark.parametrize('case', ['killed_mid_epoch', 'killed_during_save', 'fp16_killed_mid_epoch',
                                  'srmodel_killed_mid_epoch'])
def test_resumed_run_equals_uninterrupted_bitwise(runs, case):
    prefix = case.split('_')[0] + '_' if case.startswith(('fp16', 'srmodel')) else ''
    uninterrupted = f'{prefix}uninterrupted'
    reference, resumed = _weights(runs[uninterrupted], ITERS), _weights(runs[case], ITERS)
    assert set(reference) == set(resumed) == {'params', 'params_ema'}
    for key in reference:
        for name, tensor in reference[key].items():
            assert torch.equal(tensor, resumed[key][name]), (case, key, name)
    state = read_checkpoint(runs[case] / 'training_states' / f'{ITERS}.state')
    assert int(state['optimizers'][0]['state'][0]['step']) == ITERS  # no lost or repeated optimizer steps
    if case.startswith('fp16'):  # the scaler was saved and restored: same scale and growth tracker
        reference_state = read_checkpoint(runs[uninterrupted] / 'training_states' / f'{ITERS}.state')
        assert state['grad_scaler'] == reference_state['grad_scaler']
        assert state['grad_scaler']['_growth_tracker'] == ITERS  # no overflow, no reset: the count survived


def test_resume_continues_from_last_complete_state(runs):
    log = '\n'.join(p.read_text() for p in sorted(runs['killed_mid_epoch'].glob('train_run_*.log')))
    assert 'Resuming training from epoch: 1, iter: 4.' in log
    trained = [int(it) for it in re.findall(r'\[epoch:\s*\d+, iter:\s*(\d+),', log)]
    assert trained == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10, 11, 12]  # killed in 7; 5-6 redone from state 4


def test_stale_temporary_file_of_killed_save_is_ignored(runs):
    exp = runs['killed_during_save']
    stale = list((exp / 'training_states').glob('9.state.tmp*'))
    assert len(stale) == 1 and stale[0].stat().st_size > 0  # the half-written file the kill left
    log = '\n'.join(p.read_text() for p in exp.glob('train_run_*.log'))
    assert 'Resuming training from epoch: 1, iter: 6.' in log  # the newest complete state, not the stale 9
    assert read_checkpoint(exp / 'training_states' / '9.state')['iter'] == 9  # rewritten by the resumed run


def test_rng_state_round_trips_through_weights_only_file(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    torch.save({'rng': resume.get_rng_state()}, tmp_path / 'x.state')
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    resume.set_rng_state(read_checkpoint(tmp_path / 'x.state')['rng'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.mark.parametrize('dist, num_gpu, world_size, skip, rng', [
    (False, 0, 1, 6, True), (False, 2, 1, 12, True), (True, 1, 2, 6, False)])
def test_resume_point_sets_the_sampler_skip(dist, num_gpu, world_size, skip, rng):
    """Skip = batches done x samples per batch on this rank; generators restored only in a one-process run."""
    opt = {'dist': dist, 'num_gpu': num_gpu, 'world_size': world_size, 'datasets': {'train': {'batch_size_per_gpu': 2}}}
    point = {'epoch': 1, 'batches': 3, 'rng': resume.get_rng_state()}
    resume.expect_resume(opt, {'resume_point': point})
    sampler = resume.ResumableSampler(list(range(10)), num_replicas=1, rank=0)
    assert (sampler._resume['skip'], sampler._resume['rng'] is not None) == (skip, rng)
    sampler.set_epoch(1)
    stock = EnlargedSampler(list(range(10)), 1, 0)
    stock.set_epoch(1)
    assert list(sampler) == list(stock)[skip:] and sampler.batches_done == 3
    sampler.set_epoch(2)
    stock.set_epoch(2)
    assert list(sampler) == list(stock) and sampler.batches_done == 0  # only the resumed epoch skips


def test_old_state_without_resume_point_resumes_like_basicsr():
    resume.expect_resume({'datasets': {'train': {'batch_size_per_gpu': 2}}}, {'iter': 4})
    sampler = resume.ResumableSampler(list(range(6)), num_replicas=1, rank=0)
    sampler.set_epoch(1)
    assert sampler._resume is None and len(list(sampler)) == 6


def test_fixes_installed():
    import basicsr.train
    from basicsr.models.base_model import BaseModel

    from lipt_arch.basicsr_support import fixes as basicsr_fixes

    assert basicsr.train.EnlargedSampler is resume.ResumableSampler
    assert BaseModel.update_learning_rate is basicsr_fixes.update_learning_rate
