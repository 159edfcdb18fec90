"""LIPTModel: fused validation equals the unfused path, BN-aware EMA, deploy checkpoints, bicubic comparison."""
from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY

import lipt_arch
from lipt_arch.basicsr_support.ema import ema_buffers_
from lipt_arch.checkpoints import CheckpointError
from lipt_arch.models.lipt_model import LIPTModel, format_metrics

from .basicsr_helpers import merge, train_options
from .conftest import randomize_


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on the shared 2-core machine small ops on 2 threads are several times slower."""
    torch.set_num_threads(1)
    yield


def _prepare(opt: dict, root, is_train: bool = True) -> dict:
    """What basicsr's parse_options adds to an option dict (no argv, no folders beyond ``root``)."""
    opt = copy.deepcopy(opt)
    opt.update(is_train=is_train, dist=False, rank=0, world_size=1, auto_resume=False, root_path=str(root))
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = phase.split('_')[0]
        dataset['scale'] = opt['scale']
    exp = root / 'experiments' / opt['name']
    opt['path'].update(experiments_root=str(exp), models=str(exp / 'models'), log=str(exp),
                       training_states=str(exp / 'training_states'), visualization=str(exp / 'visualization'))
    for key in ('models', 'training_states', 'visualization'):
        (exp / key).mkdir(parents=True, exist_ok=True)
    return opt


def _loader(opt: dict, phase: str):
    dataset_opt = opt['datasets'][phase]
    return build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return tmp_path_factory.mktemp('lipt_model')


@pytest.fixture(scope='module')
def trained(root):
    """A LIPTModel after two training steps (EMA decay 0.5), with its options and val loader (shared: cheap)."""
    torch.set_num_threads(1)
    opt = _prepare(train_options(root, val={'compare_bicubic': True}), root)
    model = build_model(opt)
    randomize_(model.get_bare_model(model.net_g), seed=1)
    model.model_ema(0)
    batch = next(iter(_loader(opt, 'train')))
    for it in (1, 2):
        model.feed_data(batch)
        model.optimize_parameters(it)
    return model, opt, _loader(opt, 'val')


def test_lipt_model_registered():
    assert MODEL_REGISTRY.get('LIPTModel') is LIPTModel


def test_fused_validation_matches_unfused_and_leaves_training_state(trained):
    model, _, val_loader = trained
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    ema_before = {k: v.clone() for k, v in model.net_g_ema.state_dict().items()}
    net_g, net_g_ema = model.net_g, model.net_g_ema

    model.validation(val_loader, 2, None, save_img=False)
    fused = dict(model.metric_results)
    SRModel.nondist_validation(model, val_loader, 2, None, False)  # no fused copy prepared: BasicSR's own test()
    unfused = dict(model.metric_results)

    assert abs(fused['psnr'] - unfused['psnr']) < 0.01, (fused, unfused)
    assert abs(fused['ssim'] - unfused['ssim']) < 1e-4, (fused, unfused)
    assert model.net_g.training and not model.net_g_ema.training
    assert all(torch.equal(before[k], v) for k, v in model.net_g.state_dict().items())
    assert all(torch.equal(ema_before[k], v) for k, v in model.net_g_ema.state_dict().items())
    assert model.net_g is net_g and model.net_g_ema is net_g_ema  # the fused copy was swapped out again


def test_validation_uses_ema_network_fused(trained, monkeypatch):
    model, _, val_loader = trained
    seen = []
    monkeypatch.setattr('lipt_arch.basicsr_support.fused_validation.reparameterize',
                        lambda net: seen.append(net) or net.eval())
    model.validation(val_loader, 2, None)
    assert seen == [model.net_g_ema]


