"""Option checks run by ``basicsr train|test`` right after BasicSR parses the YAML, before it builds anything.

Each check raises :class:`~lipt_arch.models.lipt_model.OptionError` with one line naming the key, e.g.
``network_g.window_size: must be one of 8, 16, got 12``. Only what BasicSR would otherwise report late (after making
folders) or obscurely (an assertion, a shape mismatch, a division by zero) is checked here.
"""
from __future__ import annotations

import difflib
import os
from typing import Any

from lipt_arch.archs.lipt_arch import SCALES, WINDOW_SIZES
from lipt_arch.models.lipt_model import OptionError

PAIRED_TYPES = ('PairedImageDataset',)  # folder-pair datasets whose pairs are checked before training
MAX_SIZE_CHECKS = 5000  # image headers read per dataset; larger folders are checked by name only
END_MARKERS = {'.png': (b'IEND', 4096), '.jpg': (b'\xff\xd9', 65536), '.jpeg': (b'\xff\xd9', 65536)}
# (end marker, how far from the end it may be): cameras append trailers after a JPEG's FFD9, as in lipt infer
POSITIVE_INTS = {  # section path: keys that must be integers >= 1 when present
    ('logger',): ('print_freq', 'save_checkpoint_freq'),
    ('val',): ('val_freq',),
    ('train',): ('total_iter',),
}
BOOLS = {('train',): ('compile_rep_convs',), ('val',): ('compare_bicubic',)}  # our keys that must be true/false


def check_lipt_options(opt: dict[str, Any]) -> None:
    """Raise ``OptionError`` naming the first bad key among: the LIPT type (preset), window size, scale, patch size,
    batch size, workers, iteration counts and frequencies."""
    _check_network(opt.get('network_g') or {}, opt.get('scale'))
    scale = opt.get('scale', 1)
    for phase, dataset in (opt.get('datasets') or {}).items():
        _check_dataset(f'datasets.{phase}', dataset or {}, scale)
        check_paired_folders(f'datasets.{phase}', dataset or {}, scale)
    for (section,), keys in POSITIVE_INTS.items():
        for key in keys:
            if key in (opt.get(section) or {}):
                _positive_int(f'{section}.{key}', opt[section][key], whole_floats=True)
    for (section,), keys in BOOLS.items():
        for key in keys:
            value = (opt.get(section) or {}).get(key)
            if value is not None and not isinstance(value, bool):
                raise OptionError(f'{section}.{key}: must be true or false, got {value!r}')
    _check_val_precision(opt.get('val') or {})


def _check_val_precision(val: dict[str, Any]) -> None:
    """``val.dtype`` (the inference form validation runs in, :func:`lipt_arch.optimize`) and ``val.calibration``."""
    from lipt_arch.optimized import PRECISIONS

    dtype, calibration = val.get('dtype', 'fp32'), val.get('calibration')
    if dtype not in PRECISIONS:
        raise OptionError(f'val.dtype: must be one of {_join(PRECISIONS)}, got {dtype!r}')
    if dtype == 'int8' and not calibration:
        raise OptionError('val.dtype int8 needs val.calibration: a folder of training images (never the test set)')
    if calibration and dtype != 'int8':
        raise OptionError(f'val.calibration is for val.dtype int8 only (val.dtype is {dtype})')
    if calibration and not os.path.isdir(calibration):
        raise OptionError(f'val.calibration: no such folder: {calibration}')


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


def check_paired_folders(name: str, dataset: dict[str, Any], scale: Any) -> None:
    """For a ``PairedImageDataset`` read from two folders: every GT file has its LQ partner (BasicSR's
    ``filename_tmpl`` naming) and the other way round, and each GT is ``scale`` times its LQ (image headers only)."""
    gt_dir, lq_dir = dataset.get('dataroot_gt'), dataset.get('dataroot_lq')
    if (dataset.get('type') not in PAIRED_TYPES or (dataset.get('io_backend') or {}).get('type', 'disk') != 'disk'
            or dataset.get('meta_info_file') or not isinstance(gt_dir, str) or not isinstance(lq_dir, str)
            or not os.path.isdir(gt_dir) or not os.path.isdir(lq_dir)):
        return
    template = dataset.get('filename_tmpl', '{}')
    gt_files, lq_files = sorted(_files(gt_dir)), set(_files(lq_dir))
    partners = {gt: template.format(os.path.splitext(gt)[0]) + os.path.splitext(gt)[1] for gt in gt_files}
    for gt, lq in partners.items():
        if lq not in lq_files:
            raise OptionError(f'{name}: GT {os.path.join(gt_dir, gt)} has no LQ partner {os.path.join(lq_dir, lq)}')
    extra = sorted(lq_files - set(partners.values()))
    if extra:
        raise OptionError(f'{name}: LQ {os.path.join(lq_dir, extra[0])} has no GT partner in {gt_dir} '
                          f'({len(extra)} LQ files without GT)')
    if isinstance(scale, int) and scale > 0:
        for gt in gt_files[:MAX_SIZE_CHECKS]:
            _check_pair_size(name, os.path.join(gt_dir, gt), os.path.join(lq_dir, partners[gt]), scale)


def _files(folder: str) -> list[str]:
    """File names in ``folder`` as BasicSR's ``scandir`` lists them (not recursive, no hidden files)."""
    return [e.name for e in os.scandir(folder) if not e.name.startswith('.') and e.is_file()]


def _truncated(path: str) -> bool:
    """Whether a PNG / JPEG lacks its end marker near the end of the file (cut short by an interrupted copy)."""
    marker, tail = END_MARKERS.get(os.path.splitext(path)[1].lower(), (None, 0))
    if marker is None:
        return False
    with open(path, 'rb') as f:
        f.seek(max(os.path.getsize(path) - tail, 0))
        return marker not in f.read()


def _check_pair_size(name: str, gt: str, lq: str, scale: int) -> None:
    from PIL import Image, UnidentifiedImageError

    sizes = []
    for path in (gt, lq):
        if os.path.getsize(path) == 0:
            raise OptionError(f'{name}: empty image file (0 bytes): {path}')
        if _truncated(path):
            raise OptionError(f'{name}: truncated image (no end marker): {path}')
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
        except (UnidentifiedImageError, OSError) as err:
            raise OptionError(f'{name}: cannot read image {path}: {err}') from None
    (gw, gh), (lw, lh) = sizes
    if (gw, gh) != (lw * scale, lh * scale):
        raise OptionError(f'{name}: GT {gt} is {gw}x{gh} but LQ {lq} is {lw}x{lh}; '
                          f'GT must be {scale}x the LQ (scale {scale})')
