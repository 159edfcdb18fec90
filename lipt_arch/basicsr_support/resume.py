"""Exact resume for BasicSR's ``train_pipeline``: a resumed run sees the same batches and random crops / flips as an
uninterrupted one.

Stock BasicSR 1.4.2 resumes at the *start* of the saved epoch (the batches of that epoch already trained on are seen
again) and with the random generators re-seeded from ``manual_seed`` (different crops and flips). Ours:

- :class:`ResumableSampler` replaces ``basicsr.train.EnlargedSampler``; it counts the batches trained in the current
  epoch (one per ``update_learning_rate`` call, which ``train_pipeline`` makes once per iteration).
- The training state (``<iter>.state``) also stores ``resume_point``: that count and the Python / NumPy / torch CPU
  generator states, as plain ints and tensors (readable with ``weights_only=True``).
- On resume, the first epoch's index list skips the samples already used and the generators are restored right
  before the first sample is loaded.

Exact for one process with ``num_worker_per_gpu: 0`` and no ``prefetch_mode``. With data-loading workers or
prefetching the batch order is still exact, but crops and flips after a resume differ (BasicSR re-seeds every worker
at every epoch with ``worker_init_fn``; a prefetcher loads the next batch before the save); with
several processes each rank resumes its own position, but the generators (saved on rank 0 only) are not restored.

The option file's scheduler settings apply on resume (:func:`apply_scheduler_options`): stock BasicSR loads the saved
scheduler whole, so a finished CosineAnnealingRestartLR run extended with ``--force_yml train:total_iter=N
train:scheduler:periods=[N]`` keeps the old periods and fails after them. :func:`current_iteration` is the
iteration in progress (for the ``stopped by SIGTERM at iteration N`` line of ``basicsr train``).
"""
from __future__ import annotations

import collections
import contextlib
import random
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler

from lipt_arch.errors import OptionError

_live: weakref.ReferenceType | None = None  # the training sampler of this process
_pending: dict[str, Any] | None = None  # what load_resume_state read, until the sampler takes it
_iteration = 0  # the training iteration in progress (0: none yet)
# the keywords of BasicSR's schedulers that come from train.scheduler, with their constructors' defaults
SCHEDULER_OPTIONS = {
    'MultiStepRestartLR': {'milestones': None, 'gamma': 0.1, 'restarts': (0,), 'restart_weights': (1,)},
    'CosineAnnealingRestartLR': {'periods': None, 'restart_weights': (1,), 'eta_min': 0},
}


class ResumableSampler(EnlargedSampler):
    """``EnlargedSampler`` that can start its first epoch after the samples a resumed run already trained on."""

    def __init__(self, dataset, num_replicas: int, rank: int, ratio: int = 1) -> None:
        global _live, _pending
        super().__init__(dataset, num_replicas, rank, ratio)
        self.batches_done = 0
        self._resume, _pending = _pending, None
        _live = weakref.ref(self)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.batches_done = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        resume, self._resume = self._resume, None
        if resume is None or resume['epoch'] != self.epoch:
            return iter(indices)
        self.batches_done = resume['batches']
        if resume.get('rng') is not None:
            set_rng_state(resume['rng'])
        return iter(indices[resume['skip']:])


def count_batch() -> None:
    """Note one trained batch (called once per iteration)."""
    global _iteration
    _iteration += 1
    sampler = _live() if _live else None
    if sampler is not None:
        sampler.batches_done += 1


def resume_point(epoch: int) -> dict[str, Any] | None:
    """What a training state saved now needs for an exact resume (``None`` without a live sampler)."""
    sampler = _live() if _live else None
    if sampler is None or sampler.epoch != epoch:
        return None
    return {'epoch': epoch, 'batches': sampler.batches_done, 'rng': get_rng_state()}


def current_iteration() -> int:
    """The training iteration in progress in this process (0 before the first)."""
    return _iteration


def expect_resume(opt: dict, state: dict) -> None:
    """Prepare what ``train_pipeline`` builds next for a training state (``{}``: a fresh start): hand its
    ``resume_point`` to the sampler, count iterations from its ``iter``, and put the option file's scheduler settings
    into its saved schedulers (:func:`apply_scheduler_options`)."""
    global _pending, _iteration
    _iteration = int(state.get('iter', 0))
    apply_scheduler_options(opt, state)
    point = state.get('resume_point')
    if not isinstance(point, dict):
        _pending = None
        return
    train = opt['datasets']['train']
    per_rank = train['batch_size_per_gpu'] * (1 if opt.get('dist') else max(opt.get('num_gpu', 0), 1))
    _pending = {'epoch': point['epoch'], 'batches': point['batches'], 'skip': point['batches'] * per_rank,
                'rng': point['rng'] if opt.get('world_size', 1) == 1 else None}


def apply_scheduler_options(opt: Mapping[str, Any], state: dict) -> None:
    """Overwrite the settings of each saved scheduler in ``state['schedulers']`` (periods, milestones, restart
    weights, ...) with those of ``opt['train']['scheduler']``, keeping its position (``last_epoch``) and learning
    rates: the option file wins on resume, so a finished run can be extended with a longer schedule. A saved
    scheduler of another type than the option file's is refused (:class:`OptionError`)."""
    options = dict((opt.get('train') or {}).get('scheduler') or {})
    kind = options.pop('type', None)
    kind = 'MultiStepRestartLR' if kind == 'MultiStepLR' else kind
    if kind not in SCHEDULER_OPTIONS:
        return
    for saved in state.get('schedulers') or []:
        saved_kind = next((name for name, keys in SCHEDULER_OPTIONS.items() if next(iter(keys)) in saved), None)
        if saved_kind is None:
            continue
        if saved_kind != kind:
            raise OptionError(f'train.scheduler.type: {kind}, but {opt["path"].get("resume_state")} was trained with '
                              f'{saved_kind}; resume with its scheduler type (or start a new experiment)')
        for key, default in SCHEDULER_OPTIONS[kind].items():
            value = options.get(key, default)
            saved[key] = collections.Counter(value) if key == 'milestones' else value
        if kind == 'CosineAnnealingRestartLR':
            periods = list(saved['periods'])
            saved['cumulative_period'] = [sum(periods[:i + 1]) for i in range(len(periods))]


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU generator states as ints, tuples and tensors (weights-only loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {'python': random.getstate(), 'torch': torch.get_rng_state(),
            'numpy': (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation, checkpoint export) without advancing the training's random generators."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
