"""What basicsr 1.4.2 gets wrong on today's stack, fixed from our side (basicsr's files are never edited).

:func:`apply` (run by ``import lipt_arch``; idempotent) replaces these names in basicsr's own modules:

1. ``basicsr.train.load_resume_state``: 1.4.2 calls ``torch.cuda.current_device()`` (fails without CUDA), maps the
   state onto the GPU, and looks for ``--auto_resume`` states under the *current directory's* ``experiments/``.
   Ours reads the state on CPU (``Optimizer.load_state_dict`` moves it to the parameters' device) from
   ``opt['path']['training_states']`` (under the pipeline's ``root_path``).
2. Same function, torch >= 2.6: resume states are read with ``weights_only=True`` through
   :func:`lipt_arch.checkpoints.read_checkpoint` (clear one-line errors naming the file; a zip archive whose
   entries fail their CRC-32, e.g. a bit flipped on disk, is refused before it is unpickled). A resume state holds only
   tensors, numbers, lists, dicts and ``collections.Counter`` (``MultiStepRestartLR.milestones``); Counter is
   allowlisted explicitly for torch versions whose weights-only unpickler lacks it. Nothing else is allowed.
3. ``--launcher pytorch`` without CUDA: 1.4.2's ``init_dist`` divides the rank by ``torch.cuda.device_count()``
   (zero) and hard-codes nccl, and ``BaseModel.model_to_device`` passes ``device_ids=[torch.cuda.current_device()]``
   to DistributedDataParallel. Ours uses gloo and no device ids on CPU; with CUDA it keeps nccl and picks the GPU
   from ``LOCAL_RANK`` (right on several nodes too).
4. ``parse_options`` (as imported by ``basicsr.train`` / ``basicsr.test``) only knows ``--local_rank``;
   ``torch.distributed.launch`` passes ``--local-rank``. Ours rewrites that flag before basicsr parses ``sys.argv``,
   and checks every option (:mod:`lipt_arch.validation`): the flags and the value types basicsr's parser itself
   trips over (e.g. a list as ``dataroot_gt``) before it runs, the rest right after (before any folder is made).
   ``make_exp_dirs`` (as imported by ``basicsr.train`` / ``basicsr.test``) first checks that the sections the run
   reads are there (:func:`lipt_arch.validation.check_sections`: e.g. ``train:`` for ``basicsr train``).
5. ``BaseModel.save_network`` / ``save_training_state`` write with ``torch.save`` straight to the final path (an
   interrupted save leaves a truncated checkpoint) and *ignore* failures after three tries. Ours write atomically
   (:func:`lipt_arch.checkpoints.atomic_save`) and let a failure stop the run; a stale ``*.tmp<pid>.<hex>`` left by a
   killed save is never taken for a checkpoint (``--auto_resume`` only reads ``<iter>.state``). The training state
   also holds what the model's ``extra_training_state()`` returns (LIPTModel: the fp16 gradient scaler).
6. ``train_pipeline`` resumes at the start of the saved epoch with freshly seeded random generators, so a resumed
   run trains on other batches than an uninterrupted one. Ours resume at the saved batch with the saved generator
   states (:mod:`.resume`): on CPU with ``num_worker_per_gpu: 0`` the weights are bitwise those of an uninterrupted
   run.
7. ``VGGFeatureExtractor`` (the perceptual loss, ``train.perceptual_opt``) downloads torchvision's VGG19 weights when
   ``experiments/pretrained_models/vgg19-dcbb9e9d.pth`` is missing; offline that ends in a urllib traceback. Ours
   ends in one line naming ``train.perceptual_opt`` and where to put the file.

Also installed by :func:`apply`: the BatchNorm-aware EMA (:mod:`.ema`), the fused LIPT in every model type's
validation, ``basicsr test`` and deploy checkpoints (:mod:`.fused_validation`), and Real-ESRGAN's models off CUDA
(:mod:`.realesrgan`).
"""
from __future__ import annotations

