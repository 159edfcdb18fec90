"""lipt_arch.deploy.equalize: cross-layer equalization is exact in float and evens out the channel ranges it targets."""
from __future__ import annotations

import copy

import pytest
import torch

from lipt_arch import LIPT, reparameterize
from lipt_arch.archs import HRM, NVSMAttention
from lipt_arch.deploy.equalize import MIN_RANGE_RATIO, channel_ranges, equalize, equalizing_scale

from .conftest import randomize_

CONFIG = dict(upscale=2, num_feat=8, num_block=2, shared_depth=1, exp_ratio=2)  # shifted and shared layers


@pytest.fixture(scope='module')
def skewed():
    """A fused LIPT whose stream and HRM inner channels span very different ranges (as trained ones can): a random
    net with its stream channel c stored times ``loud[c]`` and each HRM's inner channel k times ``factor[k]`` (the
    same function, the inverse of an equalization)."""
    net = reparameterize(randomize_(LIPT(**CONFIG), seed=3)).eval()
    gen = torch.Generator().manual_seed(4)
    loud = torch.logspace(0, 1.5, CONFIG['num_feat'])  # 1x .. 32x
    with torch.no_grad():
        writers = [net.head] + [m.conv1 for m in net.modules() if isinstance(m, HRM)] + [
            m.proj_out for m in net.modules() if isinstance(m, NVSMAttention)]
        readers = [net.tail] + [m.conv0 for m in net.modules() if isinstance(m, HRM)] + [
            m.proj_in for m in net.modules() if isinstance(m, NVSMAttention)]
        for conv in writers:
            conv.weight.mul_(loud.view(-1, 1, 1, 1))
            conv.bias.mul_(loud)
        for conv in readers:
            conv.weight.div_(loud.view(1, -1, 1, 1))
        for hrm in (m for m in net.modules() if isinstance(m, HRM)):
            factor = torch.logspace(0, 1, hrm.conv0.out_channels)[torch.randperm(hrm.conv0.out_channels, generator=gen)]
            hrm.conv0.weight.mul_(factor.view(-1, 1, 1, 1))
            hrm.conv0.bias.mul_(factor)
            hrm.conv1.weight.div_(factor.view(1, -1, 1, 1))
    return net


@pytest.fixture(scope='module')
def inputs():
    gen = torch.Generator().manual_seed(5)
    return [torch.rand(1, 3, 16, 24, generator=gen), torch.rand(1, 3, 19, 13, generator=gen)]


def spread(ranges: torch.Tensor) -> float:
    return (ranges.max() / ranges.min()).item()


def test_equalized_network_computes_the_same_function(skewed, inputs):
    before = copy.deepcopy(skewed.state_dict())
    equalized = equalize(skewed, inputs)
    x = torch.rand(2, 3, 21, 30, generator=torch.Generator().manual_seed(6))  # not a calibration input
    with torch.no_grad():
        expected, got = skewed(x), equalized(x)
    assert (got - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    assert all(torch.equal(v, skewed.state_dict()[k]) for k, v in before.items())  # the input model is untouched
    assert not torch.equal(equalized.head.weight, skewed.head.weight)


def test_equalized_channel_ranges_are_equal(skewed, inputs):
    stream, inner = channel_ranges(skewed, inputs)
    assert spread(stream) > 10 and min(spread(r) for r in inner) > 3  # the skew the test relies on
    new_stream, new_inner = channel_ranges(equalize(skewed, inputs), inputs)
    for old, new in zip([stream] + inner, [new_stream] + new_inner):
        active = old >= old.max() * MIN_RANGE_RATIO  # quieter channels are scaled as if this loud
        assert active.sum() >= len(old) // 2 and spread(new[active]) < 1.001


def test_equalizing_scale():
    s = equalizing_scale(torch.tensor([2.0, 8.0, 0.0, 4.0]))
    clamped = torch.tensor([2.0, 8.0, 0.08, 4.0])  # the silent channel counts as 1 % of the loudest
    assert torch.allclose(s, clamped / clamped.log().mean().exp())
    assert (s > 0).all()


def test_refuses_training_form_and_no_inputs(inputs, skewed):
    with pytest.raises(ValueError, match='fused LIPT'):
        equalize(LIPT(**CONFIG), inputs)
    with pytest.raises(ValueError, match='no calibration inputs'):
        equalize(skewed, [])
