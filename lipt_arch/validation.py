"""Every value a user gives, checked in one place: option YAMLs (``basicsr train|test``) and the flags of the
``lipt`` and ``basicsr`` commands.

Each check raises :class:`~lipt_arch.errors.OptionError` with one line naming the key or flag, e.g.
``network_g.window_size: must be one of 8, 16, got 12``; nothing is clamped or dropped silently. YAML options are
checked twice around basicsr's own ``parse_options`` (:mod:`lipt_arch.basicsr_support.fixes`): the value types its
parser trips over (:func:`check_raw_options`) before it runs, the rest (:func:`check_options`) right after, before
any folder is made. Only what BasicSR would otherwise report late (after making folders) or obscurely (a traceback,
an assertion, a shape mismatch, a division by zero) is checked here: value types and ranges of every number BasicSR
reads, the ``type`` of every model, network, dataset, loss, metric, optimizer and scheduler (against BasicSR's
registries, with the closest names), the sections ``basicsr train`` needs, the experiment ``name``, empty image
folders and training patches (``gt_size``) larger than the training images.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lipt_arch.archs.lipt_arch import SCALES, WINDOW_SIZES
from lipt_arch.errors import OptionError
from lipt_arch.image_io import IMAGE_EXTENSIONS, file_is_truncated, is_image_path

PAIRED_TYPES = ('PairedImageDataset',)  # folder-pair datasets whose pairs are checked before training
MAX_SIZE_CHECKS = 5000  # image headers read per dataset; larger folders are checked by name only
POSITIVE_INTS = {  # section path: keys that must be integers >= 1 when present
    ('logger',): ('print_freq', 'save_checkpoint_freq'),
    ('val',): ('val_freq',),
    ('train',): ('total_iter', 'net_d_iters'),
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
SCHEDULERS = {  # BaseModel.setup_schedulers of basicsr 1.4.2: type -> the keywords its class takes
    'MultiStepLR': ('milestones', 'gamma', 'restarts', 'restart_weights'),
    'MultiStepRestartLR': ('milestones', 'gamma', 'restarts', 'restart_weights'),
    'CosineAnnealingRestartLR': ('periods', 'restart_weights', 'eta_min'),
}
LOSS_REDUCTIONS = ('none', 'mean', 'sum')  # BasicSR's losses
LOSS_WEIGHTS = ('loss_weight', 'perceptual_weight', 'style_weight')  # numbers >= 0 in train.*_opt
PREFETCH_MODES = (None, 'cpu', 'cuda')  # datasets.train.prefetch_mode (train_pipeline)
TYPES_EXAMPLE = {'model': 'LIPTModel', 'arch': 'LIPT_tiny', 'dataset': 'PairedImageDataset', 'loss': 'L1Loss',
                 'metric': 'calculate_psnr'}
PATCH_DATASETS = ('PairedImageDataset', 'BicubicSRDataset')  # crop gt_size patches without padding small images


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
        raise OptionError(f'{name}: must be a positive integer, got {value!r}{_text_number_hint(value, whole_floats)}')
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


def downscale_factors(name: str, value: Any) -> list[float]:
    """``value`` as a list of factors strictly between 0 and 1 (None gives []), else :class:`OptionError`
    ``'<name>: must be a list of factors between 0 and 1 ...'`` (``name`` as the user wrote it)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(is_number(f) and 0 < f < 1 for f in value):
        raise OptionError(f'{name}: must be a list of factors between 0 and 1 (exclusive), e.g. [0.9, 0.8, 0.7, '
                          f'0.6], got {value!r}')
    return [float(f) for f in value]


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
    seed = opt.get('manual_seed')
    if seed is not None and (not is_int(seed) or not 0 <= seed < 2 ** 32):
        raise OptionError(f'manual_seed: must be an integer in [0, 2**32) or ~ (a random seed), got {seed!r}')
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
    """Everything of :func:`check_lipt_options`, plus the experiment ``name``, dataset paths and checkpoint options
    whose file is missing, image folders without images, and a training ``gt_size`` larger than the training
    images. What must be present is :func:`check_sections`' part."""
    check_name(opt.get('name'))
    check_lipt_options(opt)
    for phase, dataset in (opt.get('datasets') or {}).items():
        for key in DATASET_PATH_KEYS:
            path = dataset.get(key)
            if isinstance(path, str) and not os.path.exists(path):
                raise OptionError(f'datasets.{phase}.{key}: not found: {path}')
        for i, path in enumerate(_hr_folders(dataset)):
            if not os.path.isdir(path):
                raise OptionError(f'datasets.{phase}.hr_folders[{i}]: no such folder: {path}')
        check_image_folders(f'datasets.{phase}', dataset)
        if phase == 'train':
            check_patch_size(f'datasets.{phase}', dataset)
    for key, path in (opt.get('path') or {}).items():
        if (key.startswith('pretrain_network') or key == 'resume_state') and path and not os.path.isfile(path):
            raise OptionError(f'path.{key}: checkpoint not found: {path}')


