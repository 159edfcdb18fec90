"""``basicsr train|test``: every option value checked before the experiment folder is made (numbers, registered
types, missing sections, patch sizes, empty image folders, scheduler periods, the experiment name), extending a
finished run, a corrupt resume state, and SIGTERM / Ctrl-C: one ``basicsr <command>:`` line each."""
from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from lipt_arch.basicsr_support.command import main
from lipt_arch.checkpoints import read_checkpoint
from lipt_arch.errors import OptionError
from lipt_arch.validation import check_lipt_options, check_patch_size, check_sections

from .basicsr_helpers import merge, paired_dataset, start_basicsr, train_options, write_options
from .conftest import REPO
from .test_robustness_training import _fresh_basicsr_logger

COSINE = {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'restart_weights': [1], 'eta_min': 1e-5}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))  # run() hands BasicSR its own argv


def _run(root: Path, opt: dict, capsys, *flags: str, command: str = 'train') -> tuple[int, list[str]]:
    """``basicsr <command>`` in ``root`` on ``opt``; (exit status, stderr lines)."""
    _fresh_basicsr_logger()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        status = main([command, '-opt', str(write_options(opt, root / 'run.yml')), *flags])
    return status, capsys.readouterr().err.strip().splitlines()


def _assert_refused(root: Path, status: int, err: list[str], expected: str, command: str = 'train') -> None:
    """Exit status 1, exactly one stderr line, starting with the expected error, and no folder made."""
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(f'basicsr {command}: error: {expected}'), err
    assert not (root / 'experiments').exists() and not (root / 'results').exists()


def _set(path: str, value: object) -> Callable[[dict], None]:
    """Set (or with ``...`` delete) the option at a dotted ``path``."""
    def apply(opt: dict) -> None:
        *parents, last = path.split('.')
        node = opt
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return apply


# numbers: types and ranges --------------------------------------------------------------------------------------
NUMBERS = {  # name: (change, text the error line starts with)
    'lr_text': (_set('train.optim_g.lr', '5e-3x'), "train.optim_g.lr: must be a number > 0 (e.g. !!float 2e-4), "
                                                    "got '5e-3x'"),
    'lr_yaml_text': (_set('train.optim_g.lr', '5e-3'), "train.optim_g.lr: must be a number > 0 (e.g. !!float 2e-4), "
                                                        "got '5e-3' (YAML reads 5e-3 as text; write !!float 5e-3)"),
    'lr_negative': (_set('train.optim_g.lr', -1.0), 'train.optim_g.lr: must be a number > 0'),
    'ema_decay_text': (_set('train.ema_decay', 'high'), "train.ema_decay: must be a number in [0, 1)"),
    'total_iter_zero': (_set('train.total_iter', 0), 'train.total_iter: must be a positive integer, got 0'),
    'total_iter_text': (_set('train.total_iter', '1e5'), "train.total_iter: must be a positive integer, got '1e5' "
                                                          '(YAML reads 1e5 as text; write !!float 1e5)'),
    'warmup_text': (_set('train.warmup_iter', 'none'), "train.warmup_iter: must be an integer (-1: no warm-up)"),
    'batch_zero': (_set('datasets.train.batch_size_per_gpu', 0),
                   'datasets.train.batch_size_per_gpu: must be a positive integer, got 0'),
    'gt_size_text': (_set('datasets.train.gt_size', '16'), "datasets.train.gt_size: must be a positive integer, got "
                                                            "'16' (a quoted number is text: write it without quotes)"),
    'scale_text': (_set('scale', '2'), "scale: must be one of 1, 2, 3, 4, got '2'"),
    'enlarge_ratio_zero': (_set('datasets.train.dataset_enlarge_ratio', 0),
                           'datasets.train.dataset_enlarge_ratio: must be a positive integer, got 0'),
    'prefetch_mode': (_set('datasets.train.prefetch_mode', 'gpu'), "datasets.train.prefetch_mode: must be ~, cpu or "
                                                                    "cuda, got 'gpu'"),
    'val_freq_float': (_set('val.val_freq', 2.5), 'val.val_freq: must be a positive integer, got 2.5'),
    'print_freq_negative': (_set('logger.print_freq', -1), 'logger.print_freq: must be a positive integer'),
    'loss_weight_text': (_set('train.pixel_opt.loss_weight', 'one'),
                         "train.pixel_opt.loss_weight: must be a number >= 0, got 'one'"),
    'loss_weight_negative': (_set('train.pixel_opt.loss_weight', -1.0), 'train.pixel_opt.loss_weight: must be a '
                                                                         'number >= 0'),
    'loss_reduction': (_set('train.pixel_opt.reduction', 'avg'), "train.pixel_opt.reduction: must be one of none, "
                                                                  "mean, sum, got 'avg'"),
    'betas_range': (_set('train.optim_g.betas', [0.9, 1.5]), 'train.optim_g.betas: must be two numbers in [0, 1)'),
    'betas_one': (_set('train.optim_g.betas', [0.9]), 'train.optim_g.betas: must be two numbers in [0, 1)'),
    'weight_decay_negative': (_set('train.optim_g.weight_decay', -0.1),
                              'train.optim_g.weight_decay: must be a number >= 0'),
    'gamma_zero': (_set('train.scheduler.gamma', 0), 'train.scheduler.gamma: must be a number > 0, got 0'),
    'milestones_text': (_set('train.scheduler.milestones', '100'), 'train.scheduler.milestones: MultiStepLR needs a '
                                                                    'list of positive integers'),
    'eta_min_text': (_set('train.scheduler', {**COSINE, 'eta_min': 'tiny'}),
                     "train.scheduler.eta_min: must be a number >= 0, got 'tiny'"),
    'restart_weights_length': (_set('train.scheduler', {**COSINE, 'restart_weights': [1, 0.5]}),
                               'train.scheduler.restart_weights: 2 weight(s) for 1 periods'),
    'scheduler_keyword': (_set('train.scheduler', {**COSINE, 'milestones': [2]}),
                          'train.scheduler.milestones: not a keyword of CosineAnnealingRestartLR'),
    'crop_border_negative': (_set('val.metrics.psnr.crop_border', -2),
                             'val.metrics.psnr.crop_border: must be an integer >= 0, got -2'),
    'manual_seed_text': (_set('manual_seed', 'zero'), "manual_seed: must be an integer in [0, 2**32)"),
}


