"""Make basicsr 1.4.2 importable on today's torchvision without editing its files.

basicsr 1.4.2 (the last PyPI release) imports ``torchvision.transforms.functional_tensor``, a private module that
torchvision 0.17 removed. :func:`install` registers a stand-in module that provides the one function basicsr uses
(``rgb_to_grayscale``), taken from its public home ``torchvision.transforms.functional``. It must run before the
first ``import basicsr``; ``import lipt_arch`` does that.
"""
from __future__ import annotations

import sys
import types

_LEGACY_MODULE = 'torchvision.transforms.functional_tensor'


def install() -> None:
    """Register the removed torchvision module if this torchvision lacks it (idempotent)."""
    if _LEGACY_MODULE in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision still has it)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    shim = types.ModuleType(_LEGACY_MODULE)
    shim.rgb_to_grayscale = functional.rgb_to_grayscale
    shim.__doc__ = 'Stand-in registered by lipt_arch.basicsr_support.compat for basicsr 1.4.2.'
    sys.modules[_LEGACY_MODULE] = shim