def check_name(name: Any) -> None:
    """The experiment ``name``: one plain folder name, since BasicSR writes to ``experiments/<name>`` (``basicsr
    train``) or ``results/<name>`` (``basicsr test``) and a ``/``, ``..`` or absolute path would write elsewhere."""
    if not isinstance(name, str):
        return  # check_raw_options names it
    if not name.strip() or name in ('.', '..') or '/' in name or '\\' in name or os.sep in name \
            or os.path.isabs(name):
        raise OptionError(f'name: must be one plain folder name (no /, \\ or ..; it becomes experiments/<name> '
                          f'and results/<name>), got {name!r}')


def check_sections(opt: Mapping[str, Any], is_train: bool) -> None:
    """The sections and keys BasicSR's pipelines index directly (a ``KeyError`` after the experiment folder is made):
    ``model_type``, ``network_g.type``, each dataset's ``type`` and ``name`` and each metric's ``type``; for ``basicsr
    train`` (``is_train``) also ``train`` with ``total_iter``, ``optim_g``, ``scheduler`` (and their types) and a
    loss, ``logger`` with its frequencies, a ``train`` dataset and the ``val`` keys. Run right before the first
    folder is made (:mod:`lipt_arch.basicsr_support.fixes`); the values themselves are :func:`check_options`'."""
    for key in ('model_type', 'network_g'):
        if opt.get(key) is None:
            raise OptionError(f'{key}: missing (basicsr needs it)')
    if not isinstance(opt['network_g'], Mapping) or not opt['network_g'].get('type'):
        raise OptionError(f'network_g.type: missing (the network to build, e.g. LIPT_tiny), got {opt["network_g"]!r}')
    datasets = opt.get('datasets') or {}
    for phase, dataset in datasets.items():
        for key in ('type', 'name'):
            if isinstance(dataset, Mapping) and dataset.get(key) is None:
                example = f'e.g. {TYPES_EXAMPLE["dataset"]}' if key == 'type' else 'shown in the log'
                raise OptionError(f'datasets.{phase}.{key}: missing (the dataset {key}, {example})')
    metrics = opt['val'].get('metrics') if isinstance(opt.get('val'), Mapping) else None
    for name, metric in (metrics.items() if isinstance(metrics, Mapping) else ()):
        if isinstance(metric, Mapping) and metric.get('type') is None:
            raise OptionError(f'val.metrics.{name}.type: missing (a metric type, e.g. {TYPES_EXAMPLE["metric"]})')
    if not is_train:
        return
    train = opt.get('train')
    if not isinstance(train, Mapping):
        raise OptionError('train: missing: basicsr train needs a train: section (optim_g, scheduler, total_iter and '
                          'a loss such as pixel_opt); to evaluate a network, use basicsr test')
    for key in ('total_iter', 'optim_g', 'scheduler'):
        if train.get(key) is None:
            raise OptionError(f'train.{key}: missing (basicsr train needs it)')
    for key, value in train.items():
        if (key.endswith('_opt') or key in ('optim_g', 'optim_d', 'scheduler')) and isinstance(value, Mapping) \
                and value.get('type') is None:
            example = {'optim_g': 'Adam', 'optim_d': 'Adam', 'scheduler': 'MultiStepLR'}.get(key, 'L1Loss')
            raise OptionError(f'train.{key}.type: missing (e.g. {example})')
    model = _lookup('model', opt.get('model_type'))
    if _is_sr_model(model) and not train.get('pixel_opt') and not train.get('perceptual_opt'):
        raise OptionError(f'train.pixel_opt: missing: {opt["model_type"]} needs a loss (pixel_opt and/or '
                          f'perceptual_opt), e.g. pixel_opt: {{type: L1Loss, loss_weight: 1.0}}')
    logger = opt.get('logger')
    for key in ('print_freq', 'save_checkpoint_freq'):
        if not isinstance(logger, Mapping) or logger.get(key) is None:
            raise OptionError(f'logger.{key}: missing (basicsr train needs it)')
    if 'train' not in datasets:
        raise OptionError('datasets.train: missing (basicsr train needs a training dataset)')
    for phase in datasets:
        if phase != 'train' and phase.split('_')[0] != 'val':
            raise OptionError(f'datasets.{phase}: basicsr train takes the phases train and val, val_1, val_2, ... '
                              f'(test datasets belong in a basicsr test option file)')
    if opt.get('val') is not None:
        needed = ('val_freq', 'save_img') if any(phase != 'train' for phase in datasets) else ('val_freq',)
        for key in needed:
            if not isinstance(opt['val'], Mapping) or opt['val'].get(key) is None:
                raise OptionError(f'val.{key}: missing (basicsr train reads it when there is a val: section)')


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
    _check_registered_types(opt)
    if opt.get('scale') is not None:
        positive_int('scale', opt['scale'])
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
    """The numbers of the ``train:`` section: ``ema_decay`` in [0, 1), ``warmup_iter``, the optimizers' ``lr`` > 0,
    ``betas``, ``eps``, ``weight_decay``, the losses' weights and ``reduction``, and the scheduler's keywords."""
    decay = train.get('ema_decay', 0)
    if not is_number(decay) or not 0 <= decay < 1:
        raise OptionError(f'train.ema_decay: must be a number in [0, 1) (0: no EMA network), got {decay!r}'
                          f'{_text_number_hint(decay)}')
    warmup = train.get('warmup_iter')
    if warmup is not None and not (is_number(warmup) and float(warmup).is_integer()):
        raise OptionError(f'train.warmup_iter: must be an integer (-1: no warm-up), got {warmup!r}')
    for optimizer in ('optim_g', 'optim_d'):
        options = train.get(optimizer)
        if options is None:
            continue
        if not isinstance(options, Mapping):
            raise OptionError(f'train.{optimizer}: must be a mapping (type, lr, ...), got {options!r}')
        lr = options.get('lr')
        if lr is None:
            raise OptionError(f'train.{optimizer}.lr: missing (the learning rate, e.g. !!float 2e-4)')
        if not is_number(lr) or not lr > 0:
            raise OptionError(f'train.{optimizer}.lr: must be a number > 0 (e.g. !!float 2e-4), got {lr!r}'
                              f'{_text_number_hint(lr)}')
        _check_number(f'train.{optimizer}.weight_decay', options.get('weight_decay'), 0, '>= 0')
        _check_number(f'train.{optimizer}.eps', options.get('eps'), 0, '> 0', strict=True)
        betas = options.get('betas')
        if betas is not None and not (isinstance(betas, Sequence) and not isinstance(betas, str) and len(betas) == 2
                                      and all(is_number(b) and 0 <= b < 1 for b in betas)):
            raise OptionError(f'train.{optimizer}.betas: must be two numbers in [0, 1) (e.g. [0.9, 0.99]), '
                              f'got {betas!r}')
    for key, loss in train.items():
        if not key.endswith('_opt') or loss is None:
            continue
        if not isinstance(loss, Mapping):
            raise OptionError(f'train.{key}: must be a mapping (type, loss_weight, ...), got {loss!r}')
        for weight in LOSS_WEIGHTS:
            _check_number(f'train.{key}.{weight}', loss.get(weight), 0, '>= 0')
        if loss.get('reduction', 'mean') not in LOSS_REDUCTIONS:
            raise OptionError(f'train.{key}.reduction: must be one of {_join(LOSS_REDUCTIONS)}, '
                              f'got {loss["reduction"]!r}')
    if train.get('net_d_init_iters') is not None and not (is_int(train['net_d_init_iters'])
                                                          and train['net_d_init_iters'] >= 0):
        raise OptionError(f'train.net_d_init_iters: must be an integer >= 0, got {train["net_d_init_iters"]!r}')
    _check_scheduler(train)


