"""Every value a user gives, checked in one place: option YAMLs (``basicsr train|test``) and the flags of the
``lipt`` and ``basicsr`` commands.

Each check raises :class:`~lipt_arch.errors.OptionError` with one line naming the key or flag, e.g.
``network_g.window_size: must be one of 8, 16, got 12``; nothing is clamped or dropped silently. YAML options are
checked twice around basicsr's own ``parse_options`` (:mod:`lipt_arch.basicsr_support.fixes`): the value types its
parser trips over (:func:`check_raw_options`) before it runs, the rest (:func:`check_options`) right after, before
any folder is made. Only what BasicSR would otherwise report late (after making folders) or obscurely (a traceback,
an assertion, a shape mismatch, a division by zero) is checked here.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lipt_arch.archs.lipt_arch import SCALES, WINDOW_SIZES
from lipt_arch.errors import OptionError
from lipt_arch.image_io import file_is_truncated

PAIRED_TYPES = ('PairedImageDataset',)  # folder-pair datasets whose pairs are checked before training
MAX_SIZE_CHECKS = 5000  # image headers read per dataset; larger folders are checked by name only
POSITIVE_INTS = {  # section path: keys that must be integers >= 1 when present
    ('logger',): ('print_freq', 'save_checkpoint_freq'),
    ('val',): ('val_freq',),
    ('train',): ('total_iter',),
}
BOOLS = {('train',): ('compile_rep_convs',), ('val',): ('compare_bicubic',)}  # our keys that must be true/false
# one path each (basicsr expands the first three; meta_info: RealESRGANDataset's list of training images)
DATASET_PATH_KEYS = ('dataroot_gt', 'dataroot_lq', 'meta_info_file', 'meta_info')
FORCE_YML_KEY = re.compile(r'^[A-Za-z0-9_.\-]+$')  # basicsr builds Python source from --force_yml keys
NON_NEGATIVE_FLAGS = ('tile', 'tile_pad')  # lipt flags (argparse dest) that must be integers >= 0
POSITIVE_FLAGS = ('opset',)  # lipt flags that must be integers >= 1
AMP_NAMES = ('bf16', 'fp16')  # train.amp
COMPILE_TARGETS = ('rep_convs', 'network')  # train.compile
PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')  # val.dtype, lipt infer --dtype: the forms of lipt_arch.optimize
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')  # train.compile_mode


# ------------------------------------------------------------------------------------------------------ primitives
def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (``True`` / ``False`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_positive_int(value: Any, whole_floats: bool = False) -> bool:
    """Whether ``value`` is an integer >= 1 (with ``whole_floats``, 5000.0 too: BasicSR uses it with ``%``)."""
    whole = whole_floats and isinstance(value, float) and value.is_integer()
    return (is_int(value) or whole) and value >= 1


def positive_int(name: str, value: Any, whole_floats: bool = False) -> int:
    """``value`` if :func:`is_positive_int`, else :class:`OptionError` ``'<name>: must be a positive integer, got
    <value>'`` (``name`` a YAML key path such as ``datasets.train.gt_size``)."""
    if not is_positive_int(value, whole_floats):
        raise OptionError(f'{name}: must be a positive integer, got {value!r}')
    return value


def positive_option(opt: Mapping[str, Any], key: str, owner: str, required: bool = False) -> int | None:
    """A dataset's option ``opt[key]`` if :func:`is_positive_int`, None when absent and not ``required``; else
    :class:`OptionError` ``"<owner> option '<key>' must be a positive integer, got <value>"`` (``"<owner> needs
    option '<key>'"`` when absent)."""
    value = opt.get(key)
    if value is None:
        if required:
            raise OptionError(f'{owner} needs option {key!r}')
        return None
    if not is_positive_int(value):
        raise OptionError(f'{owner} option {key!r} must be a positive integer, got {value!r}')
    return value


def _join(values: Sequence[Any]) -> str:
    return ', '.join(map(str, values))


# ------------------------------------------------------------------------------------------------ command lines
def check_lipt_args(args: argparse.Namespace) -> None:
    """The ``lipt`` flags argparse cannot check by type alone (ranges), named as on the command line."""
    for dest in NON_NEGATIVE_FLAGS + POSITIVE_FLAGS:
        value = getattr(args, dest, None)
        low = 0 if dest in NON_NEGATIVE_FLAGS else 1
        if value is not None and value < low:
            raise OptionError(f'--{dest.replace("_", "-")}: must be an integer >= {low}, got {value}')