def test_validation_in_bf16_goes_through_optimize(trained, monkeypatch):
    """val.dtype: validation runs on lipt_arch.optimize's form of the fused network, close to fp32."""
    model, _, val_loader = trained
    model.validation(val_loader, 2, None)
    fp32 = dict(model.metric_results)
    forms = []
    real = lipt_arch.models.lipt_model.optimize
    monkeypatch.setattr('lipt_arch.models.lipt_model.optimize',
                        lambda *a, **k: forms.append(real(*a, **k)) or forms[-1])
    monkeypatch.setitem(model.opt['val'], 'dtype', 'bf16')
    with pytest.warns(UserWarning) if not torch.ops.mkldnn._is_mkldnn_bf16_supported() else nullcontext():
        model.validation(val_loader, 2, None)
    assert [form.precision for form in forms] == ['bf16']
    assert abs(model.metric_results['psnr'] - fp32['psnr']) < 0.1, (model.metric_results, fp32)
    assert isinstance(model.net_g_ema, lipt_arch.LIPT)


def test_ema_averages_batchnorm_statistics(trained):
    model, _, _ = trained
    net, ema = model.get_bare_model(model.net_g), model.net_g_ema
    bn = 'body.0.layers.0.hrm_a.conv0.bn3x3'
    old = {k: v.clone() for k, v in ema.state_dict().items()}
    ema_buffers_(net, ema, decay=0.25)
    new, src = ema.state_dict(), net.state_dict()
    for key in (f'{bn}.running_mean', f'{bn}.running_var'):
        torch.testing.assert_close(new[key], 0.25 * old[key] + 0.75 * src[key])
    assert torch.equal(new[f'{bn}.num_batches_tracked'], src[f'{bn}.num_batches_tracked'])
    # the trained model's EMA statistics moved with training (stock BasicSR leaves them at their initial values)
    assert not torch.equal(old[f'{bn}.running_var'], torch.ones_like(old[f'{bn}.running_var']))


def test_save_writes_loadable_deploy_checkpoints(trained, root):
    model, opt, _ = trained
    model.save(epoch=0, current_iter=2)
    models = root / 'experiments' / opt['name'] / 'models'
    assert {'net_g_2.pth', 'net_g_deploy_2.pth', 'net_g_deploy_latest.pth'} <= {p.name for p in models.iterdir()}
    assert (root / 'experiments' / opt['name'] / 'training_states' / '2.state').is_file()
    raw = torch.load(models / 'net_g_deploy_2.pth', weights_only=True)
    assert set(raw) == {'params', 'config'} and raw['config']['deploy'] is True
    loaded = lipt_arch.load_model(models / 'net_g_deploy_latest.pth')
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = lipt_arch.reparameterize(model.net_g_ema)(x)
        torch.testing.assert_close(loaded(x), expected, atol=1e-5, rtol=1e-4)
    assert 'params_ema' in torch.load(models / 'net_g_2.pth', weights_only=True)


def test_compare_bicubic_final_summary_and_side_by_side(trained, root, capsys):
    model, opt, val_loader = trained
    model.save(epoch=-1, current_iter=-1)  # what train_pipeline does right before its final validation
    try:
        model.validation(val_loader, 2, None)
    finally:
        model._final = False
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith('Fused LIPT:')]
    assert len(line) == 1 and 'bicubic: PSNR' in line[0] and 'dB / SSIM 0.' in line[0], line
    pngs = sorted((root / 'experiments' / opt['name'] / 'visualization').glob('*_bicubic_LIPT_GT.png'))
    assert len(pngs) == len(val_loader.dataset)
    import cv2
    img = cv2.imread(str(pngs[0]))
    assert img.shape[0] == 32 and img.shape[1] == 3 * 32 + 2 * 4  # bicubic | LIPT | GT, 4 px gaps


def test_final_validation_is_logged_at_total_iter(trained):
    """Stock train_pipeline hands its final validation total_iter + the epochs left; it is the total_iter network."""
    model, opt, val_loader = trained
    total = opt['train']['total_iter']
    saved = model.__dict__.pop('best_metric_results', None)
    try:
        model.validation(val_loader, total + 2, None)
        assert {result['iter'] for result in model.best_metric_results[val_loader.dataset.opt['name']].values()} == {
            total}
    finally:
        del model.best_metric_results
        if saved is not None:
            model.best_metric_results = saved


