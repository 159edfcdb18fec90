"""``basicsr train`` on bad options, mismatched image pairs and NaN / Inf losses: one ``basicsr train: error:`` line
naming the key, file or iteration, exit status 1, and no checkpoint lost or overwritten."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.losses.basic_loss import L1Loss

from lipt_arch.basicsr_support.command import main
from lipt_arch.checkpoints import read_checkpoint
from lipt_arch.errors import NonFiniteLossError
from lipt_arch.models.lipt_model import LIPTModel
from lipt_arch.validation import check_lipt_options

from .basicsr_helpers import merge, train_options, write_options
from .conftest import REPO


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(sys, 'argv', list(sys.argv))


def _fresh_basicsr_logger() -> None:
    """BasicSR sets its logger up once per process; forget that so this run writes its own log file."""
    import logging

    from basicsr.utils import logger as basicsr_logger

    basicsr_logger.initialized_logger.pop('basicsr', None)
    log = logging.getLogger('basicsr')
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def _train(root: Path, opt: dict, capsys, *flags: str) -> tuple[int, str]:
    """Run ``basicsr train`` in ``root``; (exit status, last stderr line; BasicSR's log goes to stderr too)."""
    _fresh_basicsr_logger()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        status = main(['train', '-opt', str(write_options(opt, root / 'run.yml')), *flags])
    return status, capsys.readouterr().err.strip().splitlines()[-1]


OPTION_CASES = {  # name: (options merged into the tiny run, text the error line must hold)
    'unknown_preset': ({'network_g': {'type': 'LIPT_smal'}},
                       "network_g.type: unknown LIPT type or preset 'LIPT_smal'"),
    'window_12': ({'network_g': {'window_size': 12}}, 'network_g.window_size: must be one of 8, 16, got 12'),
    'upscale_5': ({'network_g': {'upscale': 5}}, 'network_g.upscale: must be one of 1, 2, 3, 4, got 5'),
    'scale_8': ({'scale': 8, 'network_g': {'upscale': 2}}, 'scale: must be one of 1, 2, 3, 4, got 8'),
    'scale_vs_upscale': ({'scale': 3}, 'scale: 3 differs from network_g.upscale: 2'),
    'gt_size_odd': ({'datasets': {'train': {'gt_size': 17}}},
                    'datasets.train.gt_size: 17 is not divisible by scale 2 (try 16)'),
    'negative_batch': ({'datasets': {'train': {'batch_size_per_gpu': -2}}},
                       'datasets.train.batch_size_per_gpu: must be a positive integer, got -2'),
    'negative_workers': ({'datasets': {'train': {'num_worker_per_gpu': -1}}},
                         'datasets.train.num_worker_per_gpu: must be an integer >= 0, got -1'),
    'zero_checkpoint_freq': ({'logger': {'save_checkpoint_freq': 0}},
                             'logger.save_checkpoint_freq: must be a positive integer, got 0'),
    'string_val_freq': ({'val': {'val_freq': '5e3'}}, "val.val_freq: must be a positive integer, got '5e3'"),
    'compile_not_bool': ({'train': {'compile_rep_convs': 'yes please'}},
                         "train.compile_rep_convs: must be true or false, got 'yes please'"),
    # values basicsr's own parse_options fails on with a traceback (checked before it runs)
    'dataroot_list': ({'datasets': {'train': {'dataroot_gt': ['a', 'b']}}},
                      "datasets.train.dataroot_gt: must be one path (a string), got ['a', 'b'] (several HR folders"),
    'dataroot_number': ({'datasets': {'val': {'dataroot_lq': 5}}},
                        'datasets.val.dataroot_lq: must be one path (a string), got 5'),
    'num_gpu_text': ({'num_gpu': 'two'}, "num_gpu: must be 'auto' or an integer >= 0, got 'two'"),
    'pretrain_list': ({'path': {'pretrain_network_g': ['x.pth']}},
                      "path.pretrain_network_g: must be a checkpoint path (a string), got ['x.pth']"),
    'zero_init_text': ({'network_g': {'zero_init_residual': 'yes'}},
                       "network_g.zero_init_residual: must be true or false, got 'yes'"),
    'val_dtype_int4': ({'val': {'dtype': 'int4'}}, "val.dtype: must be one of fp32, bf16, fp16, int8, got 'int4'"),
    'val_int8_without_calibration': ({'val': {'dtype': 'int8'}}, 'val.dtype int8 needs val.calibration'),
    'val_calibration_without_int8': ({'val': {'calibration': '.'}}, 'val.calibration is for val.dtype int8 only'),
    'val_calibration_missing': ({'val': {'dtype': 'int8', 'calibration': 'no/such'}},
                                'val.calibration: no such folder: no/such'),
}


@pytest.mark.parametrize('case', OPTION_CASES)
def test_bad_option_names_the_key_before_any_folder(tmp_path, capsys, case):
    extra, expected = OPTION_CASES[case]
    status, err = _train(tmp_path, merge(train_options(tmp_path), extra), capsys)
    assert status == 1 and err.startswith(f'basicsr train: error: {expected}') and err.count('error:') == 1, err
    assert not (tmp_path / 'experiments').exists()


def test_unknown_preset_suggests_the_close_name(tmp_path, capsys):
    _, err = _train(tmp_path, merge(train_options(tmp_path), OPTION_CASES['unknown_preset'][0]), capsys)
    assert 'did you mean LIPT_small?' in err


def _pairs_case(root: Path, case: str) -> dict:
    opt = train_options(root)
    hr, lr = root / 'data' / 'HR', root / 'data' / 'LR'
    if case == 'lq_missing':
        (lr / 'img3.png').unlink()
    elif case == 'gt_missing':
        (hr / 'img3.png').rename(hr / 'other.png')
    elif case == 'truncated':
        (hr / 'img1.png').write_bytes((hr / 'img1.png').read_bytes()[:100])
    elif case == 'empty':
        (lr / 'img0.png').write_bytes(b'')
    elif case == 'not_an_image':
        (lr / 'img0.png').write_bytes(b'not an image' * 10 + b'IEND')
    else:  # 'size': an LQ that is not GT / scale
        cv2.imwrite(str(lr / 'img2.png'), np.zeros((15, 16, 3), np.uint8))
    return opt


@pytest.mark.parametrize('case, expected', [
    ('lq_missing', 'datasets.train: GT {hr}/img3.png has no LQ partner {lr}/img3.png'),
    ('gt_missing', 'datasets.train: GT {hr}/other.png has no LQ partner {lr}/other.png'),
    ('size', 'datasets.train: GT {hr}/img2.png is 32x32 but LQ {lr}/img2.png is 16x15; GT must be 2x the LQ'),
    ('truncated', 'datasets.train: truncated image (no end marker): {hr}/img1.png'),
    ('empty', 'datasets.train: empty image file (0 bytes): {lr}/img0.png'),
    ('not_an_image', 'datasets.train: cannot read image {lr}/img0.png'),
])
def test_mismatched_pairs_name_the_pair(tmp_path, capsys, case, expected):
    status, err = _train(tmp_path, _pairs_case(tmp_path, case), capsys)
    hr, lr = tmp_path / 'data' / 'HR', tmp_path / 'data' / 'LR'
    assert status == 1 and expected.format(hr=hr, lr=lr) in err, err
    assert not (tmp_path / 'experiments').exists()


def test_extra_lq_file_is_named(tmp_path, capsys):
    opt = train_options(tmp_path)
    cv2.imwrite(str(tmp_path / 'data' / 'LR' / 'zz.png'), np.zeros((16, 16, 3), np.uint8))
    status, err = _train(tmp_path, opt, capsys)
    assert status == 1 and f'LQ {tmp_path}/data/LR/zz.png has no GT partner' in err


@pytest.fixture
def nan_from_iteration(monkeypatch):
    """L1Loss returns NaN from the given iteration on (counted in calls during training)."""
    def install(first_bad: int) -> None:
        calls = {'n': 0}
        forward = L1Loss.forward

        def maybe_nan(self, pred, target, weight=None, **kwargs):
            calls['n'] += 1
            loss = forward(self, pred, target, weight, **kwargs)
            return loss * float('nan') if calls['n'] >= first_bad else loss
        monkeypatch.setattr(L1Loss, 'forward', maybe_nan)
    return install


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, nan_from_iteration):
    nan_from_iteration(7)
    opt = train_options(tmp_path, iters=12, logger={'save_checkpoint_freq': 4})
    status, err = _train(tmp_path, opt, capsys)
    assert status == 1 and err.startswith('basicsr train: error: iteration 7: non-finite loss (l_pix nan)'), err
    assert 'resume with --auto_resume' in err
    exp = tmp_path / 'experiments' / 'tiny'
    assert {p.name for p in (exp / 'training_states').iterdir()} == {'4.state'}
    models = {p.name for p in (exp / 'models').iterdir()}
    assert 'net_g_latest.pth' not in models and 'net_g_deploy_latest.pth' in models  # the deploy one is from 4
    for key, params in read_checkpoint(exp / 'models' / 'net_g_4.pth').items():
        assert all(torch.isfinite(t).all() for t in params.values()), key
    assert 'iteration 7: non-finite loss' in next(exp.glob('train_tiny_*.log')).read_text()