def check_basicsr_argv(argv: Sequence[str]) -> dict[str, Any]:
    """Check BasicSR's ``-opt X.yml`` and ``--force_yml KEY=VALUE`` flags in ``argv``; returns the YAML as read
    (``{}`` without ``-opt``, which basicsr's own parser then reports)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+', default=[])
    args, _ = parser.parse_known_args(list(argv))
    if args.opt is None:
        return {}
    if not os.path.isfile(args.opt):
        raise OptionError(f'-opt: option file not found: {args.opt}')
    with open(args.opt, encoding='utf-8') as handle:
        opt = yaml.safe_load(handle)
    if not isinstance(opt, Mapping):
        raise OptionError(f'-opt: {args.opt}: expected a mapping of options, got {type(opt).__name__}')
    for entry in args.force_yml:
        keys, sep, value = entry.partition('=')
        path = keys.strip().split(':')
        if not sep or '=' in value or not all(FORCE_YML_KEY.match(key) for key in path):
            raise OptionError(f'--force_yml: expected KEY[:KEY...]=VALUE with keys of letters, digits, _ . -, '
                              f'got {entry!r}')
        node: Any = opt
        for depth, key in enumerate(path[:-1]):
            node = node.get(key) if isinstance(node, Mapping) else None
            if not isinstance(node, Mapping):
                raise OptionError(f'--force_yml: {entry!r}: no section {":".join(path[:depth + 1])} in {args.opt}')
    return opt


# ----------------------------------------------------------------------------------------------------- YAML options
def check_raw_options(opt: Mapping[str, Any]) -> None:
    """The keys and value types basicsr's ``parse_options`` uses before anything else can check them (it fails on
    them with a ``KeyError`` / ``TypeError`` traceback): ``name``, ``num_gpu``, ``datasets``, ``path`` and the
    dataset and checkpoint paths it expands. ``opt`` as read from the YAML; ``{}`` checks nothing."""
    if not opt:
        return
    for key, kind in (('name', str), ('datasets', Mapping), ('path', Mapping)):
        if key not in opt:
            raise OptionError(f'{key}: missing (basicsr needs it)')
        if not isinstance(opt[key], kind):
            raise OptionError(f'{key}: must be a {"string" if kind is str else "mapping"}, got {opt[key]!r}')
    num_gpu = opt.get('num_gpu', 'auto')
    if num_gpu != 'auto' and (not is_int(num_gpu) or num_gpu < 0):
        raise OptionError(f"num_gpu: must be 'auto' or an integer >= 0, got {num_gpu!r}")
    for phase, dataset in opt['datasets'].items():
        if not isinstance(dataset, Mapping):
            raise OptionError(f'datasets.{phase}: must be a mapping of dataset options, got {dataset!r}')
        for key in DATASET_PATH_KEYS:
            value = dataset.get(key)
            if value is not None and not isinstance(value, str):
                hint = ' (several HR folders: type BicubicSRDataset with hr_folders: [...])' if (
                    key == 'dataroot_gt' and isinstance(value, list)) else ''
                raise OptionError(f'datasets.{phase}.{key}: must be one path (a string), got {value!r}{hint}')
    for key, value in opt['path'].items():
        if ('resume_state' in key or 'pretrain_network' in key) and value is not None and not isinstance(value, str):
            raise OptionError(f'path.{key}: must be a checkpoint path (a string), got {value!r}')


def check_options(opt: Mapping[str, Any]) -> None:
    """Everything of :func:`check_lipt_options`, plus dataset paths and checkpoint options whose file is missing."""
    check_lipt_options(opt)
    for phase, dataset in (opt.get('datasets') or {}).items():
        for key in DATASET_PATH_KEYS:
            path = dataset.get(key)
            if isinstance(path, str) and not os.path.exists(path):
                raise OptionError(f'datasets.{phase}.{key}: not found: {path}')
    for key, path in (opt.get('path') or {}).items():
        if (key.startswith('pretrain_network') or key == 'resume_state') and path and not os.path.isfile(path):
            raise OptionError(f'path.{key}: checkpoint not found: {path}')


# --------------------------------------------------------------------------------- training-speed options
@dataclass(frozen=True)
class SpeedOptions:
    """What ``train.amp`` / ``channels_last`` / ``compile`` / ``compile_mode`` ask for (``None``: off)."""

    amp: str | None = None
    channels_last: bool = False
    compile: str | None = None
    compile_mode: str = 'default'

    def describe(self) -> str:
        """One log line, e.g. ``'amp bf16, channels_last, compile network (mode default)'``."""
        parts = [f'amp {self.amp}' + (' with a gradient scaler' if self.amp == 'fp16' else '') if self.amp
                 else 'amp off (float32)']
        parts.append('channels_last' if self.channels_last else 'contiguous (NCHW)')
        parts.append(f'compile {self.compile} (mode {self.compile_mode})' if self.compile else 'eager')
        return ', '.join(parts)


def speed_options(train: dict[str, Any]) -> SpeedOptions:
    """Read the options of this module from the ``train:`` section; raise ``OptionError`` with one line naming the
    first bad key (e.g. ``train.amp: must be bf16, fp16 or false, got 'fp8'``)."""
    amp = train.get('amp')
    if amp is not None and amp is not False and amp not in AMP_NAMES:
        raise OptionError(f'train.amp: must be bf16, fp16 or false, got {amp!r}')
    channels_last = train.get('channels_last', False)
    if not isinstance(channels_last, bool):
        raise OptionError(f'train.channels_last: must be true or false, got {channels_last!r}')
    target = train.get('compile')
    if target is not None and target is not False and target not in COMPILE_TARGETS:
        raise OptionError(f'train.compile: must be false, rep_convs or network, got {target!r}')
    legacy = train.get('compile_rep_convs')
    if legacy is not None and not isinstance(legacy, bool):
        raise OptionError(f'train.compile_rep_convs: must be true or false, got {legacy!r}')
    if legacy is not None and 'compile' in train and (target == 'rep_convs') != legacy and (legacy or target):
        raise OptionError(f'train.compile_rep_convs: {str(legacy).lower()} disagrees with train.compile: '
                          f'{"false" if not target else target} (compile_rep_convs: true is the older spelling of '
                          f'compile: rep_convs; keep one of them)')
    target = target or ('rep_convs' if legacy else None)
    mode = train.get('compile_mode')
    if mode is not None:
        if mode not in COMPILE_MODES:
            raise OptionError(f'train.compile_mode: must be one of {", ".join(COMPILE_MODES)}, got {mode!r}')
        if not target:
            raise OptionError(f'train.compile_mode: {mode} is set but train.compile is off (set compile: rep_convs '
                              f'or network, or remove compile_mode)')
    return SpeedOptions(amp or None, channels_last, target, mode or 'default')



def check_lipt_options(opt: Mapping[str, Any]) -> None:
    """Raise ``OptionError`` naming the first bad key among: the LIPT type (preset), window size, scale, patch size,
    batch size, workers, iteration counts and frequencies, and the training-speed options (amp, compile, ...)."""
    _check_network(opt.get('network_g') or {}, opt.get('scale'))
    scale = opt.get('scale', 1)
    for phase, dataset in (opt.get('datasets') or {}).items():
        _check_dataset(f'datasets.{phase}', dataset or {}, scale)
        check_paired_folders(f'datasets.{phase}', dataset or {}, scale)
    for (section,), keys in POSITIVE_INTS.items():
        for key in keys:
            if key in (opt.get(section) or {}):
                positive_int(f'{section}.{key}', opt[section][key], whole_floats=True)
    for (section,), keys in BOOLS.items():
        for key in keys:
            value = (opt.get(section) or {}).get(key)
            if value is not None and not isinstance(value, bool):
                raise OptionError(f'{section}.{key}: must be true or false, got {value!r}')
    _check_speed(opt.get('train') or {}, opt.get('model_type'))
    _check_val_precision(opt.get('val') or {})
    _check_train_values(opt.get('train') or {})
    _check_model_type(opt)


def _check_train_values(train: Mapping[str, Any]) -> None:
    """``train.ema_decay`` in [0, 1) and the optimizers' learning rates > 0."""
    decay = train.get('ema_decay', 0)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise OptionError(f'train.ema_decay: must be a number in [0, 1) (0: no EMA network), got {decay!r}')
    for optimizer in ('optim_g', 'optim_d'):
        lr = (train.get(optimizer) or {}).get('lr')
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
            raise OptionError(f'train.{optimizer}.lr: must be a number > 0 (e.g. !!float 2e-4), got {lr!r}')