def test_format_metrics():
    assert format_metrics({'psnr': 30.1234, 'ssim': 0.91234}) == 'PSNR 30.12 dB / SSIM 0.9123'


@pytest.mark.parametrize('change', [{'upscale': 3}, {'num_feat': 16}])
def test_pretrain_that_does_not_fit_names_file(trained, root, change):
    model, opt, _ = trained
    model.save(epoch=0, current_iter=2)
    path = root / 'experiments' / opt['name'] / 'models' / 'net_g_2.pth'
    bad = merge(opt, {'network_g': change, 'path': {'pretrain_network_g': str(path)}})
    with pytest.raises(CheckpointError, match=r'pretrain_network_g: .*net_g_2\.pth: weights do not fit') as err:
        build_model(bad)
    assert '\n' not in str(err.value)


def test_other_scale_starts_from_the_body_without_strict(trained, root, caplog):
    """strict_load_g false (the zoo's x4 from x2): every tensor but the tail's is loaded, and the log names the rest."""
    model, opt, _ = trained
    model.save(epoch=0, current_iter=2)
    path = root / 'experiments' / opt['name'] / 'models' / 'net_g_2.pth'
    x4 = merge(opt, {'network_g': {'upscale': 4}, 'scale': 4,
                     'path': {'pretrain_network_g': str(path), 'strict_load_g': False, 'param_key_g': 'params_ema'}})
    with caplog.at_level('INFO', logger='basicsr'):
        started = build_model(x4)
    source = model.get_bare_model(model.net_g_ema).state_dict()
    own = started.get_bare_model(started.net_g).state_dict()
    differ = sorted(k for k in own if not torch.equal(own[k], source[k]) and own[k].shape == source[k].shape)
    assert differ == [], differ
    assert own['tail.weight'].shape[0] == 3 * 16 and source['tail.weight'].shape[0] == 3 * 4
    assert f'{len(own) - 2} of {len(own)} tensors loaded; left at their initial values: tail.bias, tail.weight' \
        in caplog.text


def test_deploy_checkpoint_into_training_form_gets_a_hint(trained, root):
    model, opt, _ = trained
    model.save(epoch=0, current_iter=2)
    path = root / 'experiments' / opt['name'] / 'models' / 'net_g_deploy_2.pth'
    with pytest.raises(CheckpointError, match='a fused checkpoint: set network_g deploy: True'):
        build_model(merge(opt, {'path': {'pretrain_network_g': str(path)}}))
    fused = build_model(merge(opt, {'network_g': {'deploy': True}, 'path': {'pretrain_network_g': str(path)}}))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fused.net_g.eval()(x), lipt_arch.reparameterize(model.net_g_ema)(x))


def test_side_by_side_takes_grey_images():
    import numpy as np

    from lipt_arch.visualization import SEPARATOR_PX, side_by_side

    grey = [np.zeros((4, 5), np.uint8), np.full((6, 5), 9, np.uint8)]
    out = side_by_side(grey)
    assert out.shape == (6, 10 + SEPARATOR_PX, 1) and out[5, -1, 0] == 9 and out[5, 0, 0] == 255


def test_compile_rep_convs_option_compiles_net_g(root):
    """``train.compile_rep_convs: true`` compiles every six-branch conv of net_g (lazily; no step is run here)."""
    opt = _prepare(train_options(root, name='compiled', train={'compile_rep_convs': True}), root)
    model = build_model(opt)
    blocks = [m for m in model.get_bare_model(model.net_g).modules() if isinstance(m, lipt_arch.archs.RepConv3x3)]
    assert blocks and all(m._compiled_call_impl is not None for m in blocks)


def test_compile_rep_convs_without_compiler_names_the_option(root, monkeypatch):
    monkeypatch.setattr('shutil.which', lambda name: None)
    opt = _prepare(train_options(root, name='nocxx', train={'compile_rep_convs': True}), root)
    with pytest.raises(ValueError, match=r'^train.compile_rep_convs: compiling the six-branch convs on a CPU needs'):
        build_model(opt)
