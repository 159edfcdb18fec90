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
"""
from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler

_live: weakref.ReferenceType | None = None  # the training sampler of this process
_pending: dict[str, Any] | None = None  # what load_resume_state read, until the sampler takes it


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
    sampler = _live() if _live else None
    if sampler is not None:
        sampler.batches_done += 1


def resume_point(epoch: int) -> dict[str, Any] | None:
    """What a training state saved now needs for an exact resume (``None`` without a live sampler)."""
    sampler = _live() if _live else None
    if sampler is None or sampler.epoch != epoch:
        return None
    return {'epoch': epoch, 'batches': sampler.batches_done, 'rng': get_rng_state()}


def expect_resume(opt: dict, state: dict) -> None:
    """Hand the ``resume_point`` of a training state to the sampler ``train_pipeline`` builds next."""
    global _pending
    point = state.get('resume_point')
    if not isinstance(point, dict):
        _pending = None
        return
    train = opt['datasets']['train']
    per_rank = train['batch_size_per_gpu'] * (1 if opt.get('dist') else max(opt.get('num_gpu', 0), 1))
    _pending = {'epoch': point['epoch'], 'batches': point['batches'], 'skip': point['batches'] * per_rank,
                'rng': point['rng'] if opt.get('world_size', 1) == 1 else None}


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