def _refused_case(tmp_path, capsys, cases: dict, case: str) -> None:
    """Apply ``cases[case]``'s change to a valid option dict; the run must be refused with its expected line."""
    change, expected = cases[case]
    opt = train_options(tmp_path)
    change(opt)
    _assert_refused(tmp_path, *_run(tmp_path, opt, capsys), expected)


@pytest.mark.parametrize('case', NUMBERS)
def test_bad_number_is_one_line_before_any_folder(tmp_path, capsys, case):
    _refused_case(tmp_path, capsys, NUMBERS, case)


# types looked up in BasicSR's registries ------------------------------------------------------------------------
TYPES = {  # name: (change, text the error line starts with, closest names it must suggest)
    'model_type': (_set('model_type', 'SRModle'), "model_type: unknown model type 'SRModle'", 'SRModel'),
    'network': (_set('network_g', {'type': 'RRDBNett'}), "network_g.type: unknown arch type 'RRDBNett'", 'RRDBNet'),
    'network_case': (_set('network_g.type', 'lipt_tiny'), "network_g.type: unknown arch type 'lipt_tiny'",
                     'LIPT_tiny'),
    'loss': (_set('train.pixel_opt.type', 'L1Los'), "train.pixel_opt.type: unknown loss type 'L1Los'", 'L1Loss'),
    'optimizer': (_set('train.optim_g.type', 'AdamW'), "train.optim_g.type: unknown optimizer 'AdamW' (basicsr "
                                                        "1.4.2 builds Adam)", 'Adam'),
    'scheduler': (_set('train.scheduler.type', 'CosineAnnealing'),
                  "train.scheduler.type: unknown scheduler 'CosineAnnealing'", 'CosineAnnealingRestartLR'),
    'dataset': (_set('datasets.val.type', 'PairedImageDatset'),
                "datasets.val.type: unknown dataset type 'PairedImageDatset'", 'PairedImageDataset'),
    'metric': (_set('val.metrics.psnr.type', 'psnr'), "val.metrics.psnr.type: unknown metric type 'psnr'",
               'calculate_psnr'),
    'dataset_missing': (_set('datasets.train.type', ...), 'datasets.train.type: missing', 'PairedImageDataset'),
}


