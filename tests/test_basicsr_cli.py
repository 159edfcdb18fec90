"""``basicsr train`` / ``basicsr test``: help, a full tiny run rooted at the cwd, resume on CPU, test, bad input."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import basicsr
import pytest
import torch

import lipt_arch
from lipt_arch.basicsr_support.command import main

from .basicsr_helpers import merge, paired_dataset, start_basicsr, train_options, write_options


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


def test_missing_option_file(tmp_path, capsys):
    assert main(['train', '-opt', str(tmp_path / 'nope.yml')]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'basicsr train: error: -opt: option file not found: {tmp_path}/nope.yml (not a file here')
    assert len(err.splitlines()) == 1 and 'demo (demo_LIPT_x2.yml)' in err  # names the bundled options


def test_invalid_yaml(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'bad.yml').write_text('name: [unclosed\n')
    assert main(['test', '-opt', 'bad.yml']) == 1
    assert capsys.readouterr().err.strip().startswith('basicsr test: error: bad.yml: not valid YAML')


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


@pytest.mark.parametrize('deploy', [False, True], ids=['training_checkpoint', 'deploy_checkpoint'])
def test_basicsr_test_evaluates_fused_checkpoint(trained_run, monkeypatch, caplog, deploy):
    root, _, _ = trained_run
    monkeypatch.chdir(root)
    val = train_options(root)['val']
    opt = {'name': 'tiny_test', 'model_type': 'LIPTModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
           'datasets': {'test_1': paired_dataset('gen', root / 'data' / 'HR', root / 'data' / 'LR', False)},
           'network_g': {**train_options(root)['network_g'], 'deploy': deploy},
           'path': {'pretrain_network_g': f'experiments/tiny/models/net_g{"_deploy" * deploy}_latest.pth',
                    'param_key_g': 'params_ema', 'strict_load_g': True},
           'val': merge(val, {'save_img': True, 'suffix': None, 'compare_bicubic': True})}
    with caplog.at_level(logging.INFO, logger='basicsr'):
        status = main(['test', '-opt', str(write_options(opt, root / 'tiny_test.yml'))])
    assert status == 0
    images = root / 'results' / 'tiny_test' / 'visualization' / 'gen'
    assert len(list(images.glob('img?_tiny_test.png'))) == 4  # BasicSR's save_img
    assert len(list(images.glob('img?_bicubic_LIPT_GT.png'))) == 4  # compare_bicubic: per dataset in basicsr test
    assert 'Validation gen' in caplog.text and '# psnr' in caplog.text


# Bad input: one line on stderr naming the file or option, exit status 1, no traceback, nothing lost -------------
# Each case is its own `basicsr train` process; they run concurrently (most of their time is importing).
def _case_missing_dataset(root: Path) -> dict:
    return {'datasets': {'train': {'dataroot_gt': 'datasets/nowhere/HR'}}}


def _case_network_keyword(root: Path) -> dict:
    return {'network_g': {'num_feats': 8}}


def _case_wrong_scale(root: Path) -> dict:
    torch.save({'params': lipt_arch.LIPT(upscale=3, num_feat=8, num_block=1).state_dict()}, root / 'wrong.pth')
    return {'path': {'pretrain_network_g': str(root / 'wrong.pth')}}


def _case_wrong_arch(root: Path) -> dict:
    torch.save({'params': torch.nn.Conv2d(3, 12, 3).state_dict()}, root / 'wrong.pth')
    return {'path': {'pretrain_network_g': str(root / 'wrong.pth')}}


def _case_corrupted_pretrain(root: Path) -> dict:
    (root / 'corrupt.pth').write_bytes(b'PK\x03\x04 truncated zip')
    return {'path': {'pretrain_network_g': str(root / 'corrupt.pth')}}


def _case_corrupted_resume(root: Path) -> dict:
    """A truncated newest state under --auto_resume, next to a checkpoint that must survive."""
    states, models = root / 'experiments' / 'tiny' / 'training_states', root / 'experiments' / 'tiny' / 'models'
    states.mkdir(parents=True)
    models.mkdir()
    (models / 'net_g_2.pth').write_bytes(b'precious')
    torch.save({'iter': 2}, states / '2.state')
    data = (states / '2.state').read_bytes()
    (states / '2.state').write_bytes(data[:len(data) // 2])
    return {}


def _case_amp(root: Path) -> dict:
    return {'train': {'amp': 'fp8'}}


BAD_CASES = {  # name: (make the input, extra flags, how it is started)
    'missing_dataset': (_case_missing_dataset, [], 'cli'),
    'network_keyword': (_case_network_keyword, [], 'cli'),
    'wrong_scale': (_case_wrong_scale, [], 'cli'),
    'wrong_arch': (_case_wrong_arch, [], 'cli'),
    'corrupted_pretrain': (_case_corrupted_pretrain, [], 'cli'),
    'corrupted_resume': (_case_corrupted_resume, ['--auto_resume'], 'python -m lipt_arch.train'),
    'amp_value': (_case_amp, [], 'cli'),
}


@pytest.fixture(scope='module')
def bad_runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """``{case: (its directory, last stderr line)}`` after checking exit status 1 and no traceback."""
    procs = {}
    for name, (make, flags, how) in BAD_CASES.items():
        root = tmp_path_factory.mktemp(name)
        option = write_options(merge(train_options(root, name='tiny'), make(root)), root / 'bad.yml')
        args = ['-opt', str(option), *flags]
        procs[name] = root, (start_basicsr(['train', *args], root) if how == 'cli' else
                             start_basicsr(args, root, module='lipt_arch.train'))
    results = {}
    for name, (root, proc) in procs.items():
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 1, (name, stderr[-3000:])
        assert 'Traceback' not in stderr, (name, stderr[-3000:])
        last = stderr.strip().splitlines()[-1]
        assert last.startswith('basicsr train: error: '), (name, last)
        results[name] = root, last
    return results


def test_bad_missing_dataset_folder(bad_runs):
    root, last = bad_runs['missing_dataset']
    assert 'datasets.train.dataroot_gt' in last and 'datasets/nowhere/HR' in last
    assert not (root / 'experiments').exists()  # checked before BasicSR makes folders


def test_bad_amp_value(bad_runs):
    root, last = bad_runs['amp_value']
    assert last == "basicsr train: error: train.amp: must be bf16, fp16 or false, got 'fp8'"
    assert not (root / 'experiments').exists()


def test_bad_network_keyword(bad_runs):
    _, last = bad_runs['network_keyword']
    assert 'network_g' in last and "'num_feats'" in last


@pytest.mark.parametrize('case', ['wrong_scale', 'wrong_arch'])
def test_bad_pretrain_of_wrong_scale_or_arch(bad_runs, case):
    root, last = bad_runs[case]
    assert f'path.pretrain_network_g: {root / "wrong.pth"}: weights do not fit network_g' in last


def test_bad_corrupted_pretrain(bad_runs):
    root, last = bad_runs['corrupted_pretrain']
    assert f'path.pretrain_network_g: {root / "corrupt.pth"}:' in last


def test_bad_corrupted_resume_state_loses_nothing(bad_runs):
    root, last = bad_runs['corrupted_resume']
    exp = root / 'experiments' / 'tiny'
    assert str(exp / 'training_states' / '2.state') in last and 'truncated or corrupt' in last
    assert (exp / 'models' / 'net_g_2.pth').read_bytes() == b'precious'
    assert sorted(p.name for p in (root / 'experiments').iterdir()) == ['tiny']  # not archived or renamed
