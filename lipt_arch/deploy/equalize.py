"""Cross-layer equalization of a fused LIPT: exact in float, evens out the channel ranges for int8.

Per-tensor activation quantization gives every channel of a tensor the same step; when one channel spans 50x the
range of another, the small one is quantized coarsely. Two places of a fused LIPT can be rescaled per channel at
no cost (Nagel et al., "Data-free quantization through weight equalization and bias correction", ICCV 2019):

- The residual stream (head output, every LIPT block, the long residual): it is written only by linear layers (the
  head conv, each HRM's ``conv1``, each attention's ``proj_out``) and identity adds, and read only by linear layers
  (each HRM's ``conv0``, each attention's ``proj_in``, the tail conv). Storing it divided by a per-channel ``s > 0``
  means dividing the writers' output channels (weight and bias) by ``s`` and multiplying the readers' input
  channels by ``s``. One ``s`` serves the whole stream (the adds tie all its points together).
- Each HRM's inner tensor, ``conv1(relu(conv0(x)))``: ReLU is positive-homogeneous, so ``conv0``'s output channel k
  may be divided by ``t_k > 0`` and ``conv1``'s input channel k multiplied by it.

``s`` and ``t`` are chosen from calibration inputs so that every channel reaches the same largest magnitude.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..archs import HRM, NVSMAttention

MIN_RANGE_RATIO = 1e-2  # a channel quieter than this fraction of the loudest one is scaled as if it were this loud


@torch.no_grad()
def channel_ranges(fused: nn.Module, inputs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Largest magnitude per channel over ``inputs`` ((1, C_in, h, w) in [0, 1]) of the residual stream, (C,), and
    of each HRM's inner tensor (the ReLU output; one (C * exp_ratio,) per HRM, in ``fused.modules()`` order)."""
    hrms = [m for m in fused.modules() if isinstance(m, HRM)]
    # the attention's input is hooked on the module: its fused form applies proj_in's weights without calling it
    readers = [m.conv0 for m in hrms] + [m for m in fused.modules() if isinstance(m, NVSMAttention)]
    stream = torch.zeros(fused.config['num_feat'])
    inner = [torch.zeros(m.conv1.in_channels) for m in hrms]

    def record(target: Tensor, x: Tensor) -> None:
        target.copy_(torch.maximum(target, x.detach().abs().amax(dim=(0, 2, 3)).float().cpu()))

    hooks = [m.register_forward_pre_hook(lambda _, args: record(stream, args[0])) for m in readers + [fused.tail]]
    hooks += [m.conv1.register_forward_pre_hook(lambda _, args, i=i: record(inner[i], args[0]))
              for i, m in enumerate(hrms)]
    try:
        for x in inputs:
            fused(x.float())
    finally:
        for hook in hooks:
            hook.remove()
    return stream, inner


def equalizing_scale(ranges: Tensor) -> Tensor:
    """Per-channel scale ``s`` (C,) > 0 with ``ranges / s`` equal for every channel, normalized to geometric mean 1;
    channels below ``MIN_RANGE_RATIO`` of the largest range count as that large (a channel silent on the
    calibration images is not blown up)."""
    ranges = ranges.double().clamp_min(ranges.max().item() * MIN_RANGE_RATIO).clamp_min(1e-12)
    return (ranges / ranges.log().mean().exp()).float()


@torch.no_grad()
def _scale_out(conv: nn.Conv2d, divisor: Tensor) -> None:
    conv.weight.div_(divisor.view(-1, 1, 1, 1))
    conv.bias.div_(divisor)


@torch.no_grad()
def _scale_in(conv: nn.Conv2d, factor: Tensor) -> None:
    conv.weight.mul_(factor.view(1, -1, 1, 1))


def equalize(model: nn.Module, inputs: Sequence[Tensor]) -> nn.Module:
    """A copy of the fused LIPT ``model`` (fp32, left untouched) with its residual stream and its HRMs' inner tensors
    equalized on ``inputs`` ((1, C_in, h, w) in [0, 1], e.g. :func:`.optimized.calibration_inputs`): the
    same function (float rounding aside), per-channel ranges made equal. Raises ValueError for a training-form
    model (fuse it first) or no inputs."""
    if not model.config.get('deploy'):
        raise ValueError('equalize() takes a fused LIPT (reparameterize it first)')
    if not inputs:
        raise ValueError('equalize: no calibration inputs')
    net = copy.deepcopy(model).float().cpu().eval()
    stream, inner = channel_ranges(net, inputs)
    s = equalizing_scale(stream)
    _scale_out(net.head, s)
    _scale_in(net.tail, s)
    for module in net.modules():
        if isinstance(module, HRM):
            _scale_in(module.conv0, s)
            _scale_out(module.conv1, s)
        elif isinstance(module, NVSMAttention):
            _scale_in(module.proj_in, s)
            _scale_out(module.proj_out, s)
    for hrm, ranges in zip([m for m in net.modules() if isinstance(m, HRM)], inner):
        t = equalizing_scale(ranges)
        _scale_out(hrm.conv0, t)
        _scale_in(hrm.conv1, t)
    return net