@pytest.mark.parametrize('case', TYPES)
def test_unknown_type_names_the_closest_registered_ones(tmp_path, capsys, case):
    change, expected, closest = TYPES[case]
    opt = train_options(tmp_path)
    change(opt)
    status, err = _run(tmp_path, opt, capsys)
    _assert_refused(tmp_path, status, err, expected)
    assert closest in err[0].split(expected, 1)[1], err


def _test_options(root: Path, **extra: object) -> dict:
    """A tiny ``basicsr test`` option dict on the generated pairs (random weights)."""
    opt = train_options(root)
    return merge({'name': 'tiny_test', 'model_type': 'LIPTModel', 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
                  'datasets': {'test_1': paired_dataset('gen', root / 'data' / 'HR', root / 'data' / 'LR', False)},
                  'network_g': opt['network_g'], 'path': {'pretrain_network_g': None, 'strict_load_g': True},
                  'val': {**opt['val'], 'save_img': False}}, extra)


def test_basicsr_test_checks_types_too(tmp_path, capsys):
    opt = _test_options(tmp_path, val={'metrics': {'ssim': {'type': 'calculate_SSIM'}}})
    status, err = _run(tmp_path, opt, capsys, command='test')
    _assert_refused(tmp_path, status, err, "val.metrics.ssim.type: unknown metric type 'calculate_SSIM'", 'test')
    assert 'did you mean calculate_ssim' in err[0]


# sections basicsr train needs -----------------------------------------------------------------------------------
SECTIONS = {
    'no_train': (_set('train', ...), 'train: missing: basicsr train needs a train: section'),
    'no_scheduler': (_set('train.scheduler', ...), 'train.scheduler: missing'),
    'no_loss': (_set('train.pixel_opt', ...), 'train.pixel_opt: missing: LIPTModel needs a loss'),
    'no_print_freq': (_set('logger.print_freq', ...), 'logger.print_freq: missing'),
    'test_phase': (lambda opt: opt['datasets'].update(test_1=opt['datasets']['val']),
                   'datasets.test_1: basicsr train takes the phases train and val'),
}


@pytest.mark.parametrize('case', SECTIONS)
def test_missing_train_section_is_one_line(tmp_path, capsys, case):
    _refused_case(tmp_path, capsys, SECTIONS, case)


# gt_size and the training images --------------------------------------------------------------------------------
def _bicubic_train(root: Path, **extra: object) -> dict:
    opt = train_options(root)
    opt['datasets']['train'] = merge({'name': 'train', 'type': 'BicubicSRDataset', 'dataroot_gt': str(
        root / 'data' / 'HR'), 'gt_size': 16, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2}, extra)
    return opt


@pytest.mark.parametrize('case, expected', [
    ('paired', 'datasets.train.gt_size: 64 is larger than {hr}/img0.png (32x32) and 3 other image(s); lower gt_size '
               'or remove such images (type BicubicSRDataset with skip_smaller: true leaves them out)'),
    ('bicubic', 'datasets.train.gt_size: 64 is larger than {hr}/img0.png (32x32) and 3 other image(s); lower gt_size '
                'or set skip_smaller: true to leave such images out'),
    ('bicubic_skip_all', 'datasets.train.gt_size: 64 is larger than every training image (e.g. {hr}/img0.png, '
                         '32x32); skip_smaller: true leaves nothing to train on'),
])
def test_gt_size_larger_than_the_images(tmp_path, capsys, case, expected):
    if case == 'paired':
        opt = merge(train_options(tmp_path), {'datasets': {'train': {'gt_size': 64}}})
    else:
        opt = _bicubic_train(tmp_path, gt_size=64, skip_smaller=case == 'bicubic_skip_all')
    status, err = _run(tmp_path, opt, capsys)
    _assert_refused(tmp_path, status, err, expected.format(hr=tmp_path / 'data' / 'HR'))


def test_skip_smaller_with_some_large_images_passes(tmp_path):
    opt = _bicubic_train(tmp_path, gt_size=48, skip_smaller=True)
    cv2.imwrite(str(tmp_path / 'data' / 'HR' / 'big.png'), np.zeros((48, 64, 3), np.uint8))
    check_patch_size('datasets.train', opt['datasets']['train'])  # 4 of 5 smaller: left out, no error
    opt['datasets']['train']['skip_smaller'] = False
    with pytest.raises(OptionError, match=r'^datasets\.train\.gt_size: 48 is larger than .*/img0\.png \(32x32\) '
                                          r'and 3 other'):
        check_patch_size('datasets.train', opt['datasets']['train'])


