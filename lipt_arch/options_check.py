"""Option checks run by ``basicsr train|test`` right after BasicSR parses the YAML, before it builds anything.

Each check raises :class:`~lipt_arch.models.lipt_model.OptionError` with one line naming the key, e.g.
``network_g.window_size: must be one of 8, 16, got 12``. Only what BasicSR would otherwise report late (after making
folders) or obscurely (an assertion, a shape mismatch, a division by zero) is checked here.
"""
from __future__ import annotations

import difflib
from typing import Any

from lipt_arch.archs.lipt_arch import SCALES, WINDOW_SIZES
from lipt_arch.models.lipt_model import OptionError

POSITIVE_INTS = {  # section path: keys that must be integers >= 1 when present
    ('logger',): ('print_freq', 'save_checkpoint_freq'),
    ('val',): ('val_freq',),
    ('train',): ('total_iter',),
}


def check_lipt_options(opt: dict[str, Any]) -> None:
    """Raise ``OptionError`` naming the first bad key among: the LIPT type (preset), window size, scale, patch size,
    batch size, workers, iteration counts and frequencies."""
    _check_network(opt.get('network_g') or {}, opt.get('scale'))
    scale = opt.get('scale', 1)
    for phase, dataset in (opt.get('datasets') or {}).items():
        _check_dataset(f'datasets.{phase}', dataset or {}, scale)
    for (section,), keys in POSITIVE_INTS.items():
        for key in keys:
            if key in (opt.get(section) or {}):
                _positive_int(f'{section}.{key}', opt[section][key], whole_floats=True)


def _check_network(net: dict[str, Any], scale: Any) -> None:
    from basicsr.utils.registry import ARCH_REGISTRY

    kind = net.get('type')
    if not isinstance(kind, str) or not kind.startswith('LIPT'):
        return
    if kind not in ARCH_REGISTRY:
        known = sorted(name for name, _ in ARCH_REGISTRY if name.startswith('LIPT'))
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f'; did you mean {close[0]}?' if close else ''
        raise OptionError(f'network_g.type: unknown LIPT type or preset {kind!r} (known: {", ".join(known)}){hint}')
    if 'window_size' in net and net['window_size'] not in WINDOW_SIZES:
        raise OptionError(f'network_g.window_size: must be one of {_join(WINDOW_SIZES)}, got {net["window_size"]!r}')
    upscale = net.get('upscale')
    if upscale is not None and upscale not in SCALES:
        raise OptionError(f'network_g.upscale: must be one of {_join(SCALES)}, got {upscale!r}')
    if scale is not None and scale not in SCALES:
        raise OptionError(f'scale: must be one of {_join(SCALES)}, got {scale!r}')
    if upscale is not None and scale is not None and upscale != scale:
        raise OptionError(f'scale: {scale} differs from network_g.upscale: {upscale}')


def _check_dataset(name: str, dataset: dict[str, Any], scale: Any) -> None:
    for key in ('batch_size_per_gpu',):
        if key in dataset:
            _positive_int(f'{name}.{key}', dataset[key])
    if 'num_worker_per_gpu' in dataset:
        workers = dataset['num_worker_per_gpu']
        if not _is_int(workers) or workers < 0:
            raise OptionError(f'{name}.num_worker_per_gpu: must be an integer >= 0, got {workers!r}')
    gt_size = dataset.get('gt_size')
    if gt_size is not None:
        _positive_int(f'{name}.gt_size', gt_size)
        if isinstance(scale, int) and scale > 0 and gt_size % scale:
            raise OptionError(f'{name}.gt_size: {gt_size} is not divisible by scale {scale} '
                              f'(try {gt_size - gt_size % scale})')


def _positive_int(key: str, value: Any, whole_floats: bool = False) -> None:
    """``value`` must be an integer >= 1 (with ``whole_floats``, 5000.0 too: BasicSR uses it with ``%``)."""
    whole = whole_floats and isinstance(value, float) and value.is_integer()
    if not (_is_int(value) or whole) or value < 1:
        raise OptionError(f'{key}: must be a positive integer, got {value!r}')


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _join(values: tuple[int, ...]) -> str:
    return ', '.join(map(str, values))
