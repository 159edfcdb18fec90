"""The fused LIPT in every BasicSR model type: validation, ``basicsr test`` and deploy checkpoints.

:func:`install` (run by ``import lipt_arch``) puts these into BasicSR's model classes, so SRModel, SwinIRModel,
SRGANModel, ESRGANModel, RealESRNetModel, RealESRGANModel and LIPTModel behave alike:

- ``BaseModel.validation`` (the entry of training-time validation and of ``basicsr test``): while it runs, the network
  the model's ``test()`` uses (``net_g_ema`` when EMA is on, else ``net_g``) is replaced by its fused copy
  (:func:`lipt_arch.reparameterize`), when it holds LIPT parts that fusion changes (:func:`lipt_arch.archs.is_fusable`).
  The training networks are put back untouched afterwards and the training's random generators are left as they
  were (an exact resume). Networks without LIPT parts are validated by BasicSR exactly as before.
  ``val.save_triplets: true`` also writes ``LQ | SR | GT`` panels (LQ enlarged by pixel repetition) to
  ``visualization/<dataset>/<image>_<iter>_LQ_SR_GT.png`` at every validation.
- :func:`save_deploy` (called by ``BaseModel.save_network`` for ``net_g``, :mod:`.fixes`): next to BasicSR's
  ``net_g_<iter>.pth``, the fused ``net_g_deploy_<iter>.pth`` (and ``_latest``) of the EMA network when there is one,
  else of ``net_g``, in :func:`lipt_arch.save_model`'s format; written for a bare LIPT only (its constructor keywords
  go into the file).
- ``SwinIRModel.test`` pads the input to a multiple of ``network_g.window_size``; LIPT pads itself, so without that
  key a LIPT is run unpadded (SRModel's test), and any other network is refused naming the key.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch import nn

from lipt_arch.archs import is_fusable, reparameterize
from lipt_arch.errors import OptionError

from .resume import preserved_rng

_ORIGINAL: dict[str, Callable] = {}


def validation_attribute(model: Any) -> str:
    """The attribute holding the network BasicSR's ``test()`` runs: ``'net_g_ema'`` when EMA is on, else ``'net_g'``."""
    return 'net_g_ema' if hasattr(model, 'net_g_ema') else 'net_g'


def validation_network(model: Any) -> nn.Module:
    """The network validation and export use: ``net_g_ema`` if EMA is on, else ``net_g`` unwrapped (DDP)."""
    return model.get_bare_model(getattr(model, validation_attribute(model)))


@contextlib.contextmanager
def fused_for_validation(model: Any) -> Iterator[nn.Module | None]:
    """Swap the validation network of ``model`` for its fused copy for the duration of the block; yields the network
    validation runs (``None`` when the network is left in place: nothing to fuse, no other form asked for).

    A model may ask for another form of the fused network with ``validation_form(fused) -> nn.Module`` (LIPTModel:
    ``val.dtype``); it applies to a network that is fused already too."""
    from basicsr.utils import get_root_logger

    attribute = validation_attribute(model)
    original = getattr(model, attribute)
    bare = model.get_bare_model(original)
    fusable, refine = is_fusable(bare), getattr(model, 'validation_form', None)
    start = time.perf_counter()
    with preserved_rng():  # building the fused convs draws initial weights from the global generator
        fused = reparameterize(bare) if fusable else bare
        if refine is not None:
            fused = refine(fused)
    if fused is bare:  # nothing to fuse and no other form asked for: BasicSR validates the network as it is
        yield None
        return
    if fusable:
        get_root_logger().info(f'Validation runs the fused {type(bare).__name__} ({attribute}; fused in '
                               f'{time.perf_counter() - start:.2f} s); the training networks are untouched.')
    setattr(model, attribute, fused)
    try:
        yield fused
    finally:
        setattr(model, attribute, original)