import collections
import contextlib
import importlib
import os
import sys
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lipt_arch.checkpoints import atomic_save, read_checkpoint
from lipt_arch.checkpoints.files import strip_ddp_prefix
from lipt_arch.errors import CheckpointError, OptionError
from lipt_arch.validation import check_basicsr_argv, check_options, check_raw_options, check_sections

from . import ema, fused_validation, realesrgan, resume

_ORIGINALS: dict[str, Any] = {}


def load_resume_state(opt: dict) -> dict | None:
    """The resume state named by ``opt['path']['resume_state']`` or, with ``auto_resume``, the newest
    ``<iter>.state`` in ``opt['path']['training_states']``; ``None`` to start fresh. Tensors stay on CPU."""
    from basicsr.utils import check_resume, scandir

    path = None
    if opt['auto_resume']:
        folder = opt['path']['training_states']
        if os.path.isdir(folder):
            iters = [int(name[:-len('.state')]) for name in scandir(folder, suffix='.state')
                     if name[:-len('.state')].isdigit()]
            if iters:
                path = os.path.join(folder, f'{max(iters)}.state')
                opt['path']['resume_state'] = path
    elif opt['path'].get('resume_state'):
        path = opt['path']['resume_state']
    if path is None:
        resume.expect_resume(opt, {})
        return None
    with _allow_counter():
        state = read_checkpoint(path)
    if not isinstance(state, dict) or not {'iter', 'epoch', 'optimizers', 'schedulers'} <= set(state):
        raise CheckpointError(f'{path}: not a BasicSR training state (expected iter, epoch, optimizers, schedulers)')
    check_resume(opt, state['iter'])
    resume.expect_resume(opt, state)
    return state


def _allow_counter() -> contextlib.AbstractContextManager:
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    return safe_globals([collections.Counter]) if safe_globals else contextlib.nullcontext()


def init_dist(launcher: str, backend: str = 'nccl', **kwargs: Any) -> None:
    """basicsr's ``init_dist``; for ``launcher='pytorch'`` gloo on CPU, and the GPU chosen by ``LOCAL_RANK``."""
    if launcher != 'pytorch':
        return _ORIGINALS['init_dist'](launcher, backend, **kwargs)
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    if torch.cuda.is_available():
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0)))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)


def model_to_device(self, net: nn.Module) -> nn.Module:
    """``BaseModel.model_to_device``, with DistributedDataParallel on CPU (no ``device_ids``)."""
    if not (self.opt['dist'] and self.device.type == 'cpu'):
        return _ORIGINALS['model_to_device'](self, net)
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(net.to(self.device),
                                   find_unused_parameters=self.opt.get('find_unused_parameters', False))


def normalize_argv(argv: list[str]) -> list[str]:
    """``argv`` with torch.distributed.launch's ``--local-rank[=N]`` spelled ``--local_rank[=N]``."""
    return [('--local_rank' + arg[len('--local-rank'):]) if arg.split('=', 1)[0] == '--local-rank' else arg
            for arg in argv]


def parse_options(root_path: str, is_train: bool = True) -> tuple[dict, Any]:
    """basicsr's ``parse_options`` after :func:`normalize_argv` on ``sys.argv``, with every option checked
    (:class:`~lipt_arch.errors.OptionError` naming the first bad one): the flags and the YAML's value types before
    basicsr parses (its parser fails on some with a traceback), the values right after."""
    sys.argv[1:] = normalize_argv(sys.argv[1:])
    check_raw_options(check_basicsr_argv(sys.argv[1:]))
    opt, args = _ORIGINALS['parse_options'](root_path, is_train)
    check_options(opt)
    return opt, args


def make_exp_dirs(opt: dict) -> None:
    """basicsr's ``make_exp_dirs`` (the experiment or results folders), after :func:`check_sections`."""
    check_sections(opt, bool(opt.get('is_train')))
    _ORIGINALS['make_exp_dirs'](opt)