def _check_scheduler(train: Mapping[str, Any]) -> None:
    """``train.scheduler``: the keywords of its type, and for CosineAnnealingRestartLR periods that last until
    ``total_iter`` (past its last period it fails with a ``TypeError``, part-way through the run). MultiStepLR
    milestones after ``total_iter`` never apply, which is harmless."""
    scheduler = train.get('scheduler')
    if scheduler is None:
        return
    if not isinstance(scheduler, Mapping):
        raise OptionError(f'train.scheduler: must be a mapping (type, ...), got {scheduler!r}')
    kind = scheduler.get('type')
    if kind not in SCHEDULERS:
        return  # missing or unknown: _check_registered_types names it (when the model uses BasicSR's schedulers)
    extra = [key for key in scheduler if key != 'type' and key not in SCHEDULERS[kind]]
    if extra:
        raise OptionError(f'train.scheduler.{extra[0]}: not a keyword of {kind} (it takes {_join(SCHEDULERS[kind])})')
    steps = 'periods' if kind == 'CosineAnnealingRestartLR' else 'milestones'
    values = scheduler.get(steps)
    if not _is_list_of(values, is_positive_int) or not values:
        raise OptionError(f'train.scheduler.{steps}: {kind} needs a list of positive integers (iterations), '
                          f'got {values!r}')
    weights = scheduler.get('restart_weights', [1])
    if not _is_list_of(weights, lambda w: is_number(w) and w >= 0):
        raise OptionError(f'train.scheduler.restart_weights: must be a list of numbers >= 0, got {weights!r}')
    restarts = values if steps == 'periods' else scheduler.get('restarts', [0])
    if steps == 'milestones' and not _is_list_of(restarts, lambda r: is_int(r) and r >= 0):
        raise OptionError(f'train.scheduler.restarts: must be a list of integers >= 0, got {restarts!r}')
    if len(weights) != len(restarts):
        owner = 'periods' if steps == 'periods' else 'restarts'
        raise OptionError(f'train.scheduler.restart_weights: {len(weights)} weight(s) for {len(restarts)} '
                          f'{owner} ({kind} needs one per entry of {owner})')
    _check_number('train.scheduler.gamma', scheduler.get('gamma'), 0, '> 0', strict=True)
    _check_number('train.scheduler.eta_min', scheduler.get('eta_min'), 0, '>= 0')
    total = train.get('total_iter')
    if steps == 'periods' and is_positive_int(total, whole_floats=True) and sum(values) < total:
        raise OptionError(f'train.scheduler.periods: {values} sum to {sum(values)}, fewer than train.total_iter '
                          f'{int(total)} (CosineAnnealingRestartLR fails after its last period); make them sum to at '
                          f'least {int(total)}, e.g. --force_yml train:scheduler:periods=[{int(total)}]')