def validation(self, dataloader, current_iter: int, tb_logger, save_img: bool = False) -> None:
    """``BaseModel.validation`` on the fused network (:func:`fused_for_validation`), with ``val.save_triplets``.

    Stock ``train_pipeline`` passes its final validation ``total_iter`` plus the epochs left in its loop (``Best: ...
    @ 6502 iter`` for a 6500-iteration run); that validation is of the network of ``total_iter``, and is logged so."""
    total = (self.opt.get('train') or {}).get('total_iter') if self.is_train else None
    if isinstance(total, int) and current_iter > total:
        current_iter = total
    with preserved_rng(), fused_for_validation(self), _triplets(self, dataloader, current_iter):
        _ORIGINAL['validation'](self, dataloader, current_iter, tb_logger, save_img)


@contextlib.contextmanager
def _triplets(model: Any, dataloader, current_iter: int) -> Iterator[None]:
    """With ``val.save_triplets: true``: after each validation image, an ``LQ | SR | GT`` panel PNG."""
    if not (model.opt.get('val') or {}).get('save_triplets'):
        yield
        return
    from basicsr.utils import tensor2img

    from lipt_arch.image_io import write_image
    from lipt_arch.visualization import side_by_side

    dataset = dataloader.dataset.opt['name']
    folder = os.path.join(model.opt['path']['visualization'], dataset)
    names: list[str] = []
    feed_data, get_current_visuals = model.feed_data, model.get_current_visuals

    def feed(data: dict) -> None:
        path = data.get('lq_path') or data.get('gt_path') or [f'image{len(names):04d}']
        names.append(os.path.splitext(os.path.basename(path[0]))[0])
        feed_data(data)

    def visuals() -> dict:
        out = get_current_visuals()
        if 'gt' in out:
            sr = tensor2img([out['result']])
            gt = tensor2img([out['gt']])
            lq = tensor2img([out['lq']])
            factor = max(1, sr.shape[0] // max(1, lq.shape[0]))
            lq = np.repeat(np.repeat(lq, factor, axis=0), factor, axis=1)
            os.makedirs(folder, exist_ok=True)  # atomic: a failed write keeps an older panel of that name whole
            write_image(os.path.join(folder, f'{names[-1]}_{current_iter}_LQ_SR_GT.png'), side_by_side([lq, sr, gt]))
        return out

    model.feed_data, model.get_current_visuals = feed, visuals
    try:
        yield
    finally:
        del model.feed_data, model.get_current_visuals  # the class's methods again


def save_deploy(model: Any, nets: list[nn.Module], keys: list[str], current_iter: int) -> None:
    """Write ``models/net_g_deploy_<iter>.pth`` and ``net_g_deploy_latest.pth`` (fused, with config) of the network
    saved under ``params_ema`` (else ``params``), when it is a LIPT; ``current_iter == -1`` writes ``latest`` only."""
    from lipt_arch.checkpoints import save_model

    net = model.get_bare_model(nets[keys.index('params_ema')] if 'params_ema' in keys else nets[0])
    config = getattr(net, 'config', None)
    if not (isinstance(config, dict) and 'deploy' in config):
        return
    with preserved_rng():
        fused = reparameterize(net)
        folder = model.opt['path']['models']
        if current_iter != -1:
            save_model(fused, os.path.join(folder, f'net_g_deploy_{current_iter}.pth'), fuse=False)
        save_model(fused, os.path.join(folder, 'net_g_deploy_latest.pth'), fuse=False)


def swinir_test(self) -> None:
    """``SwinIRModel.test``: BasicSR's (padding to ``network_g.window_size``) when that key is given; without it, a
    LIPT runs unpadded (it pads itself) and any other network is refused in one line."""
    if 'window_size' in self.opt['network_g']:
        return _ORIGINAL['swinir_test'](self)
    net = validation_network(self)
    if not isinstance(getattr(net, 'config', None), dict):
        raise OptionError(f'network_g.window_size: SwinIRModel pads validation inputs to a multiple of it; set it to '
                          f'the window size of {type(net).__name__}')
    from basicsr.models.sr_model import SRModel

    SRModel.test(self)


def install() -> None:
    """Install :func:`validation` and :func:`swinir_test` into BasicSR's model classes (idempotent)."""
    if _ORIGINAL:
        return
    from basicsr.models.base_model import BaseModel
    from basicsr.models.swinir_model import SwinIRModel

    _ORIGINAL.update(validation=BaseModel.validation, swinir_test=SwinIRModel.test)
    BaseModel.validation = validation
    SwinIRModel.test = swinir_test