def save_network(self, net, net_label: str, current_iter: int, param_key='params') -> None:
    """``BaseModel.save_network`` (``models/<net_label>_<iter|latest>.pth``), written atomically, rank 0 only."""
    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError('save_network: the lengths of net and param_key should be the same')
    label = 'latest' if current_iter == -1 else current_iter
    state = {key: strip_ddp_prefix({k: v.cpu() for k, v in self.get_bare_model(n).state_dict().items()})
             for n, key in zip(nets, keys)}
    atomic_save(state, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))
    if net_label == 'net_g':
        fused_validation.save_deploy(self, nets, keys, current_iter)


def save_training_state(self, epoch: int, current_iter: int) -> None:
    """``BaseModel.save_training_state`` (``training_states/<iter>.state``), written atomically, rank 0 only."""
    if current_iter == -1 or (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
        return
    state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers]}
    point = resume.resume_point(epoch)
    if point is not None:
        state['resume_point'] = point
    if hasattr(self, 'extra_training_state'):  # LIPTModel: the fp16 gradient scaler
        state.update(self.extra_training_state())
    atomic_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def update_learning_rate(self, current_iter: int, warmup_iter: int = -1) -> None:
    """``BaseModel.update_learning_rate`` (called once per training iteration), also counting the batch."""
    resume.count_batch()
    _ORIGINALS['update_learning_rate'](self, current_iter, warmup_iter)


VGG_WEIGHTS = 'vgg19-dcbb9e9d.pth'  # torchvision's VGG19 (ImageNet) file, the one BasicSR's perceptual loss loads


def vgg_feature_extractor_init(self, *args: Any, **kwargs: Any) -> None:
    """``VGGFeatureExtractor.__init__``, a failed weights download turned into one ``OptionError`` line (and without
    torchvision's deprecation warnings about basicsr's ``pretrained=`` argument)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', category=UserWarning,
                                    message=r"(The parameter 'pretrained'|Arguments other than a weight enum)")
            _ORIGINALS['vgg_init'](self, *args, **kwargs)
    except OSError as err:  # urllib's URLError, socket and timeout errors
        hub = os.path.join(torch.hub.get_dir(), 'checkpoints', VGG_WEIGHTS)
        raise OptionError(f'train.perceptual_opt: the perceptual loss needs torchvision\'s VGG19 weights, which could '
                          f'not be downloaded ({getattr(err, "reason", err)}); put {VGG_WEIGHTS} at '
                          f'experiments/pretrained_models/{VGG_WEIGHTS} or {hub}, or remove train.perceptual_opt'
                          ) from None


def apply() -> None:
    """Install the fixes above into basicsr's modules (idempotent)."""
    if _ORIGINALS:
        return
    from basicsr.archs.vgg_arch import VGGFeatureExtractor
    from basicsr.models.base_model import BaseModel

    train, test, dist_util, options = (importlib.import_module(f'basicsr.{name}')
                                       for name in ('train', 'test', 'utils.dist_util', 'utils.options'))
    _ORIGINALS.update(init_dist=dist_util.init_dist, model_to_device=BaseModel.model_to_device,
                      parse_options=options.parse_options, update_learning_rate=BaseModel.update_learning_rate,
                      vgg_init=VGGFeatureExtractor.__init__, make_exp_dirs=train.make_exp_dirs)
    train.make_exp_dirs = test.make_exp_dirs = make_exp_dirs
    train.load_resume_state = load_resume_state
    train.EnlargedSampler = resume.ResumableSampler
    dist_util.init_dist = options.init_dist = init_dist
    train.parse_options = test.parse_options = parse_options
    BaseModel.model_to_device = model_to_device
    BaseModel.save_network = save_network
    BaseModel.save_training_state = save_training_state
    BaseModel.update_learning_rate = update_learning_rate
    VGGFeatureExtractor.__init__ = vgg_feature_extractor_init
    ema.install()
    fused_validation.install()
    realesrgan.install()
