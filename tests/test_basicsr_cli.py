"""``basicsr train`` / ``basicsr test``: help, a full tiny run rooted at the cwd, resume on CPU, test, bad input."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import basicsr
import pytest
import torch

import lipt_arch
from lipt_arch.cli.basicsr_cli import main

from .basicsr_helpers import merge, paired_dataset, run_basicsr, train_options, write_options


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # run() hands BasicSR its own argv


@pytest.mark.parametrize('argv', [['--help'], ['train', '--help'], ['test', '--help']])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = ' '.join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    if argv == ['--help']:
        assert 'train' in out and 'test' in out and 'current directory' in out
    else:
        assert all(flag in out for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--force_yml',
                                            '--local-rank'))


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
    """One 4-iteration CLI training in a fresh directory (checkpoints every 2, bicubic comparison on)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('cli')
    opt = train_options(root, iters=4, logger={'save_checkpoint_freq': 2}, val={'compare_bicubic': True})
    option = write_options(opt, root / 'tiny.yml')
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setattr(sys, 'argv', list(sys.argv))
        status = main(['train', '-opt', str(option)])
    return root, option, status


def test_train_writes_everything_under_cwd(trained_run, capfd):
    root, _, status = trained_run
    assert status == 0
    exp = root / 'experiments' / 'tiny'
    models = {p.name for p in (exp / 'models').iterdir()}
    assert {'net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth', 'net_g_deploy_2.pth', 'net_g_deploy_4.pth',
            'net_g_deploy_latest.pth'} <= models
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'2.state', '4.state'}
    assert len(list((exp / 'visualization').glob('*_bicubic_LIPT_GT.png'))) == 4
    assert not (Path(basicsr.__file__).parent / 'experiments').exists()
    assert not (Path(lipt_arch.__file__).parent / 'experiments').exists()
    fused = lipt_arch.load_model(exp / 'models' / 'net_g_deploy_latest.pth')
    assert fused.config['deploy'] and fused(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_auto_resume_on_cpu(trained_run, monkeypatch):
    root, option, _ = trained_run
    monkeypatch.chdir(root)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: pytest.fail('touched CUDA'))
    status = main(['train', '-opt', str(option), '--auto_resume', '--force_yml', 'train:total_iter=6'])
    assert status == 0
    models = root / 'experiments' / 'tiny' / 'models'
    assert (models / 'net_g_6.pth').is_file() and (models / 'net_g_deploy_6.pth').is_file()
    assert not list(root.glob('experiments/tiny_archived_*'))  # resumed in place


def test_basicsr_test_evaluates_fused_checkpoint(trained_run, monkeypatch, caplog):
    root, _, _ = trained_run
    monkeypatch.chdir(root)
    val = train_options(root)['val']
    opt = {'name': 'tiny_test', 'model_type': 'LIPTModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
           'datasets': {'test_1': paired_dataset('gen', root / 'data' / 'HR', root / 'data' / 'LR', False)},
           'network_g': train_options(root)['network_g'],
           'path': {'pretrain_network_g': 'experiments/tiny/models/net_g_latest.pth', 'param_key_g': 'params_ema',
                    'strict_load_g': True},
           'val': merge(val, {'save_img': True, 'suffix': None})}
    with caplog.at_level(logging.INFO, logger='basicsr'):
        status = main(['test', '-opt', str(write_options(opt, root / 'tiny_test.yml'))])
    assert status == 0
    assert len(list((root / 'results' / 'tiny_test' / 'visualization' / 'gen').glob('*.png'))) == 4
    assert 'Validation gen' in caplog.text and '# psnr' in caplog.text


# Bad input: one line on stderr naming the file or option, exit status 1, no traceback, nothing lost -------------
def _bad_run(tmp_path, change: dict, extra_args: tuple = (), module: str = 'lipt_arch.cli.basicsr_cli'):
    opt = merge(train_options(tmp_path), change)
    option = write_options(opt, tmp_path / 'bad.yml')
    command = ['train'] if module.endswith('basicsr_cli') else []
    result = run_basicsr([*command, '-opt', str(option), *extra_args], cwd=tmp_path, module=module)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert last.startswith('basicsr train: error: '), last
    return last


def test_bad_missing_dataset_folder(tmp_path):
    last = _bad_run(tmp_path, {'datasets': {'train': {'dataroot_gt': 'datasets/nowhere/HR'}}})
    assert 'datasets.train.dataroot_gt' in last and 'datasets/nowhere/HR' in last
    assert not (tmp_path / 'experiments').exists()  # checked before BasicSR makes folders


def test_bad_network_keyword(tmp_path):
    last = _bad_run(tmp_path, {'network_g': {'num_feats': 8}})
    assert 'network_g' in last and "'num_feats'" in last


@pytest.mark.parametrize('what', ['scale', 'arch'])
def test_bad_pretrain_of_wrong_scale_or_arch(tmp_path, what):
    net = lipt_arch.LIPT(upscale=3, num_feat=8, num_block=1) if what == 'scale' else torch.nn.Conv2d(3, 12, 3)
    path = tmp_path / f'wrong_{what}.pth'
    torch.save({'params': net.state_dict()}, path)
    last = _bad_run(tmp_path, {'path': {'pretrain_network_g': str(path)}})
    assert f'path.pretrain_network_g: {path}: weights do not fit network_g' in last


def test_bad_corrupted_pretrain(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(b'PK\x03\x04 truncated zip')
    last = _bad_run(tmp_path, {'path': {'pretrain_network_g': str(path)}})
    assert f'path.pretrain_network_g: {path}:' in last


def test_bad_corrupted_resume_state_loses_nothing(tmp_path):
    """A truncated newest state under --auto_resume: clear error, and the experiment folder is left as it was."""
    states = tmp_path / 'experiments' / 'tiny' / 'training_states'
    models = tmp_path / 'experiments' / 'tiny' / 'models'
    states.mkdir(parents=True)
    models.mkdir()
    (models / 'net_g_2.pth').write_bytes(b'precious')
    torch.save({'iter': 2}, states / '2.state')
    data = (states / '2.state').read_bytes()
    (states / '2.state').write_bytes(data[:len(data) // 2])
    last = _bad_run(tmp_path, {}, ('--auto_resume',), module='lipt_arch.train')
    assert str(states / '2.state') in last and 'truncated or corrupt' in last
    assert (models / 'net_g_2.pth').read_bytes() == b'precious'
    assert sorted(p.name for p in (tmp_path / 'experiments').iterdir()) == ['tiny']
