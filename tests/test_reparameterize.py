"""Fusion is exact: random weights, random BatchNorm statistics, several presets, scales and odd sizes."""
import copy

import pytest
import torch
from torch import nn

from lipt_arch import LIPT, preset_config, reparameterize
from lipt_arch.archs.fusion import fuse_bn, merge_1x1_3x3
from lipt_arch.archs.hrm import RepConv3x3

from .conftest import randomize_


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('in_ch,out_ch', [(6, 6), (4, 10), (10, 4)])
def test_repconv_fuses_to_one_conv_exactly(in_ch, out_ch):
    block = randomize_(RepConv3x3(in_ch, out_ch), seed=1).double().eval()
    x = torch.randn(2, in_ch, 11, 7, dtype=torch.float64)
    with torch.no_grad():
        expected = block(x)
        conv = block.to_conv()
        assert conv.weight.dtype == torch.float64
        assert _rel_err(conv(x), expected) < 1e-12


def test_fuse_bn_and_merge_are_exact_functions():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5).double().eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    k = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    kf, bf = fuse_bn(k, bn)
    assert torch.allclose(nn.functional.conv2d(x, kf, bf, padding=1), bn(nn.functional.conv2d(x, k, padding=1)))
    k1, b1 = torch.randn(4, 3, 1, 1, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    k2, b2 = torch.randn(5, 4, 3, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    y1 = nn.functional.pad(nn.functional.conv2d(x, k1, b1), [1] * 4) + 0
    y1[:, :, 0, :] = b1.view(1, -1, 1)
    y1[:, :, -1, :] = b1.view(1, -1, 1)
    y1[:, :, :, 0] = b1.view(1, -1, 1)
    y1[:, :, :, -1] = b1.view(1, -1, 1)
    km, bm = merge_1x1_3x3(k1, b1, k2, b2)
    assert torch.allclose(nn.functional.conv2d(x, km, bm, padding=1), nn.functional.conv2d(y1, k2, b2))


CONFIGS = [
    dict(preset_config('tiny', 2), num_block=2),
    dict(preset_config('tiny', 3)),
    dict(preset_config('small', 4), num_feat=16, num_block=2),
    dict(preset_config('base', 2), num_feat=16, num_block=2),
    dict(upscale=1, num_feat=12, num_block=2, shared_depth=2, exp_ratio=2),
    dict(upscale=1, num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, img_residual=True),
    dict(upscale=2, num_feat=8, num_block=2, img_range=255.0),
]


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: f"x{c['upscale']}-c{c['num_feat']}-w{c.get('window_size')}")
@pytest.mark.parametrize('size', [(13, 21), (8, 8), (33, 17)])
def test_fused_equals_unfused_float32(config, size):
    model = randomize_(LIPT(**config), seed=sum(size)).eval()
    before = copy.deepcopy(model.state_dict())
    fused = reparameterize(model)
    x = torch.rand(2, config.get('num_in_ch', 3), *size)
    with torch.no_grad():
        expected, got = model(x), fused(x)
    assert got.shape == (2, config.get('num_out_ch', 3), size[0] * config['upscale'], size[1] * config['upscale'])
    assert _rel_err(got, expected) <= 1e-4
    assert not any(isinstance(m, (nn.BatchNorm2d, RepConv3x3)) for m in fused.modules())
    assert fused.config['deploy'] and not model.config['deploy'] and not fused.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_fusion_is_exact_in_float64():
    model = randomize_(LIPT(**dict(preset_config('tiny', 2), num_block=2)), seed=3).double().eval()
    x = torch.rand(1, 3, 19, 27, dtype=torch.float64)
    with torch.no_grad():
        assert _rel_err(reparameterize(model)(x), model(x)) < 1e-10


def test_deploy_constructor_loads_fused_weights():
    config = dict(preset_config('tiny', 4), num_block=2)
    fused = reparameterize(randomize_(LIPT(**config), seed=4))
    deploy = LIPT(**dict(config, deploy=True))
    deploy.load_state_dict(fused.state_dict(), strict=True)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(deploy.eval()(x), fused(x))


def test_reparameterize_works_on_a_wrapped_model():
    inner = randomize_(LIPT(upscale=2, num_feat=8, num_block=1), seed=5).eval()
    wrapper = nn.Sequential(inner)
    fused = reparameterize(wrapper)
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert _rel_err(fused(x), wrapper(x)) <= 1e-4
    assert isinstance(wrapper[0].body[0].layers[0].hrm_a.conv0, RepConv3x3)
