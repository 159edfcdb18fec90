"""Named LIPT configurations (tiny, small, base) per scale, as data plus small factory functions.

Sources (see docs/presets.md): small and base follow the paper's table and the authors' configs; tiny's width 28
is our inference from the paper's 0.36 M parameters (the authors' config says 24, which gives 0.27 M).
For ``upscale=1`` (denoising, JPEG) the paper gives no depth; we use the x2 depth.
"""
from __future__ import annotations

import warnings
from typing import Any

from basicsr.utils.registry import ARCH_REGISTRY

from .lipt_arch import LIPT, resolve_upscale

# num_block is the reference's m_elan / (1 + n_share), per scale.
PRESETS: dict[str, dict[str, Any]] = {
    'tiny': dict(num_feat=28, num_block={1: 4, 2: 4, 3: 4, 4: 4}, shared_depth=1, window_size=8),
    'small': dict(num_feat=64, num_block={1: 5, 2: 5, 3: 6, 4: 6}, shared_depth=1, window_size=8),
    'base': dict(num_feat=144, num_block={1: 22, 2: 22, 3: 22, 4: 22}, shared_depth=0, window_size=16),
}


def preset_config(preset: str, upscale: int | None = None, scale: int | None = None, **overrides: Any
                  ) -> dict[str, Any]:
    """LIPT constructor keywords of a named preset at ``upscale`` (or its alias ``scale``; one of them is needed),
    with ``overrides`` applied on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown LIPT preset {preset!r}; choose one of {', '.join(PRESETS)}")
    upscale = resolve_upscale(upscale, scale)
    if upscale is None:
        raise ValueError(f'LIPT preset {preset!r} needs upscale (or its alias scale)')
    config = dict(PRESETS[preset], upscale=upscale)
    if upscale not in config['num_block']:
        raise ValueError(f"LIPT option 'upscale' must be one of {sorted(config['num_block'])}, got {upscale!r}")
    config['num_block'] = config['num_block'][upscale]
    config.update(overrides)
    return config


@ARCH_REGISTRY.register()
def LIPT_tiny(upscale: int | None = None, scale: int | None = None, **overrides: Any) -> LIPT:  # noqa: N802  (BasicSR)
    """LIPT-Tiny (about 0.36 M fused parameters)."""
    return LIPT(**preset_config('tiny', resolve_upscale(upscale, scale, default=2), **overrides))


@ARCH_REGISTRY.register()
def LIPT_small(upscale: int | None = None, scale: int | None = None, **overrides: Any) -> LIPT:  # noqa: N802
    """LIPT-Small, the paper's main model (2.33 / 2.80 / 2.81 M fused parameters at x2 / x3 / x4)."""
    return LIPT(**preset_config('small', resolve_upscale(upscale, scale, default=2), **overrides))


@ARCH_REGISTRY.register()
def LIPT_base(upscale: int | None = None, scale: int | None = None, **overrides: Any) -> LIPT:  # noqa: N802
    """LIPT-Base (about 26 M fused parameters, window 16, no attention sharing)."""
    return LIPT(**preset_config('base', resolve_upscale(upscale, scale, default=2), **overrides))


@ARCH_REGISTRY.register()
def LIPT_zero_init(preset: str | None = None, upscale: int | None = None, scale: int | None = None,  # noqa: N802
                   **kwargs: Any) -> LIPT:
    """Deprecated: a :class:`LIPT` (from ``preset`` plus ``kwargs``, or ``kwargs`` alone) with
    ``zero_init_residual=True``; write ``type: LIPT_<preset>`` (or ``LIPT``) and ``zero_init_residual: true``."""
    replacement = f'LIPT_{preset}' if preset is not None else 'LIPT'
    warnings.warn(f'network_g type LIPT_zero_init is deprecated: use type: {replacement} with '
                  'zero_init_residual: true', FutureWarning, stacklevel=2)
    upscale = resolve_upscale(upscale, scale, default=2)
    config = preset_config(preset, upscale, **kwargs) if preset is not None else dict(kwargs, upscale=upscale)
    return LIPT(**config, zero_init_residual=True)
