"""LIPTModel's train.amp / channels_last / compile options: option checks, AMP training on CPU, the fp16 gradient
scaler (skips, saved and restored state), float32 NVSM attention under autocast, a CUDA fp16 run."""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from basicsr.models import build_model

import lipt_arch
from lipt_arch.archs import NVSMAttention, reparameterize
from lipt_arch.archs.nvsm_attention import qq_softmax
from lipt_arch.checkpoints import read_checkpoint
from lipt_arch.models import training_speed
from lipt_arch.models.lipt_model import NonFiniteLossError, OptionError
from lipt_arch.models.training_speed import SpeedOptions, speed_options
from lipt_arch.validation import check_lipt_options

from .basicsr_helpers import train_options
from .test_training_model import _loader, _prepare


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


# options --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('train, expected', [
    ({}, SpeedOptions()),
    ({'amp': False, 'channels_last': False, 'compile': False}, SpeedOptions()),
    ({'amp': 'bf16', 'channels_last': True}, SpeedOptions('bf16', True)),
    ({'amp': 'fp16', 'compile': 'network', 'compile_mode': 'max-autotune'},
     SpeedOptions('fp16', False, 'network', 'max-autotune')),
    ({'compile_rep_convs': True}, SpeedOptions(compile='rep_convs')),  # the older spelling
    ({'compile_rep_convs': True, 'compile': 'rep_convs'}, SpeedOptions(compile='rep_convs')),
    ({'compile_rep_convs': False, 'compile': 'network'}, SpeedOptions(compile='network')),
])
def test_speed_options_read(train, expected):
    assert speed_options(train) == expected


@pytest.mark.parametrize('train, message', [
    ({'amp': 'fp8'}, "train.amp: must be bf16, fp16 or false, got 'fp8'"),
    ({'amp': True}, 'train.amp: must be bf16, fp16 or false, got True'),
    ({'compile': True}, 'train.compile: must be false, rep_convs or network, got True'),  # YAML `compile: yes`
    ({'compile': 'graph'}, "train.compile: must be false, rep_convs or network, got 'graph'"),
    ({'channels_last': 1}, 'train.channels_last: must be true or false, got 1'),
    ({'compile': 'network', 'compile_mode': 'fast'}, "train.compile_mode: must be one of default, reduce-overhead"),
    ({'compile_mode': 'default'}, 'train.compile_mode: default is set but train.compile is off'),
    ({'compile_rep_convs': True, 'compile': 'network'}, 'train.compile_rep_convs: true disagrees with train.compile: '
                                                        'network'),
    ({'compile_rep_convs': True, 'compile': False}, 'train.compile_rep_convs: true disagrees with train.compile: '
                                                    'false'),
    ({'compile_rep_convs': False, 'compile': 'rep_convs'}, 'train.compile_rep_convs: false disagrees'),
])
def test_options_checker_rejects_bad_values_with_one_line(tmp_path, train, message):
    opt = train_options(tmp_path, train=train)
    with pytest.raises(OptionError) as err:
        check_lipt_options(opt)
    assert str(err.value).startswith(message) and '\n' not in str(err.value)


def test_speed_options_need_lipt_model(tmp_path):
    opt = train_options(tmp_path, model_type='SRModel', train={'amp': 'bf16'})
    with pytest.raises(OptionError, match=r'^train\.amp: needs model_type: LIPTModel \(SRModel would ignore it\)$'):
        check_lipt_options(opt)
    check_lipt_options(train_options(tmp_path, model_type='SRModel', train={'amp': False}))  # off: fine anywhere


# training on CPU ------------------------------------------------------------------------------------------------
def _model(root, **train):
    opt = _prepare(train_options(root, train=train), root)
    model = build_model(opt)
    return model, opt, next(iter(_loader(opt, 'train')))


