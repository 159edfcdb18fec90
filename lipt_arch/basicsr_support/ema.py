"""A BatchNorm-aware EMA for every BasicSR model type.

BasicSR 1.4.2's ``BaseModel.model_ema`` averages ``net_g``'s *parameters* into ``net_g_ema`` and never touches its
buffers. For a network with BatchNorm (a LIPT in training form has 296 BatchNorm layers in LIPT-Tiny) the EMA copy
keeps its initial running statistics (mean 0, variance 1) for ever: what BasicSR validates and saves as
``params_ema`` is not the trained network. :func:`model_ema` replaces ``BaseModel.model_ema``, so the fix holds in
every model type that inherits it (SRModel, SwinIRModel, SRGANModel, ESRGANModel, RealESRNetModel, RealESRGANModel,
LIPTModel, ...): the parameters are averaged exactly as BasicSR does, then, for networks with BatchNorm,
:func:`ema_buffers_` updates the buffers.

Which networks: every network with a BatchNorm layer, LIPT or not, because the fault is BasicSR's and gives the same
wrong EMA for any of them; networks without BatchNorm are left to BasicSR's update alone (bit for bit as before:
their buffers, such as SwinIR's relative position index, are constants). The EMA buffers are part of
``params_ema`` in ``net_g_<iter>.pth``, which a resume loads, so a resumed run continues the same averages.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BN_STATS = ('running_mean', 'running_var')

_ORIGINAL: dict[str, Callable] = {}


def has_batchnorm(net: nn.Module) -> bool:
    """Whether ``net`` has a BatchNorm layer (with running statistics)."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in net.modules())


@torch.no_grad()
def ema_buffers_(net: nn.Module, ema: nn.Module, decay: float) -> None:
    """Update ``ema``'s buffers from ``net``'s: BatchNorm running mean/var are averaged with ``decay`` (like the
    parameters), every other buffer (``num_batches_tracked``, fixed masks) is copied.

    Averaging, not copying: the EMA weights are an average over roughly ``1 / (1 - decay)`` steps, while ``net``'s
    running statistics describe only its latest weights (BN momentum 0.1, about ten steps); averaging the
    statistics over the same horizon as the weights keeps the pair consistent. With ``decay=0`` it is a copy.
    """
    ema_modules = dict(ema.named_modules())
    averaged_dst, averaged_src = [], []
    for name, module in net.named_modules():
        target = ema_modules[name]
        for key, buf in module.named_buffers(recurse=False):
            dst = getattr(target, key)
            if isinstance(module, _BatchNorm) and key in BN_STATS:
                averaged_dst.append(dst)
                averaged_src.append(buf)
            else:
                dst.copy_(buf)
    if averaged_dst:
        torch._foreach_lerp_(averaged_dst, averaged_src, 1 - decay)


def model_ema(self, decay: float = 0.999) -> None:
    """``BaseModel.model_ema``: BasicSR's parameter average of ``net_g`` into ``net_g_ema``, then, when the network
    has BatchNorm, :func:`ema_buffers_` with the same ``decay``."""
    _ORIGINAL['model_ema'](self, decay)
    net = self.get_bare_model(self.net_g)
    if has_batchnorm(net):
        ema_buffers_(net, self.net_g_ema, decay)


def install() -> None:
    """Replace ``BaseModel.model_ema`` by :func:`model_ema` (idempotent)."""
    from basicsr.models.base_model import BaseModel

    if not _ORIGINAL:
        _ORIGINAL['model_ema'] = BaseModel.model_ema
        BaseModel.model_ema = model_ema