def _check_registered_types(opt: Mapping[str, Any]) -> None:
    """Every ``type`` BasicSR looks up, against its registries (after ``import lipt_arch`` registered LIPT's):
    ``model_type``, ``network_g`` / ``network_d``, each dataset, each loss (``train.*_opt``), each metric, and the
    optimizers and scheduler that BasicSR's ``BaseModel`` builds."""
    if opt.get('model_type') is not None:
        _check_type('model_type', 'model', opt['model_type'])
    for net in ('network_g', 'network_d'):
        if isinstance(opt.get(net), Mapping) and opt[net].get('type') is not None:
            _check_type(f'{net}.type', 'arch', opt[net]['type'])
    for phase, dataset in (opt.get('datasets') or {}).items():
        if isinstance(dataset, Mapping):
            _check_type(f'datasets.{phase}.type', 'dataset', dataset.get('type'))
    train = opt.get('train') if isinstance(opt.get('train'), Mapping) else {}
    for key, loss in train.items():
        if key.endswith('_opt') and isinstance(loss, Mapping):
            _check_type(f'train.{key}.type', 'loss', loss.get('type'))
    metrics = (opt.get('val') or {}).get('metrics') if isinstance(opt.get('val'), Mapping) else None
    if metrics is not None and not isinstance(metrics, Mapping):
        raise OptionError(f'val.metrics: must be a mapping of metric name: {{type: ...}}, got {metrics!r}')
    for name, metric in (metrics or {}).items():
        if not isinstance(metric, Mapping):
            raise OptionError(f'val.metrics.{name}: must be a mapping (type, crop_border, ...), got {metric!r}')
        _check_type(f'val.metrics.{name}.type', 'metric', metric.get('type'))
        border = metric.get('crop_border')
        if border is not None and not (is_int(border) and border >= 0):
            raise OptionError(f'val.metrics.{name}.crop_border: must be an integer >= 0, got {border!r}')
        if metric.get('better', 'higher') not in ('higher', 'lower'):
            raise OptionError(f'val.metrics.{name}.better: must be higher or lower, got {metric["better"]!r}')
    from basicsr.models.base_model import BaseModel

    model = _lookup('model', opt.get('model_type'))
    if model is None or model.get_optimizer is BaseModel.get_optimizer:
        for key in ('optim_g', 'optim_d'):
            if isinstance(train.get(key), Mapping):
                kind, supported = train[key].get('type'), supported_optimizers()
                if kind is not None and kind not in supported:
                    where = f' (basicsr {_basicsr_version()} builds {_join(supported)})'
                    raise OptionError(f'train.{key}.type: {_unknown("optimizer", kind, supported, where)}')
    kind = train['scheduler'].get('type') if isinstance(train.get('scheduler'), Mapping) else None
    if (model is None or model.setup_schedulers is BaseModel.setup_schedulers) and kind is not None \
            and kind not in SCHEDULERS:
        where = f' (BasicSR builds {_join(SCHEDULERS)})'
        raise OptionError(f'train.scheduler.type: {_unknown("scheduler", kind, list(SCHEDULERS), where)}')


