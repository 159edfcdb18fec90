"""HRM, the high-frequency reparameterization module: two six-branch 3x3 convs around a ReLU.

Each :class:`RepConv3x3` trains as the sum of six branches (3x3, 1x1, 1x1->avg-pool, 1x1->3x3, Sobel-x, Sobel-y,
each with BatchNorm) and fuses exactly into one 3x3 conv with bias (:meth:`RepConv3x3.equivalent_kernel_bias`).
"""
from __future__ import annotations

import math
import shutil
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fusion import average_kernel, fuse_bn, merge_1x1_3x3, pad_to_3x3

SQRT2 = math.sqrt(2.0)


def sobel_mask(direction: str) -> Tensor:
    """The isotropic Sobel mask (sqrt(2) centre weights) as a (3, 3) tensor; ``direction`` is ``'x'`` or ``'y'``."""
    mask = torch.tensor([[1.0, 0.0, -1.0], [SQRT2, 0.0, -SQRT2], [1.0, 0.0, -1.0]])
    return mask if direction == 'x' else mask.t().contiguous()


class BorderedBatchNorm(nn.BatchNorm2d):
    """BatchNorm followed by a 1-pixel frame that holds BN(0) under the running statistics.

    (B, C, H, W) -> (B, C, H + 2, W + 2). In eval mode this equals zero-padding before the BN. In train mode the
    interior uses batch statistics and the frame the running statistics *after* this call's update (reference
    behaviour); the frame carries no gradient, so it is written outside autograd (recording the four in-place writes
    would cost four full-size gradient copies in the backward pass).
    """

    @torch.no_grad()
    def frame_value(self) -> Tensor:
        """BN(0) under the running statistics, (C,): the value of the frame (no gradient)."""
        return self.bias - self.running_mean * self.weight / torch.sqrt(self.running_var + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        out = F.pad(super().forward(x), [1, 1, 1, 1])
        with torch.no_grad():
            frame = self.frame_value().view(1, -1, 1).to(out.dtype)
            out[:, :, 0, :] = frame
            out[:, :, -1, :] = frame
            out[:, :, :, 0] = frame
            out[:, :, :, -1] = frame
        return out


class RepConv3x3(nn.Module):
    """A 3x3 conv (stride 1, padding 1) trained as six branches that fuse into one conv with bias.

    (B, C_in, H, W) -> (B, C_out, H, W). Branches: 3x3+BN; 1x1+BN; 1x1+BN -> 3x3 average pool -> BN;
    (1x1 initialised as identity)+BN -> 3x3+BN; Sobel-x and Sobel-y (1x1 conv, then a depthwise 3x3 whose kernel is a
    learnable per-channel scale times a fixed Sobel mask, plus bias).

    The reference code also gives each Sobel branch's 1x1 conv a bias and pads its output with that bias; the Sobel
    masks sum to zero, so that bias cancels exactly and is left out here.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.bn3x3 = nn.BatchNorm2d(out_channels)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1x1 = nn.BatchNorm2d(out_channels)
        self.avg_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.avg_bn = BorderedBatchNorm(out_channels)
        self.avg_bn_out = nn.BatchNorm2d(out_channels)
        # 1x1 -> 3x3 branch: the 1x1 weight is a learnable delta on top of a fixed identity.
        self.seq_delta = nn.Parameter(torch.zeros(in_channels, in_channels, 1, 1))
        self.register_buffer('seq_identity', torch.eye(in_channels).view(in_channels, in_channels, 1, 1),
                             persistent=False)
        self.seq_bn = BorderedBatchNorm(in_channels)
        self.seq_conv = nn.Conv2d(in_channels, out_channels, 3, 1, 0, bias=False)
        self.seq_bn_out = nn.BatchNorm2d(out_channels)
        for axis in ('x', 'y'):
            setattr(self, f'sobel_{axis}_conv', nn.Conv2d(in_channels, out_channels, 1, bias=False))
            setattr(self, f'sobel_{axis}_scale', nn.Parameter(torch.randn(out_channels, 1, 1, 1) * 1e-3))
            setattr(self, f'sobel_{axis}_bias', nn.Parameter(torch.randn(out_channels) * 1e-3))
            self.register_buffer(f'sobel_{axis}_mask', sobel_mask(axis).expand(out_channels, 1, 3, 3).clone(),
                                 persistent=False)

    def _sobel(self, x: Tensor, axis: str) -> Tensor:
        kernel = getattr(self, f'sobel_{axis}_scale') * getattr(self, f'sobel_{axis}_mask')
        y = getattr(self, f'sobel_{axis}_conv')(x)
        return F.conv2d(y, kernel, getattr(self, f'sobel_{axis}_bias'), padding=1, groups=self.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3x3(self.conv3x3(x))
        out = out + self.bn1x1(self.conv1x1(x))
        out = out + self.avg_bn_out(F.avg_pool2d(self.avg_bn(self.avg_conv(x)), 3, stride=1))
        seq = self.seq_bn(F.conv2d(x, self.seq_delta + self.seq_identity))
        out = out + self.seq_bn_out(self.seq_conv(seq))
        out = out + self._sobel(x, 'x')
        return out + self._sobel(x, 'y')

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The single 3x3 conv ``(kernel (C_out, C_in, 3, 3), bias (C_out,))`` equal to this block in eval mode.

        Computed in float64 (exact up to float64 rounding), returned in the dtype of the weights.
        """
        d = torch.float64
        kernel, bias = fuse_bn(self.conv3x3.weight.to(d), self.bn3x3)
        k, b = fuse_bn(self.conv1x1.weight.to(d), self.bn1x1)
        kernel, bias = kernel + pad_to_3x3(k), bias + b
        k1, b1 = fuse_bn(self.avg_conv.weight.to(d), self.avg_bn)
        k2, b2 = fuse_bn(average_kernel(self.out_channels, d).to(k1.device), self.avg_bn_out)
        k, b = merge_1x1_3x3(k1, b1, k2, b2)
        kernel, bias = kernel + k, bias + b
        k1, b1 = fuse_bn((self.seq_delta + self.seq_identity).to(d), self.seq_bn)
        k2, b2 = fuse_bn(self.seq_conv.weight.to(d), self.seq_bn_out)
        k, b = merge_1x1_3x3(k1, b1, k2, b2)
        kernel, bias = kernel + k, bias + b
        for axis in ('x', 'y'):
            depthwise = getattr(self, f'sobel_{axis}_scale').to(d) * getattr(self, f'sobel_{axis}_mask').to(d)
            kernel = kernel + depthwise * getattr(self, f'sobel_{axis}_conv').weight.to(d)
            bias = bias + getattr(self, f'sobel_{axis}_bias').to(d)
        dtype = self.conv3x3.weight.dtype
        return kernel.to(dtype), bias.to(dtype)

    @torch.no_grad()
    def zero_output_(self) -> None:
        """Make the block output zero for every input, in place: the scale and bias of each branch's last BatchNorm
        and both Sobel branches' scale and bias are set to zero (the branches keep their other weights)."""
        for bn in (self.bn3x3, self.bn1x1, self.avg_bn_out, self.seq_bn_out):
            bn.weight.zero_()
            bn.bias.zero_()
        for axis in ('x', 'y'):
            getattr(self, f'sobel_{axis}_scale').zero_()
            getattr(self, f'sobel_{axis}_bias').zero_()

    def to_conv(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d(C_in, C_out, 3, padding=1)`` equal to this block in eval mode."""
        kernel, bias = self.equivalent_kernel_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, 1, 1, device=kernel.device, dtype=kernel.dtype)
        with torch.no_grad():
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
        return conv


def compile_rep_convs(net: nn.Module, **options: Any) -> int:
    """Compile every :class:`RepConv3x3` of ``net`` in place with ``torch.compile`` (``options`` go to it); returns
    how many. Speeds up training of the six-branch form: the BatchNorms, the frame writes and the branch sums become
    a few fused kernels, forward and backward; the convs stay oneDNN/cuDNN calls. Same function, same parameters and
    state dict. All blocks of one shape share one compiled graph (compiled at the first step, tens of seconds on a
    CPU). On a CPU, ``torch.compile`` needs a C++ compiler.
    """
    blocks = [m for m in net.modules() if isinstance(m, RepConv3x3)]
    check_cpu_compiler(nn.ModuleList(blocks), 'compiling the six-branch convs')
    for block in blocks:
        block.compile(**options)
    return len(blocks)


def has_cpp_compiler() -> bool:
    """Whether a C++ compiler (g++, c++ or clang++) is on PATH, as ``torch.compile`` needs on a CPU."""
    return any(shutil.which(cxx) for cxx in ('g++', 'c++', 'clang++'))


def check_cpu_compiler(net: nn.Module, what: str) -> None:
    """Raise ``RuntimeError`` ('<what> on a CPU needs a C++ compiler ...') when ``net`` has parameters on a CPU and no
    C++ compiler is on PATH: ``torch.compile`` builds C++ kernels for the CPU."""
    on_cpu = any(p.device.type == 'cpu' for p in net.parameters())
    if on_cpu and not has_cpp_compiler():
        raise RuntimeError(f'{what} on a CPU needs a C++ compiler (g++, c++ or clang++) on PATH; install one or turn '
                           'the compilation off')


def rep_conv3x3(in_channels: int, out_channels: int, deploy: bool) -> nn.Module:
    """The training-form :class:`RepConv3x3`, or its fused form (a plain padded 3x3 conv) when ``deploy``."""
    if deploy:
        return nn.Conv2d(in_channels, out_channels, 3, 1, 1)
    return RepConv3x3(in_channels, out_channels)


class HRM(nn.Module):
    """High-frequency reparameterization module: ``conv1(relu(conv0(x)))``, (B, C, H, W) -> (B, C, H, W).

    ``conv0`` widens C -> C * exp_ratio, ``conv1`` narrows back; both are :class:`RepConv3x3` (or plain convs when
    ``deploy``). The residual connection lives in the caller.
    """

    def __init__(self, channels: int, exp_ratio: int = 1, deploy: bool = False) -> None:
        super().__init__()
        self.conv0 = rep_conv3x3(channels, channels * exp_ratio, deploy)
        self.conv1 = rep_conv3x3(channels * exp_ratio, channels, deploy)

    @torch.no_grad()
    def zero_init_last_(self) -> None:
        """Zero the output layer (``conv1``) in place, so the module outputs zeros: with the caller's residual it
        starts as the identity ("zero-init residual", Goyal et al. 2017)."""
        if isinstance(self.conv1, RepConv3x3):
            self.conv1.zero_output_()
        else:
            self.conv1.weight.zero_()
            self.conv1.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv1(F.relu(self.conv0(x)))
