"""spandrel integration: every LIPT checkpoint kind loads through spandrel.ModelLoader, equal to lipt_arch's own
loaders; detection claims LIPT state dicts only; fp16 / bf16 stay close to fp32."""
from __future__ import annotations

import collections
import math
import pickle
import warnings

import pytest
import torch

from lipt_arch import LIPT, load_model, load_official, preset_config, reparameterize, save_model
from lipt_arch.checkpoints import load_any

from .conftest import IN_CI, randomize_, shared_path

try:
    import spandrel  # noqa: F401
except ImportError:  # comes with the [test] extra
    if IN_CI:
        raise
    pytest.skip('spandrel not installed (it comes with the [test] extra)', allow_module_level=True)

from spandrel import MAIN_REGISTRY, ModelLoader, ModelTiling, UnsupportedModelError  # noqa: E402

from lipt_arch.integrations import spandrel as lipt_spandrel  # noqa: E402

lipt_spandrel.install()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape and float((a - b).abs().max()) <= tol


@torch.no_grad()
def _same_output(descriptor, reference: torch.nn.Module, channels: int = 3) -> None:
    x = torch.rand(1, channels, 19, 27, generator=torch.Generator().manual_seed(1))
    _close(descriptor.model(x), reference.eval()(x))
    _close(descriptor(x), reference(x).clamp(0, 1))  # spandrel's call: no padding needed, output clamped


@pytest.fixture(scope='module')
def tiny() -> LIPT:
    return randomize_(LIPT(**preset_config('tiny', 2)))


def test_fused_pth_and_safetensors_equal_load_model(tiny, tmp_path):
    for name in ('fused.pth', 'fused.safetensors'):
        save_model(tiny, tmp_path / name)
        model = ModelLoader().load_from_file(tmp_path / name)
        assert model.architecture.id == 'LIPT' and model.purpose == 'SR' and model.scale == 2
        assert (model.input_channels, model.output_channels) == (3, 3)
        assert model.size_requirements.none and model.tiling == ModelTiling.SUPPORTED
        assert model.supports_half and model.supports_bfloat16 and 'tiny' in model.tags
        assert model.model.config['deploy']
        _same_output(model, load_model(tmp_path / name))


def test_config_not_in_the_tensors_is_kept(tmp_path):
    """img_range, window, rgb_mean and img_residual leave no trace in the weights: the file's config must win."""
    net = randomize_(LIPT(upscale=1, num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, window_size=16,
                          img_range=255.0, img_residual=True), seed=3)
    for name in ('odd.pth', 'odd.safetensors'):
        save_model(net, tmp_path / name)
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # nothing assumed
            model = ModelLoader().load_from_file(tmp_path / name)
        assert model.purpose == 'Restoration' and model.scale == 1 and model.input_channels == 1
        assert model.model.config == load_model(tmp_path / name).config
        _same_output(model, load_model(tmp_path / name), channels=1)
    # the same dict handed over in memory (as ComfyUI does after its own torch.load) keeps it too
    raw = torch.load(tmp_path / 'odd.pth', weights_only=True)
    assert ModelLoader().load_from_state_dict(raw).model.config['img_range'] == 255.0
    # the bare tensors cannot know: the defaults are taken, and the warning says which
    with pytest.warns(UserWarning, match='window_size=8, img_residual=False assumed'):
        bare = ModelLoader().load_from_state_dict(raw['params'])
    assert bare.model.config['window_size'] == 8 and not bare.model.config['img_residual']


def test_basicsr_training_checkpoint_is_fused_on_load(tiny, tmp_path):
    ema = randomize_(LIPT(**preset_config('tiny', 2)), seed=5)
    path = tmp_path / 'net_g_400.pth'
    torch.save({'params': tiny.state_dict(), 'params_ema': ema.state_dict()}, path)
    with pytest.warns(UserWarning, match='window_size=8 assumed'):
        model = ModelLoader().load_from_file(path)
    assert model.model.config['deploy'] and model.scale == 2
    _same_output(model, reparameterize(ema))  # params_ema preferred, as BasicSR and lipt_arch do
    _same_output(model, load_any(path).model)


def test_authors_training_checkpoint_with_optimizer_state(tmp_path):
    """DataParallel prefix, model_state_dict wrapper, and a scheduler's Counter that spandrel's unpickler refuses."""
    state = torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2, 4])
    path = tmp_path / 'model_x2_100.pt'
    torch.save({'model_state_dict': {f'module.{k}': v for k, v in state.items()}, 'epoch': 100,
                'optimizer_state_dict': optimizer.state_dict(), 'scheduler_state_dict': scheduler.state_dict()}, path)
    assert isinstance(scheduler.state_dict()['milestones'], collections.Counter)
    with pytest.warns(UserWarning, match='window_size=8 assumed'):
        model = ModelLoader().load_from_file(path)
    assert model.scale == 2 and model.model.config['img_range'] == 255.0
    _same_output(model, reparameterize(load_official(state, upscale=2)))