def test_inf_loss_from_the_first_iteration(tmp_path, capsys):
    opt = train_options(tmp_path, train={'pixel_opt': {'loss_weight': 1e39}})  # overflows float32
    status, err = _train(tmp_path, opt, capsys)
    assert status == 1 and 'iteration 1: non-finite loss (l_pix inf)' in err, err
    assert not list((tmp_path / 'experiments' / 'tiny' / 'models').iterdir())


def test_non_finite_gradient_is_refused_before_the_step(monkeypatch):
    """A finite loss whose gradient overflows: the weights must stay as they were."""
    model = LIPTModel.__new__(LIPTModel)
    net = torch.nn.Conv2d(3, 3, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model.net_g, model.opt, model.ema_decay = net, {'dist': False}, 0
    model.optimizer_g = torch.optim.Adam(net.parameters(), 1e-3)
    # sqrt(0) is 0 (a finite loss) but its gradient is infinite
    model.cri_pix, model.cri_perceptual = (lambda out, gt: torch.sqrt(out - out.detach()).mean()), None
    model.lq = model.gt = torch.ones(1, 3, 4, 4)
    with pytest.raises(NonFiniteLossError, match='iteration 3: non-finite gradient'):
        model.optimize_parameters(3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize('path', sorted((REPO / 'options').glob('*.yml')), ids=lambda p: p.stem)
def test_shipped_option_files_pass_the_checks(path):
    check_lipt_options(yaml.safe_load(path.read_text()))