@pytest.mark.parametrize('factors', [[1.5], 0.8])
def test_hr_downscales_out_of_range_is_refused_at_start(tmp_path, capsys, factors):
    status, err = _run(tmp_path, _bicubic_train(tmp_path, hr_downscales=factors), capsys)
    _assert_refused(tmp_path, status, err, 'datasets.train.hr_downscales: must be a list of factors between 0 and 1')


# image folders without images -----------------------------------------------------------------------------------
@pytest.mark.parametrize('command', ['train', 'test'])
def test_validation_folder_without_images_is_refused_at_start(tmp_path, capsys, command):
    empty_hr, empty_lr = tmp_path / 'empty' / 'HR', tmp_path / 'empty' / 'LR'
    empty_hr.mkdir(parents=True)
    empty_lr.mkdir()
    (empty_hr / 'notes.txt').write_text('no images here')  # a file, but no image
    if command == 'train':
        opt = train_options(tmp_path)
        opt['datasets']['val'] = {'name': 'val', 'type': 'BicubicSRDataset', 'dataroot_gt': str(empty_hr)}
        key = 'datasets.val.dataroot_gt'
    else:
        opt = _test_options(tmp_path)
        opt['datasets']['test_1'] = paired_dataset('gen', empty_hr, empty_lr, False)
        (empty_hr / 'notes.txt').unlink()  # PairedImageDataset: two empty folders
        key = 'datasets.test_1.dataroot_gt'
    status, err = _run(tmp_path, opt, capsys, command=command)
    _assert_refused(tmp_path, status, err, f'{key}: no images (.png, .jpg, ', command)
    assert str(empty_hr) in err[0]


# scheduler periods ----------------------------------------------------------------------------------------------
def test_cosine_periods_shorter_than_total_iter_are_refused(tmp_path, capsys):
    opt = train_options(tmp_path, iters=6)
    opt['train']['scheduler'] = {**COSINE, 'periods': [2, 2], 'restart_weights': [1, 0.5]}
    status, err = _run(tmp_path, opt, capsys)
    _assert_refused(tmp_path, status, err, 'train.scheduler.periods: [2, 2] sum to 4, fewer than train.total_iter 6')
    assert 'e.g. --force_yml train:scheduler:periods=[6]' in err[0]
    # MultiStepLR milestones after total_iter never apply: harmless, not refused
    check_lipt_options(merge(train_options(tmp_path, iters=6), {'train': {'scheduler': {'milestones': [10, 20]}}}))


# extending a finished run ---------------------------------------------------------------------------------------
def test_finished_cosine_run_extends_to_the_new_total(tmp_path, capsys):
    opt = train_options(tmp_path, iters=4, logger={'save_checkpoint_freq': 2}, val={'val_freq': 100})
    opt['train']['scheduler'] = dict(COSINE)
    status, _ = _run(tmp_path, opt, capsys)
    exp = tmp_path / 'experiments' / 'tiny'
    assert status == 0 and (exp / 'training_states' / '4.state').is_file()
    files = sorted(p.relative_to(exp) for p in exp.rglob('*'))

    # only total_iter longer: the saved periods would end at 4; refused before anything is touched
    status, err = _run(tmp_path, opt, capsys, '--auto_resume', '--force_yml', 'train:total_iter=8')
    assert status == 1 and err[-1].startswith('basicsr train: error: train.scheduler.periods: [4] sum to 4, fewer '
                                              'than train.total_iter 8'), err
    assert sorted(p.relative_to(exp) for p in exp.rglob('*')) == files

    # total_iter and periods: the option file's periods replace the saved ones, training goes on to 8
    status, err = _run(tmp_path, opt, capsys, '--auto_resume', '--force_yml', 'train:total_iter=8',
                       'train:scheduler:periods=[8]')
    assert status == 0, err[-5:]
    state = read_checkpoint(exp / 'training_states' / '8.state')
    assert state['iter'] == 8 and state['schedulers'][0]['periods'] == [8]
    assert state['schedulers'][0]['last_epoch'] == 7 and (exp / 'models' / 'net_g_8.pth').is_file()
    lr = state['optimizers'][0]['param_groups'][0]['lr']
    assert 1e-5 < lr < 1e-3  # on the new cosine, not yet at eta_min (the old one ended at 4)