def _check_model_type(opt: Mapping[str, Any]) -> None:
    """What BasicSR's model types need from the options: SwinIRModel pads to ``network_g.window_size`` (LIPT pads
    itself and needs no such key); Real-ESRGAN's models keep a pool of ``queue_size`` pairs, filled a batch at a
    time."""
    model_type, net = opt.get('model_type'), opt.get('network_g') or {}
    is_lipt = str(net.get('type', '')).startswith('LIPT')
    if model_type == 'SwinIRModel' and not is_lipt and 'window_size' not in net:
        raise OptionError(f'network_g.window_size: SwinIRModel pads validation inputs to a multiple of it; set it to '
                          f'the window size of {net.get("type")}')
    if model_type in ('RealESRNetModel', 'RealESRGANModel'):
        batch = ((opt.get('datasets') or {}).get('train') or {}).get('batch_size_per_gpu')
        queue = opt.get('queue_size', 180)
        if not is_int(queue) or queue < 1:
            raise OptionError(f'queue_size: must be a positive integer, got {queue!r}')
        if is_int(batch) and batch > 0 and queue % batch:
            raise OptionError(f'queue_size: {queue} is not a multiple of datasets.train.batch_size_per_gpu {batch}')


def _check_val_precision(val: Mapping[str, Any]) -> None:
    """``val.dtype`` (the inference form validation runs in, :func:`lipt_arch.optimize`) and ``val.calibration``."""
    dtype, calibration = val.get('dtype', 'fp32'), val.get('calibration')
    if dtype not in PRECISIONS:
        raise OptionError(f'val.dtype: must be one of {_join(PRECISIONS)}, got {dtype!r}')
    if dtype == 'int8' and not calibration:
        raise OptionError('val.dtype int8 needs val.calibration: a folder of training images (never the test set)')
    if calibration and dtype != 'int8':
        raise OptionError(f'val.calibration is for val.dtype int8 only (val.dtype is {dtype})')
    if calibration and not os.path.isdir(calibration):
        raise OptionError(f'val.calibration: no such folder: {calibration}')