def _steps(model, batch, iters) -> list[float]:
    losses = []
    for it in iters:
        model.feed_data(batch)
        model.optimize_parameters(it)
        losses.append(float(model.log_dict['l_pix']))
    return losses


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_amp_channels_last_training_on_cpu(tmp_path, amp):
    """A few AMP steps in channels-last: finite losses, weights change, everything stored stays float32 (fp16 on a
    CPU is allowed: torch's CPU autocast and scaler), checkpoints load into a plain LIPT and the fused deploy file
    equals the fused EMA network."""
    model, opt, batch = _model(tmp_path, amp=amp, channels_last=True)
    net = model.get_bare_model(model.net_g)
    assert net.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.grad_scaler.is_enabled() == (amp == 'fp16')
    before = copy.deepcopy(net.state_dict())
    losses = _steps(model, batch, (1, 2, 3))
    assert all(torch.isfinite(torch.tensor(losses)))
    changed = [k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any('weight' in k for k in changed) and any('running_mean' in k for k in changed)
    stored = list(net.state_dict().values()) + [s for group in model.optimizer_g.state.values() for s in group.values()]
    assert {t.dtype for t in stored if t.is_floating_point()} == {torch.float32}
    model.save(0, 3)
    plain = lipt_arch.LIPT(**net.config)
    plain.load_state_dict(read_checkpoint(f"{opt['path']['models']}/net_g_3.pth")['params'])
    deploy = lipt_arch.load_model(f"{opt['path']['models']}/net_g_deploy_3.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(deploy(x), reparameterize(model.net_g_ema)(x), atol=1e-6)


def test_fp16_overflow_is_a_logged_skip_not_a_stop(tmp_path, caplog, monkeypatch):
    """An inf gradient under fp16 is the scaler's: the step is skipped (weights untouched), the scale halves, a
    warning names the iteration; only MAX_CONSECUTIVE_SKIPS in a row stop the run."""
    model, _, batch = _model(tmp_path, amp='fp16')
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 120)  # the scaled fp16 gradients overflow
    weights = copy.deepcopy(model.get_bare_model(model.net_g)).state_dict()
    with caplog.at_level(logging.WARNING, logger='basicsr'):
        _steps(model, batch, (1,))
    after = model.get_bare_model(model.net_g).state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items() if 'running' not in k and 'num_batches' not in k)
    assert model.grad_scaler.get_scale() == 2.0 ** 119
    assert 'iteration 1: fp16 gradients overflowed at loss scale 1.32923e+36; optimizer step skipped' in caplog.text
    monkeypatch.setattr(training_speed, 'MAX_CONSECUTIVE_SKIPS', 2)
    with pytest.raises(NonFiniteLossError, match='iteration 2: non-finite fp16 gradients in 2 steps in a row'):
        _steps(model, batch, (2,))


def test_grad_scaler_state_saved_and_restored(tmp_path):
    """The training state holds the fp16 scaler (scale, growth tracker); resume_training restores it exactly."""
    model, opt, batch = _model(tmp_path, amp='fp16')
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1024.0, growth_interval=2)
    _steps(model, batch, (1, 2, 3))  # 3 finite steps: the scale doubles once, the tracker stands at 1
    saved = model.grad_scaler.state_dict()
    assert (saved['scale'], saved['_growth_tracker']) == (2048.0, 1)
    model.save_training_state(0, 3)
    state = read_checkpoint(f"{opt['path']['training_states']}/3.state")
    assert state['grad_scaler'] == saved
    resumed, _, _ = _model(tmp_path / 'resumed', amp='fp16')
    resumed.resume_training(state)
    assert resumed.grad_scaler.state_dict() == saved
    plain, _, _ = _model(tmp_path / 'plain')
    plain.save_training_state(0, 3)  # amp off: no scaler in the state, as before
    assert 'grad_scaler' not in read_checkpoint(f"{plain.opt['path']['training_states']}/3.state")