def _check_type(key: str, registry: str, name: Any) -> None:
    """``name`` is registered in BasicSR's ``<registry>`` registry, else one line naming ``key`` and close names."""
    if name is None:
        return  # check_sections names what is missing
    if _lookup(registry, name) is None:
        where = f" (not in BasicSR's {registry.upper()}_REGISTRY)"
        raise OptionError(f'{key}: {_unknown(f"{registry} type", name, _known(registry), where)}')


def _unknown(what: str, name: Any, known: Sequence[str], where: str = '') -> str:
    """``unknown <what> '<name>'<where>; did you mean A or B?``: the closest of ``known`` (any case, or containing
    ``name``), else all of them."""
    by_lower = {k.lower(): k for k in known}
    text = str(name).lower()
    close = difflib.get_close_matches(text, list(by_lower), n=3, cutoff=0.6)
    close += [k for k in by_lower if text and text in k and k not in close]
    hint = f'; did you mean {" or ".join(by_lower[k] for k in close[:3])}?' if close else f'; known: {_join(known)}'
    return f'unknown {what} {name!r}{where}{hint}'


def _registry(name: str) -> Any:
    from basicsr.utils import registry  # after lipt_arch's compat shim (import lipt_arch)

    return getattr(registry, f'{name.upper()}_REGISTRY')


