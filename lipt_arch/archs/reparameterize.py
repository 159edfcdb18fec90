"""Fuse a trained LIPT (or any module holding LIPT parts) into its deploy form."""
from __future__ import annotations

import copy

from torch import nn

from .hrm import RepConv3x3
from .nvsm_attention import NVSMAttention


def is_fusable(model: nn.Module) -> bool:
    """Whether :func:`reparameterize` would change ``model``: it holds a six-branch :class:`RepConv3x3` or an
    :class:`NVSMAttention` whose BatchNorm is not folded yet (a LIPT in training form, or a network containing one)."""
    return any(isinstance(m, RepConv3x3) or (isinstance(m, NVSMAttention) and isinstance(m.proj_bn, nn.BatchNorm2d))
               for m in model.modules())


def reparameterize(model: nn.Module) -> nn.Module:
    """A new, fused copy of ``model`` in eval mode; ``model`` itself is left untouched.

    Every :class:`RepConv3x3` becomes one 3x3 conv with bias and every :class:`NVSMAttention` gets its input
    projection's BatchNorm folded into the 1x1 conv, so no BatchNorm remains. Fusion uses the running (eval)
    statistics and is computed in float64. A LIPT's ``config['deploy']`` becomes True.
    """
    fused = copy.deepcopy(model).eval()
    for module in list(fused.modules()):
        for name, child in module.named_children():
            if isinstance(child, RepConv3x3):
                setattr(module, name, child.to_conv())
        if isinstance(module, NVSMAttention):
            module.fold_bn()
        if isinstance(getattr(module, 'config', None), dict) and 'deploy' in module.config:
            module.config = {**module.config, 'deploy': True}
    return fused.eval()