def test_authors_converted_checkpoint(tmp_path):
    path = tmp_path / 'converted.pth'
    torch.save(torch.load(shared_path('golden', 'A_tiny_x2', 'deploy_state_dict.pt'), weights_only=True), path)
    with pytest.warns(UserWarning, match='window_size=8 assumed'):
        model = ModelLoader().load_from_file(path)
    assert model.model.config['window_size'] == 8 and model.model.config['img_range'] == 255.0
    _same_output(model, load_official(path, upscale=2, window_size=8))


def test_other_files_spandrel_refuses_stay_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'conv.weight': torch.zeros(1), 'sched': collections.Counter({2: 1})}, path)
    with pytest.raises(pickle.UnpicklingError):
        ModelLoader().load_from_file(path)


class _Payload:
    def __reduce__(self):
        return (print, ('code ran',))


def test_pickled_code_is_never_run(tiny, tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'params': tiny.state_dict(), 'x': _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        ModelLoader().load_from_file(path)
    assert 'code ran' not in capsys.readouterr().out


def test_install_is_idempotent():
    count = len(MAIN_REGISTRY)
    loader_method = ModelLoader.load_state_dict_from_file
    lipt_spandrel.install()
    assert len(MAIN_REGISTRY) == count and ModelLoader.load_state_dict_from_file is loader_method


def _lipt_state_dicts() -> dict[str, dict]:
    return {'ours, training': LIPT(**preset_config('tiny', 3)).state_dict(),
            'ours, fused': reparameterize(LIPT(num_feat=8, num_block=2)).state_dict(),
            'authors, training': torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True),
            'authors, converted': torch.load(shared_path('golden', 'A_tiny_x2', 'deploy_state_dict.pt'),
                                             weights_only=True)}


def test_only_lipt_claims_lipt_state_dicts():
    for name, state in _lipt_state_dicts().items():
        claims = [a.architecture.id for a in MAIN_REGISTRY.architectures('detection') if a.detect(state)]
        assert claims == ['LIPT'], name


# spandrel's own network classes, small settings
PEERS = {'Compact': {}, 'DITN': {}, 'DnCNN': {}, 'ESRGAN': {'in_nc': 3, 'out_nc': 3, 'num_blocks': 2}, 'HAT': {},
         'OmniSR': {}, 'PLKSR': {}, 'RCAN': {'n_resgroups': 2, 'n_resblocks': 2}, 'SAFMN': {'dim': 16},
         'SPAN': {'num_in_ch': 3, 'num_out_ch': 3}, 'SwinIR': {'img_size': 32, 'window_size': 8}}


def _peer_network(arch_id: str) -> torch.nn.Module:
    import importlib

    return getattr(importlib.import_module(f'spandrel.architectures.{arch_id}'), arch_id)(**PEERS[arch_id])


def test_other_architectures_are_not_claimed():
    for arch_id in PEERS:
        state = _peer_network(arch_id).state_dict()
        assert not lipt_spandrel.is_lipt_state_dict(state), arch_id
        assert MAIN_REGISTRY.load(state).architecture.id == arch_id


def test_not_lipt_after_all_is_one_clear_error():
    state = LIPT(num_feat=8, num_block=2).state_dict()
    state['tail.weight'] = torch.zeros(7, 8, 3, 3)  # a tail that fits no scale
    with pytest.raises(ValueError, match='fits no scale'):
        ModelLoader().load_from_state_dict(state)
    with pytest.raises(UnsupportedModelError):
        ModelLoader().load_from_state_dict({'conv.weight': torch.zeros(1)})


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.float().clamp(0, 1) - b.clamp(0, 1)).double() ** 2).mean()))


@pytest.mark.parametrize('case', ['random LIPT-tiny', "authors' calibrated tiny (img_range 255)"])
@torch.no_grad()
def test_half_and_bfloat16_stay_close_to_fp32(case, tmp_path):
    """supports_half / supports_bfloat16: the unscaled softmax(q q^T) must not overflow fp16 (logits are far below
    65504 here) and whole-model casts must stay close to fp32 (CPU; docs/spandrel.md has the bigger measurement)."""
    if case.startswith('random'):
        save_model(randomize_(LIPT(**preset_config('tiny', 2))), tmp_path / 'm.pth')
        path = tmp_path / 'm.pth'
        image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        image = torch.nn.functional.interpolate(image, size=(24, 24), mode='bicubic').clamp(0, 1)  # smooth, photo-like
    else:
        path = tmp_path / 'authors.pth'
        torch.save(torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True), path)
        image = torch.load(shared_path('golden', 'A_tiny_x2', 'input.pt'), weights_only=True)[:1, :, :24, :24] / 255
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = ModelLoader().load_from_file(path)
    reference = model(image)
    for dtype, floor in ((torch.float16, 55.0), (torch.bfloat16, 40.0)):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            other = ModelLoader().load_from_file(path).to(dtype)
        out = other(image.to(dtype))
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert _psnr(out, reference) > floor, dtype