def _check_speed(train: Mapping[str, Any], model_type: Any) -> None:
    """train.amp / channels_last / compile / compile_mode / compile_rep_convs: valid values, and a model that reads
    them (one whose class sets ``reads_speed_options``, as LIPTModel does; BasicSR's SRModel would ignore them)."""
    from basicsr.utils.registry import MODEL_REGISTRY

    if speed_options(train) == SpeedOptions():
        return
    cls = MODEL_REGISTRY.get(model_type) if isinstance(model_type, str) and model_type in MODEL_REGISTRY else None
    if not getattr(cls, 'reads_speed_options', False):
        key = next(k for k in ('amp', 'channels_last', 'compile', 'compile_rep_convs') if train.get(k))
        raise OptionError(f'train.{key}: needs model_type: LIPTModel ({model_type} would ignore it)')


def _check_network(net: Mapping[str, Any], scale: Any) -> None:
    from basicsr.utils.registry import ARCH_REGISTRY  # after lipt_arch's compat shim (import lipt_arch)

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
    for key in ('zero_init_residual', 'img_residual', 'deploy'):
        if key in net and not isinstance(net[key], bool):
            raise OptionError(f'network_g.{key}: must be true or false, got {net[key]!r}')
    upscale, alias = net.get('upscale'), net.get('scale')  # scale: LIPT's alias of upscale
    if upscale is not None and upscale not in SCALES:
        raise OptionError(f'network_g.upscale: must be one of {_join(SCALES)}, got {upscale!r}')
    if alias is not None and alias not in SCALES:
        raise OptionError(f'network_g.scale: must be one of {_join(SCALES)}, got {alias!r}')
    if upscale is not None and alias is not None and upscale != alias:
        raise OptionError(f'network_g.scale: {alias} differs from network_g.upscale: {upscale} (give one of them)')
    upscale = alias if upscale is None else upscale
    if scale is not None and scale not in SCALES:
        raise OptionError(f'scale: must be one of {_join(SCALES)}, got {scale!r}')
    if upscale is not None and scale is not None and upscale != scale:
        given = 'network_g.upscale' if 'upscale' in net else 'network_g.scale'
        raise OptionError(f'scale: {scale} differs from {given}: {upscale}')


def _check_dataset(name: str, dataset: Mapping[str, Any], scale: Any) -> None:
    if 'batch_size_per_gpu' in dataset:
        positive_int(f'{name}.batch_size_per_gpu', dataset['batch_size_per_gpu'])
    if 'num_worker_per_gpu' in dataset:
        workers = dataset['num_worker_per_gpu']
        if not is_int(workers) or workers < 0:
            raise OptionError(f'{name}.num_worker_per_gpu: must be an integer >= 0, got {workers!r}')
    gt_size = dataset.get('gt_size')
    if gt_size is not None:
        positive_int(f'{name}.gt_size', gt_size)
        if isinstance(scale, int) and scale > 0 and gt_size % scale:
            raise OptionError(f'{name}.gt_size: {gt_size} is not divisible by scale {scale} '
                              f'(try {gt_size - gt_size % scale})')


def check_paired_folders(name: str, dataset: Mapping[str, Any], scale: Any) -> None:
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


def _check_pair_size(name: str, gt: str, lq: str, scale: int) -> None:
    from PIL import Image, UnidentifiedImageError  # header reads only; PIL comes with basicsr

    sizes = []
    for path in (gt, lq):
        if os.path.getsize(path) == 0:
            raise OptionError(f'{name}: empty image file (0 bytes): {path}')
        if file_is_truncated(path):
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
