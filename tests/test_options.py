"""Every option file parses and builds its dataset-free parts (network, model, optimizer, scheduler)."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.utils.options import ordered_yaml

from lipt_arch.archs import LIPT

from .conftest import REPO

OPTIONS = sorted((REPO / 'options').glob('*.yml')) + sorted((REPO / 'options' / 'zoo').glob('*.yml'))
BENCHMARKS = ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on the shared 2-core machine small ops on 2 threads are several times slower."""
    torch.set_num_threads(1)
    yield


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def _as_parsed(opt: dict, tmp_path: Path) -> dict:
    """What basicsr's parse_options adds (one CPU process), without touching datasets or checkpoints."""
    opt = copy.deepcopy(opt)
    is_train = 'train' in opt
    opt.update(is_train=is_train, dist=False, rank=0, world_size=1, auto_resume=False, num_gpu=0)
    opt['path'] = {**opt.get('path', {}), 'pretrain_network_g': None, 'models': str(tmp_path)}
    return opt


def test_option_files_exist():
    names = {p.name for p in OPTIONS}
    expected = {'train_LIPT_x2.yml', 'test_LIPT_x2.yml'} | {
        f'{kind}_LIPT_{preset}_x{scale}.yml' for kind in ('train', 'test') for preset in ('tiny', 'small', 'base')
        for scale in (2, 3, 4)}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize('path', OPTIONS, ids=[p.stem for p in OPTIONS])
def test_option_file_builds(path, tmp_path):
    opt = _as_parsed(_load(path), tmp_path)
    if opt.get('train', {}).pop('perceptual_opt', None):  # VGG19 weights: a download (test_drop_in covers offline)
        assert opt['model_type'] == 'RealESRGANModel'
    model = build_model(opt)
    net = model.get_bare_model(model.net_g)
    assert isinstance(net, LIPT) and net.upscale == opt['scale'] == opt['network_g']['upscale']
    if opt['is_train']:
        assert isinstance(model.optimizers[0], torch.optim.Adam) and model.schedulers
        if opt['train'].get('ema_decay', 0) > 0:
            assert isinstance(model.net_g_ema, LIPT)
    for dataset in opt['datasets'].values():
        assert dataset['type'] and dataset.get('io_backend', {}).get('type', 'disk') in ('disk', 'lmdb')


SR_OPTIONS = [p for p in OPTIONS if re.fullmatch(r'(train|test)_LIPT_((tiny|small|base)_)?x[234]\.yml', p.name)]


@pytest.mark.parametrize('path', SR_OPTIONS, ids=lambda p: p.stem)
def test_sr_options_follow_the_protocol(path):
    """Spec section 4: Y-channel PSNR / SSIM with a border of `scale`; section 3: patches fit the scale."""
    opt = _load(path)
    scale = opt['scale']
    for metric in opt['val']['metrics'].values():
        assert metric['crop_border'] == scale and metric['test_y_channel'] is True
    if path.name.startswith('test_'):
        assert [d['name'] for d in opt['datasets'].values()] == BENCHMARKS
        assert all(d['dataroot_lq'].endswith(f'LRbicx{scale}') for d in opt['datasets'].values())
    else:
        train, sched = opt['datasets']['train'], opt['train']['scheduler']
        assert train['gt_size'] % scale == 0 and train['dataset_enlarge_ratio'] == 80
        assert sched['milestones'] == sorted(sched['milestones']) and sched['milestones'][-1] < opt['train'][
            'total_iter']
        assert opt['train']['pixel_opt']['type'] == 'L1Loss' and opt['train']['optim_g']['type'] == 'Adam'
        assert 'io_backend:\n    #   type: lmdb' in path.read_text()  # the LMDB alternative is shown
