"""Pure functions that fold BatchNorm and merge convolution kernels (the algebra of reparameterization).

Kernels are ``(C_out, C_in, k, k)`` tensors; every function returns new tensors and leaves its inputs untouched.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def fuse_bn(kernel: Tensor, bn: nn.BatchNorm2d, conv_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fold an eval-mode BatchNorm into the conv before it: ``bn(conv(x, kernel) + conv_bias)`` as one conv.

    Computed in the dtype of ``kernel`` (pass float64 tensors for an exact fusion). Returns ``(kernel, bias)``.
    """
    dtype = kernel.dtype
    std = torch.sqrt(bn.running_var.to(dtype) + bn.eps)
    scale = bn.weight.to(dtype) / std
    bias = bn.bias.to(dtype) - bn.running_mean.to(dtype) * scale
    if conv_bias is not None:
        bias = bias + conv_bias.to(dtype) * scale
    return kernel * scale.reshape(-1, 1, 1, 1), bias


def pad_to_3x3(kernel: Tensor) -> Tensor:
    """Zero-pad a ``(C_out, C_in, 1, 1)`` kernel to the centre of a 3x3 kernel."""
    return nn.functional.pad(kernel, [1, 1, 1, 1])


def merge_1x1_3x3(k1: Tensor, b1: Tensor, k2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    """Merge ``conv3x3_valid(k2, b2)`` applied after ``conv1x1(k1, b1)`` (whose output is padded by ``b1``).

    ``k1``: (M, C_in, 1, 1), ``k2``: (C_out, M, 3, 3). The result is one padded 3x3 conv ``(C_out, C_in, 3, 3)``.
    """
    kernel = torch.einsum('omhw,mi->oihw', k2, k1[:, :, 0, 0])
    bias = k2.sum(dim=(2, 3)) @ b1 + b2
    return kernel, bias


def average_kernel(channels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The 3x3 average pooling of ``channels`` channels as a ``(channels, channels, 3, 3)`` conv kernel."""
    kernel = torch.zeros(channels, channels, 3, 3, dtype=dtype)
    kernel[range(channels), range(channels)] = 1.0 / 9.0
    return kernel


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (with bias) equal to ``bn(conv(x))`` in eval mode, computed in float64."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else None
    kernel, fused_bias = fuse_bn(weight, bn, bias)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(kernel)
        fused.bias.copy_(fused_bias)
    return fused