@pytest.mark.timeout(900)
def test_compile_network_trains_like_eager_and_keeps_plain_state(tmp_path, monkeypatch):
    """compile: network (with bf16 AMP): the same losses as eager up to bf16 rounding; net_g itself is not wrapped
    (state dict keys, EMA and validation unchanged). Dynamo + AOT autograd with eager kernels (``aot_eager``): the
    whole graph is captured (autocast and the float32 attention included) without the minutes Inductor's C++ build
    of the whole training graph takes on a 2-core CPU; Inductor itself is tested on the convs (test_compile.py)."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda model, mode=None: compile_(model, backend='aot_eager', fullgraph=True))
    eager, _, batch = _model(tmp_path / 'eager', amp='bf16')
    compiled, _, _ = _model(tmp_path / 'compiled', amp='bf16', compile='network')
    compiled.get_bare_model(compiled.net_g).load_state_dict(eager.get_bare_model(eager.net_g).state_dict())
    assert compiled.train_forward is not compiled.net_g
    assert set(compiled.net_g.state_dict()) == set(eager.net_g.state_dict())
    loss_e, loss_c = _steps(eager, batch, (1, 2)), _steps(compiled, batch, (1, 2))
    assert loss_c == pytest.approx(loss_e, rel=2e-2)


# attention precision --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('keep_maps', [True, False])
def test_nvsm_attention_under_fp16_autocast_does_not_overflow(keep_maps):
    """Unscaled q q^T logits beyond fp16's 65504: under autocast the attention still matches float32."""
    torch.manual_seed(0)
    attn = NVSMAttention(16, window_size=8, keep_maps=keep_maps).eval()
    with torch.no_grad():
        attn.proj_in.weight.mul_(300.0)  # |q|^2 ~ 1e5 and more
    x = torch.rand(1, 16, 16, 16)
    with torch.no_grad():
        reference, maps = attn(x)
        with torch.autocast('cpu', dtype=torch.float16):
            q = attn.proj_bn(attn.proj_in(x)).flatten(2).transpose(1, 2)[..., :8]  # half 0's queries
            assert (q.float() @ q.float().transpose(-2, -1)).abs().max() > 65504
            out, maps16 = attn(x)
    assert torch.isfinite(out).all()  # fp16 logits: inf - inf = NaN in the softmax
    # such logits make the maps near one-hot: fp16-rounded q flips a few near-ties, hence the mean error
    assert (out.float() - reference).abs().mean() < 0.01 * reference.abs().mean()
    if keep_maps:
        assert maps16[0].dtype == torch.float32 and torch.allclose(maps16[0].sum(-1), torch.ones(()))


def test_qq_softmax_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    q = torch.randn(4, 64, 14) * 3
    with torch.autocast('cpu', dtype=torch.bfloat16):
        maps = qq_softmax(q.bfloat16())
        plain = torch.softmax(q.bfloat16() @ q.bfloat16().transpose(-2, -1), dim=-1)
    reference = torch.softmax(q.bfloat16().float() @ q.bfloat16().float().transpose(-2, -1), dim=-1)
    assert maps.dtype == torch.float32 and plain.dtype == torch.bfloat16  # what autocast alone would give
    assert (maps - reference).abs().max() < 1e-5 < (plain.float() - reference).abs().max()


# CUDA -----------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_fp16_training_on_cuda(tmp_path):
    opt = _prepare(train_options(tmp_path, num_gpu=1, train={'amp': 'fp16', 'channels_last': True}), tmp_path)
    model = build_model(opt)
    batch = next(iter(_loader(opt, 'train')))
    assert model.device.type == 'cuda' and model.grad_scaler.is_enabled()
    before = copy.deepcopy(model.get_bare_model(model.net_g).state_dict())
    losses = _steps(model, batch, (1, 2, 3))
    assert all(torch.isfinite(torch.tensor(losses)))
    after = model.get_bare_model(model.net_g).state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.endswith('weight'))
    assert model.extra_training_state()['grad_scaler']['scale'] > 0
