"""LIPT in every BasicSR model type: output layout, BatchNorm-aware EMA, fused validation, Real-ESRGAN on a CPU,
SwinIRModel without window_size, the offline perceptual loss, and BasicSR's own option files trained end to end."""
from __future__ import annotations

import copy
import subprocess
import sys
import urllib.error

import pytest
import torch
import yaml
from basicsr.models import build_model
from basicsr.models.sr_model import SRModel

from benchmarks import drop_in
from lipt_arch import LIPT, optimize, preset_config, reparameterize
from lipt_arch.basicsr_support import ema
from lipt_arch.errors import OptionError
from lipt_arch.validation import check_lipt_options

from .basicsr_helpers import merge, train_options
from .conftest import REPO, randomize_, shared_path
from .test_training_model import _loader, _prepare


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


# ------------------------------------------------------------------------------------------------ output layout
def _forms() -> dict[str, torch.nn.Module]:
    net = randomize_(LIPT(**preset_config('tiny', 2)), seed=2).eval()
    fused = reparameterize(net)
    return {'training form': net, 'fused': fused, 'optimize fp32': optimize(fused)}


@pytest.mark.parametrize('form', ['training form', 'fused', 'optimize fp32'])
def test_output_layout_follows_the_input(form):
    net = _forms()[form]
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        out = net(x)
        out_cl = net(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous() and out.view(-1).numel() == 2 * 3 * 40 * 48  # BasicSR's discriminators call .view
    assert out_cl.is_contiguous() or out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-5)


def test_training_output_is_contiguous_for_a_discriminator():
    net = LIPT(**preset_config('tiny', 2)).train()
    out = net(torch.rand(2, 3, 16, 16))
    assert out.stride() == (3 * 32 * 32, 32 * 32, 32, 1)
    out.view(2, -1).sum().backward()  # as VGGStyleDiscriminator's flatten does


# ------------------------------------------------------------------------------------------------------------- EMA
def _model(tmp_path, **extra):
    opt = _prepare(train_options(tmp_path, **extra), tmp_path)
    return build_model(opt), opt


def test_srmodel_ema_averages_batchnorm_statistics(tmp_path):
    model, opt = _model(tmp_path, model_type='SRModel')
    net, ema_net = model.get_bare_model(model.net_g), model.net_g_ema
    batch = next(iter(_loader(opt, 'train')))
    model.feed_data(batch)
    model.optimize_parameters(1)  # BasicSR's step, then model_ema(decay=0.5) (the helper options' ema_decay)
    bn = 'body.0.layers.0.hrm_a.conv0.bn3x3'
    old = {k: v.clone() for k, v in ema_net.state_dict().items()}
    model.feed_data(batch)
    model.optimize_parameters(2)
    new, src = ema_net.state_dict(), net.state_dict()
    for key in (f'{bn}.running_mean', f'{bn}.running_var'):
        torch.testing.assert_close(new[key], 0.5 * old[key] + 0.5 * src[key])
        assert not torch.equal(new[key], old[key])
    assert torch.equal(new[f'{bn}.num_batches_tracked'], src[f'{bn}.num_batches_tracked'])


def test_networks_without_batchnorm_keep_basicsr_ema(tmp_path):
    """A network without BatchNorm (SwinIR: buffers, but constant ones) gets BasicSR's own update, bit for bit."""
    net = {'type': 'SwinIR', 'upscale': 2, 'img_size': 16, 'window_size': 4, 'depths': [1], 'embed_dim': 6,
           'num_heads': [1], 'mlp_ratio': 1, 'upsampler': 'pixelshuffle'}
    model, _ = _model(tmp_path, model_type='SwinIRModel', network_g=net)
    assert not ema.has_batchnorm(model.net_g)
    with torch.no_grad():
        for p in model.net_g.parameters():
            p.add_(torch.randn_like(p))
    twin = copy.deepcopy(model)
    model.model_ema(0.9)
    ema._ORIGINAL['model_ema'](twin, 0.9)
    for (k, a), b in zip(model.net_g_ema.state_dict().items(), twin.net_g_ema.state_dict().values()):
        assert torch.equal(a, b), k