def test_scheduler_type_change_on_resume_is_refused(tmp_path, capsys):
    """``train:scheduler:type=MultiStepLR`` on a CosineAnnealingRestartLR state: one line naming the state."""
    from lipt_arch.basicsr_support.resume import apply_scheduler_options

    state = {'schedulers': [{'periods': [4], 'cumulative_period': [4], 'last_epoch': 3}]}
    opt = {'train': {'scheduler': {'type': 'MultiStepLR', 'milestones': [10]}}, 'path': {'resume_state': 'x/4.state'}}
    with pytest.raises(OptionError, match=r'^train\.scheduler\.type: MultiStepRestartLR, but x/4\.state was trained '
                                          r'with CosineAnnealingRestartLR'):
        apply_scheduler_options(opt, state)
    opt['train']['scheduler'] = {**COSINE, 'periods': [6, 2], 'restart_weights': [1, 0.5]}
    apply_scheduler_options(opt, state)
    assert state['schedulers'][0] == {'periods': [6, 2], 'cumulative_period': [6, 8], 'last_epoch': 3,
                                      'restart_weights': [1, 0.5], 'eta_min': 1e-5}


# corrupt resume state -------------------------------------------------------------------------------------------
def test_corrupt_resume_state_names_the_file(tmp_path, capsys):
    broken = tmp_path / 'broken.state'
    broken.write_bytes(b'PK\x03\x04' + bytes(range(256)) * 4)
    opt = merge(train_options(tmp_path), {'path': {'resume_state': str(broken)}})
    status, err = _run(tmp_path, opt, capsys)
    _assert_refused(tmp_path, status, err, f'{broken}: ')


# the experiment name --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['../escape', 'runs/tiny', '/abs/tiny', '..', 'force_yml'])
def test_name_outside_experiments_is_refused(tmp_path, capsys, name):
    root = tmp_path / 'work'
    root.mkdir()
    flags = ('--force_yml', 'name=../escape') if name == 'force_yml' else ()
    opt = train_options(root, name='tiny' if name == 'force_yml' else name)
    status, err = _run(root, opt, capsys, *flags)
    shown = '../escape' if name == 'force_yml' else name
    _assert_refused(root, status, err, f'name: must be one plain folder name (no /, \\ or ..; it becomes '
                                       f"experiments/<name> and results/<name>), got '{shown}'")
    assert sorted(p.name for p in root.iterdir()) == ['data', 'run.yml']  # no experiments/../escape either
    assert sorted(p.name for p in tmp_path.iterdir()) == ['work']


# signals --------------------------------------------------------------------------------------------------------
def test_sigterm_and_ctrl_c_stop_with_one_line(tmp_path_factory):
    procs = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        root = tmp_path_factory.mktemp(signum.name)
        opt = train_options(root, iters=100000, logger={'save_checkpoint_freq': 2}, val={'val_freq': 100000})
        procs[signum] = root, start_basicsr(['train', '-opt', str(write_options(opt, root / 'run.yml'))], root)
    try:
        for signum, (root, proc) in procs.items():
            state = root / 'experiments' / 'tiny' / 'training_states' / '2.state'
            deadline = time.monotonic() + 900  # generous: the start (imports) is slow on a busy machine
            while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert state.exists(), proc.poll()  # training is under way (the handler is installed)
            proc.send_signal(signum)
        for signum, (_, proc) in procs.items():
            _, stderr = proc.communicate(timeout=300)
            ours = [line for line in stderr.splitlines() if line.startswith('basicsr train:')]
            name = 'SIGTERM' if signum == signal.SIGTERM else r'Ctrl-C \(SIGINT\)'
            assert proc.returncode == 128 + signum and 'Traceback' not in stderr, stderr[-3000:]
            expected = (rf'basicsr train: stopped by {name} at iteration (\d+); resume with --auto_resume '
                        r'\(from the newest training_states/<iter>\.state\)')
            assert len(ours) == 1 and re.fullmatch(expected, ours[0]), ours
            assert int(re.search(r'iteration (\d+)', ours[0]).group(1)) >= 2
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# shipped option files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize('path', sorted((REPO / 'options').rglob('*.yml')), ids=lambda p: p.stem)
def test_shipped_option_files_pass_every_check(path):
    opt = yaml.safe_load(path.read_text())
    check_lipt_options(opt)
    check_sections(opt, is_train='train' in opt)
