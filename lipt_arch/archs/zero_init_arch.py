"""Zero-initialised residual branches for short LIPT trainings (the "zero-init residual" trick of Goyal et al. 2017).

With its default initialisation, an untrained LIPT's output has a standard deviation of about 4-6 on [0, 1] images:
every HRM and attention branch adds unit-variance BatchNorm outputs (six per re-parameterisable conv) to the
residual stream, and the network spends its first hundreds of iterations undoing that. Setting the last layer of
every residual branch to zero makes each LIPT block the identity at initialisation (the network starts as
``tail(2 * head(x))``), which trains much faster in short runs (docs/training.md). The architecture, the fusion and
the checkpoints are unchanged: this only chooses initial values.

BasicSR: ``network_g: {type: LIPT_zero_init, preset: tiny, upscale: 2}`` (other keys override the preset, or give
every LIPT keyword when ``preset`` is left out).
"""
from __future__ import annotations

from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .hrm import HRM, RepConv3x3
from .lipt_arch import LIPT, resolve_upscale
from .nvsm_attention import NVSMAttention
from .presets import preset_config


@torch.no_grad()
def zero_init_residual_(model: nn.Module) -> nn.Module:
    """Zero the output layer of every HRM (``conv1``: all branch BN scales, Sobel scales and biases, or the plain
    conv of a deploy-form HRM) and every NVSM-SA ``proj_out``, in place; returns ``model``."""
    for module in model.modules():
        if isinstance(module, HRM):
            last = module.conv1
            if isinstance(last, RepConv3x3):
                for name, param in last.named_parameters(recurse=False):
                    if name.startswith('sobel_'):  # per-channel Sobel scale and bias
                        param.zero_()
                for bn in (last.bn3x3, last.bn1x1, last.avg_bn_out, last.seq_bn_out):
                    bn.weight.zero_()
                    bn.bias.zero_()
            else:
                for param in last.parameters():
                    param.zero_()
        elif isinstance(module, NVSMAttention):
            module.proj_out.weight.zero_()
            module.proj_out.bias.zero_()
    return model


@ARCH_REGISTRY.register()
def LIPT_zero_init(preset: str | None = None, upscale: int | None = None, scale: int | None = None,  # noqa: N802
                   **kwargs: Any) -> LIPT:
    """A :class:`LIPT` (from ``preset`` plus ``kwargs``, or from ``kwargs`` alone) with zero-initialised residual
    branches (:func:`zero_init_residual_`); ``scale`` is an alias of ``upscale`` (default 2)."""
    upscale = resolve_upscale(upscale, scale, default=2)
    config = preset_config(preset, upscale, **kwargs) if preset is not None else dict(kwargs, upscale=upscale)
    return zero_init_residual_(LIPT(**config))