# --------------------------------------------------------------------------------------------- fused validation
@pytest.mark.parametrize('model_type', ['SRModel', 'SwinIRModel', 'SRGANModel'])
def test_validation_runs_fused_and_matches_unfused(tmp_path, model_type):
    extra = {}
    if model_type == 'SRGANModel':
        extra = {'network_d': {'type': 'VGGStyleDiscriminator', 'num_in_ch': 3, 'num_feat': 8, 'input_size': 128},
                 'train': {'optim_d': {'type': 'Adam', 'lr': 1e-4}, 'net_d_iters': 1, 'net_d_init_iters': 0,
                           'gan_opt': {'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.005}}}
    model, opt = _model(tmp_path, model_type=model_type, **extra)
    randomize_(model.get_bare_model(model.net_g), seed=4)
    model.model_ema(0)
    loader = _loader(opt, 'val')
    nets = (model.net_g, model.net_g_ema)
    before = {k: v.clone() for k, v in model.net_g_ema.state_dict().items()}
    seen = []  # whether the network test() runs has BatchNorm: no while validating, yes when called directly
    real_test = model.test
    model.test = lambda: seen.append(ema.has_batchnorm(model.net_g_ema)) or real_test()
    model.validation(loader, 1, None, False)
    fused = dict(model.metric_results)
    type(model).nondist_validation(model, loader, 1, None, False)  # called directly: the unfused network
    unfused = dict(model.metric_results)
    del model.test
    assert seen[:len(loader)] == [False] * len(loader) and all(seen[len(loader):])
    assert abs(fused['psnr'] - unfused['psnr']) < 0.01, (fused, unfused)
    assert (model.net_g, model.net_g_ema) == nets and model.net_g.training
    assert all(torch.equal(before[k], v) for k, v in model.net_g_ema.state_dict().items())


def test_swinir_model_without_window_size_needs_a_lipt():
    opt = {'model_type': 'SwinIRModel', 'scale': 2, 'network_g': {'type': 'SwinIR', 'upscale': 2}}
    with pytest.raises(OptionError, match=r'^network_g.window_size: SwinIRModel pads'):
        check_lipt_options(opt)
    check_lipt_options({**opt, 'network_g': {'type': 'LIPT_tiny', 'upscale': 2}})


@pytest.mark.parametrize('decay', [2.0, -0.1, 1, 'high'])
def test_ema_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(OptionError, match=r'^train.ema_decay: must be a number in \[0, 1\)'):
        check_lipt_options({'train': {'ema_decay': decay}})


@pytest.mark.parametrize('lr', ['5e-3x', -1.0, 0, True])
def test_learning_rate_must_be_positive(lr):
    with pytest.raises(OptionError, match=r'^train.optim_d.lr: must be a number > 0'):
        check_lipt_options({'train': {'optim_g': {'lr': 1e-4}, 'optim_d': {'lr': lr}}})


def test_missing_realesrgan_meta_info_is_one_line(tmp_path):
    from lipt_arch.validation import check_options

    opt = {'datasets': {'train': {'type': 'RealESRGANDataset', 'dataroot_gt': str(tmp_path),
                                  'meta_info': str(tmp_path / 'meta_info.txt')}}}
    with pytest.raises(OptionError, match=r'^datasets.train.meta_info: not found'):
        check_options(opt)


def test_queue_size_must_hold_whole_batches():
    opt = {'model_type': 'RealESRNetModel', 'queue_size': 180, 'datasets': {'train': {'batch_size_per_gpu': 7}}}
    with pytest.raises(OptionError, match=r'^queue_size: 180 is not a multiple of datasets.train.batch_size_per_gpu'):
        check_lipt_options(opt)


def test_perceptual_loss_without_vgg_weights_is_one_line(tmp_path, monkeypatch):
    from basicsr.archs.vgg_arch import VGGFeatureExtractor

    def offline(*args, **kwargs):
        raise urllib.error.URLError('Name or service not known')

    monkeypatch.chdir(tmp_path)  # no experiments/pretrained_models/vgg19-dcbb9e9d.pth here
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr('torchvision.models._api.load_state_dict_from_url', offline)
    with pytest.raises(OptionError, match=r'^train.perceptual_opt: .*could not be downloaded.*vgg19-dcbb9e9d.pth'):
        VGGFeatureExtractor(['conv5_4'], 'vgg19')


# ------------------------------------------------------------------- BasicSR's own option files, end to end
ITERS = 2


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    shared_path('basicsr_options')
    shared_path('datasets', 'train', 'BSD200')
    return drop_in.prepare_data(tmp_path_factory.mktemp('drop_in_data'))


def _run(opt: dict, root, command: str = 'train') -> subprocess.CompletedProcess:
    option_file = root / f'{opt["name"]}.yml'
    option_file.write_text(yaml.safe_dump(opt, sort_keys=False))
    return subprocess.run([sys.executable, '-m', 'lipt_arch.basicsr_support.command', command, '-opt',
                           str(option_file)],
                          cwd=root, env={**drop_in.ENV, 'OMP_NUM_THREADS': '2'}, capture_output=True, text=True,
                          timeout=900)


def _check(root, name: str, image) -> None:
    found = drop_in.check_experiment(root / 'experiments' / name, ITERS, image)
    assert found['ema_stats_moved'] == found['batchnorm_layers'] == 296  # stock BasicSR: 0 (initial statistics)
    assert found['ema_vs_params_psnr'] > 25, found  # ema_decay 0.05: the EMA network is nearly the trained one
    assert found['fused_validation'] and found['deploy'], found
    assert found['lipt_infer'], found['lipt_infer_error']
    assert found['lipt_convert'] and found['spandrel_scale'] == 4, found


@pytest.mark.slow
@pytest.mark.parametrize('model_type', ['SRModel', 'SwinIRModel', 'SRGANModel', 'RealESRGANModel'])
def test_stock_option_file_trains_lipt(model_type, data, tmp_path):
    opt = drop_in.with_validation(drop_in.adapt(drop_in.stock_options(model_type), data, ITERS, model_type), data)
    opt = drop_in.cpu_sized(opt)  # Real-ESRGAN: smaller batches and patches than its 4-GPU recipe
    opt['train']['ema_decay'] = 0.05
    result = _run(opt, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _check(tmp_path, model_type, data['Set5_lq'] / 'baby.png')
    if model_type == 'SRModel':  # basicsr test of the EMA weights, model type as trained: the fused network
        test = {'name': 'test_srmodel', 'model_type': 'SRModel', 'scale': 4, 'num_gpu': 0,
                'datasets': {'test_1': opt['datasets']['val']}, 'network_g': opt['network_g'],
                'path': {'pretrain_network_g': str(tmp_path / 'experiments' / model_type / 'models' / 'net_g_2.pth'),
                         'param_key_g': 'params_ema', 'strict_load_g': True},
                'val': {'save_img': False, 'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4}}}}
        result = _run(test, tmp_path, 'test')
        assert result.returncode == 0, result.stderr[-3000:]
        log = '\n'.join(p.read_text() for p in (tmp_path / 'results' / 'test_srmodel').glob('test_*.log'))
        assert 'Validation runs the fused LIPT (net_g;' in log


@pytest.mark.slow
def test_realesrnet_cpu_option_trains_and_saves_triplets(data, tmp_path):
    opt = yaml.safe_load((REPO / 'options' / 'train_LIPT_tiny_x4_realesrnet_cpu.yml').read_text())
    train, val = opt['datasets']['train'], opt['datasets']['val']
    train['dataroot_gt'] = str(shared_path('datasets', 'train'))
    train['meta_info'] = str(REPO / train['meta_info'])
    val['dataroot_gt'] = str(data['Set5'])
    opt = merge(opt, {'train': {'total_iter': ITERS, 'ema_decay': 0.05, 'scheduler': {'milestones': [ITERS]}},
                      'val': {'val_freq': ITERS}, 'logger': {'save_checkpoint_freq': ITERS}})
    result = _run(opt, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _check(tmp_path, opt['name'], data['Set5_lq'] / 'baby.png')
    panels = sorted((tmp_path / 'experiments' / opt['name'] / 'visualization' / 'Set5').glob('*_LQ_SR_GT.png'))
    assert {p.name.split('_')[0] for p in panels} == {'baby', 'bird', 'butterfly', 'head', 'woman'}


def test_srmodel_validation_is_basicsr_own_without_lipt_parts(tmp_path):
    """A fused LIPT (nothing left to fuse) is validated in place, as any other network."""
    model, opt = _model(tmp_path, model_type='SRModel', network_g={'type': 'LIPT', 'upscale': 2, 'num_feat': 8,
                                                                   'num_block': 1, 'window_size': 8, 'deploy': True})
    ema_net = model.net_g_ema
    seen = []
    real_test = SRModel.test
    model.test = lambda: seen.append(model.net_g_ema is ema_net) or real_test(model)
    model.validation(_loader(opt, 'val'), 1, None, False)
    assert seen and all(seen)


@pytest.mark.filterwarnings('ignore::UserWarning')  # bf16 on a CPU without native bf16
def test_val_dtype_applies_to_a_network_fused_already(tmp_path):
    from lipt_arch.deploy.optimized import OptimizedLIPT

    net = {'type': 'LIPT', 'upscale': 2, 'num_feat': 8, 'num_block': 1, 'window_size': 8, 'deploy': True}
    model, opt = _model(tmp_path, network_g=net, val={'dtype': 'bf16'})
    forms = []
    real_test = model.test
    model.test = lambda: forms.append(type(model.net_g_ema)) or real_test()
    model.validation(_loader(opt, 'val'), 1, None, False)
    assert forms and set(forms) == {OptimizedLIPT}