def _lookup(registry: str, name: Any) -> Any:
    """What BasicSR's ``Registry.get`` returns for ``name`` (it falls back to ``<name>_basicsr``), else None."""
    if not isinstance(name, str):
        return None
    entries = dict(iter(_registry(registry)))  # (name, object) pairs
    return entries.get(name, entries.get(f'{name}_basicsr'))


def _known(registry: str) -> list[str]:
    """The names ``Registry.get`` accepts, ``_basicsr`` suffixes dropped."""
    return sorted({name.removesuffix('_basicsr') for name, _ in _registry(registry)})


def _is_sr_model(model: Any) -> bool:
    from basicsr.models.sr_model import SRModel

    return isinstance(model, type) and issubclass(model, SRModel)


@functools.lru_cache(maxsize=1)
def supported_optimizers() -> tuple[str, ...]:
    """The ``torch.optim`` classes BasicSR's ``BaseModel.get_optimizer`` builds (it raises ``NotImplementedError``
    for the others; basicsr 1.4.2 builds Adam only), found by asking it for each on a one-element parameter."""
    import torch
    from basicsr.models.base_model import BaseModel

    names = []
    for name, cls in sorted(vars(torch.optim).items()):
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
            continue
        try:
            BaseModel.get_optimizer(None, name, [torch.zeros(1, requires_grad=True)], 1e-3)
        except NotImplementedError:
            continue
        except Exception:  # noqa: BLE001  (built, but not with these arguments: the type itself is supported)
            pass
        names.append(name)
    return tuple(names)


def _basicsr_version() -> str:
    import basicsr

    return getattr(basicsr, '__version__', '')


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (``True`` / ``False`` and strings are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_number(name: str, value: Any, low: float, expected: str, strict: bool = False) -> None:
    """``value`` (skipped when None) is a number >= ``low`` (> with ``strict``), else ``'<name>: must be a number
    <expected>, got <value>'``."""
    if value is None:
        return
    if not is_number(value) or value < low or (strict and value == low):
        raise OptionError(f'{name}: must be a number {expected}, got {value!r}{_text_number_hint(value)}')


def _text_number_hint(value: Any, floats: bool = True) -> str:
    """For a number YAML read as text (quoted, or PyYAML's ``5e-3``, a string): how to write it; else ``''``
    (``floats``: whether a float such as ``!!float 5e3`` is accepted where ``value`` was given)."""
    if not isinstance(value, str):
        return ''
    try:
        number = float(value)
    except ValueError:
        return ''
    if re.fullmatch(r'\s*[+-]?\d+\s*', value):
        return ' (a quoted number is text: write it without quotes)'
    return f' (YAML reads {value} as text; write !!float {value})' if floats and math.isfinite(number) else ''


def _is_list_of(values: Any, ok: Any) -> bool:
    return isinstance(values, Sequence) and not isinstance(values, str) and all(ok(v) for v in values)


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
    if dataset.get('dataset_enlarge_ratio') is not None:
        positive_int(f'{name}.dataset_enlarge_ratio', dataset['dataset_enlarge_ratio'])
    prefetch = dataset.get('prefetch_mode')
    if prefetch not in PREFETCH_MODES:
        raise OptionError(f"{name}.prefetch_mode: must be ~, cpu or cuda, got {prefetch!r}")
    if prefetch == 'cuda' and dataset.get('pin_memory') is not True:
        raise OptionError(f'{name}.prefetch_mode: cuda needs {name}.pin_memory: true')
    for key in ('use_hflip', 'use_rot', 'skip_smaller'):
        if dataset.get(key) is not None and not isinstance(dataset[key], bool):
            raise OptionError(f'{name}.{key}: must be true or false, got {dataset[key]!r}')
    if dataset.get('type') == 'BicubicSRDataset':
        downscale_factors(f'{name}.hr_downscales', dataset.get('hr_downscales'))
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


def _hr_folders(dataset: Mapping[str, Any]) -> list[str]:
    """BicubicSRDataset's ``hr_folders`` (a list of paths), ``[]`` when absent or not a list of strings."""
    folders = dataset.get('hr_folders')
    return list(folders) if _is_list_of(folders, lambda f: isinstance(f, str)) else []


def _image_folders(dataset: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(key, folder)`` of the image folders a disk-backend dataset lists itself (none with a meta info file)."""
    if (dataset.get('io_backend') or {}).get('type', 'disk') != 'disk' or dataset.get('meta_info_file') \
            or dataset.get('meta_info'):
        return []
    keys = [(key, dataset.get(key)) for key in ('dataroot_gt', 'dataroot_lq')]
    keys += [(f'hr_folders[{i}]', folder) for i, folder in enumerate(_hr_folders(dataset))]
    return [(key, folder) for key, folder in keys if isinstance(folder, str) and os.path.isdir(folder)
            and not folder.endswith('.lmdb')]


def check_image_folders(name: str, dataset: Mapping[str, Any]) -> None:
    """Each image folder of a dataset holds at least one image file (searched recursively; an empty validation
    folder would otherwise fail at the first validation, after training)."""
    for key, folder in _image_folders(dataset):
        if not any(is_image_path(f) for _, _, files in os.walk(folder) for f in files):
            raise OptionError(f'{name}.{key}: no images ({_join(IMAGE_EXTENSIONS)}) in {folder}')


def check_patch_size(name: str, dataset: Mapping[str, Any]) -> None:
    """A training ``gt_size`` no larger than the GT images it is cropped from (image headers of at most
    :data:`MAX_SIZE_CHECKS` files per folder), for the datasets that crop without padding (:data:`PATCH_DATASETS`);
    BicubicSRDataset's ``skip_smaller: true`` leaves smaller images out, so only none left is refused there."""
    kind, gt_size = dataset.get('type'), dataset.get('gt_size')
    if kind not in PATCH_DATASETS or not is_positive_int(gt_size):
        return
    folders = [folder for key, folder in _image_folders(dataset) if key != 'dataroot_lq']
    crop = dataset.get('center_crop') if kind == 'BicubicSRDataset' and is_positive_int(
        dataset.get('center_crop')) else None
    sizes, smaller = 0, []
    for folder in folders:
        files = sorted(f for f in _files(folder) if kind != 'BicubicSRDataset' or is_image_path(f))
        for file in files[:MAX_SIZE_CHECKS]:
            size = _image_size(os.path.join(folder, file))
            if size is None:
                continue
            sizes += 1
            if min(*size, crop or min(size)) < gt_size:
                smaller.append((os.path.join(folder, file), size))
    skip = kind == 'BicubicSRDataset' and dataset.get('skip_smaller') is True
    if not smaller or (skip and len(smaller) < sizes):
        return
    path, (width, height) = smaller[0]
    more = f' and {len(smaller) - 1} other image(s)' if len(smaller) > 1 else ''
    if skip:
        raise OptionError(f'{name}.gt_size: {gt_size} is larger than every training image (e.g. {path}, '
                          f'{width}x{height}); skip_smaller: true leaves nothing to train on: lower gt_size')
    cap = f', center_crop {crop}' if crop is not None and crop < min(width, height) else ''
    remedy = ('or set skip_smaller: true to leave such images out' if kind == 'BicubicSRDataset' else
              'or remove such images (type BicubicSRDataset with skip_smaller: true leaves them out)')
    raise OptionError(f'{name}.gt_size: {gt_size} is larger than {path} ({width}x{height}{cap}){more}; lower '
                      f'gt_size {remedy}')


def _image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the image header, None when it is not an image PIL reads (reported elsewhere)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


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
