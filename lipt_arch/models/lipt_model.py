"""LIPTModel: BasicSR's SRModel that validates and exports the *fused* LIPT and keeps BatchNorm statistics in EMA.

Option keys of ours (all optional):

- ``val.compare_bicubic`` (bool): also score MATLAB-style bicubic upsampling of the LQ on the same images and log
  it next to LIPT's; after the final validation of a training run, save ``bicubic | LIPT | GT`` PNGs in the
  visualization folder and print a one-line summary.
- ``val.dtype`` ('fp32' (default), 'bf16', 'fp16', 'int8'): validate the fused network in this inference form
  (:func:`lipt_arch.optimize`); ``val.calibration`` (folder of training images) is needed for int8.
- ``train.compile_rep_convs`` (bool): compile the six-branch convs of ``net_g`` with ``torch.compile`` for
  training (:func:`lipt_arch.archs.compile_rep_convs`; faster steps after a one-off compilation at the first one).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lipt_arch.archs import compile_rep_convs, reparameterize
from lipt_arch.checkpoint import CheckpointError, read_checkpoint, save_model
from lipt_arch.optimized import optimize
from lipt_arch.resume import preserved_rng

BN_STATS = ('running_mean', 'running_var')
SEPARATOR_PX = 4  # white gap between the panels of a side-by-side PNG


class OptionError(ValueError):
    """An option in the YAML names something that does not exist or does not fit."""


class NonFiniteLossError(ArithmeticError):
    """A training loss or gradient is NaN or infinite; raised before the optimizer step changes the weights."""


@torch.no_grad()
def ema_buffers_(net: nn.Module, ema: nn.Module, decay: float) -> None:
    """Update ``ema``'s buffers from ``net``'s: BatchNorm running mean/var are averaged with ``decay`` (like the
    parameters), every other buffer (``num_batches_tracked``, fixed masks) is copied.

    Averaging, not copying: the EMA weights are an average over roughly ``1 / (1 - decay)`` steps, while ``net``'s
    running statistics describe only its latest weights (BN momentum 0.1, about ten steps); averaging the
    statistics over the same horizon as the weights keeps the pair consistent. With ``decay=0`` it is a copy.
    """
    ema_modules = dict(ema.named_modules())
    for name, module in net.named_modules():
        target = ema_modules[name]
        for key, buf in module.named_buffers(recurse=False):
            dst = getattr(target, key)
            if isinstance(module, _BatchNorm) and key in BN_STATS:
                dst.mul_(decay).add_(buf, alpha=1 - decay)
            else:
                dst.copy_(buf)


def state_dict_mismatch(net: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """A short description of how ``state`` differs from ``net.state_dict()`` ('' when it fits)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k} is {tuple(state[k].shape)} in the file but {tuple(own[k].shape)} in the network'
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    if shapes:
        parts.append(f'{len(shapes)} tensors differ in shape (first: {shapes[0]})')
    if missing:
        parts.append(f'{len(missing)} missing (first: {missing[0]})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected (first: {unexpected[0]})')
    return '; '.join(parts)


def side_by_side(images: list[np.ndarray]) -> np.ndarray:
    """Uint8 (H, W, C) or (H, W) images side by side with white gaps, each bottom-padded to the tallest."""
    images = [img[:, :, None] if img.ndim == 2 else img for img in images]
    height = max(img.shape[0] for img in images)
    panels = []
    for i, img in enumerate(images):
        pad = np.full((height - img.shape[0], img.shape[1], img.shape[2]), 255, np.uint8)
        panels.append(np.concatenate([img, pad], axis=0))
        if i < len(images) - 1:
            panels.append(np.full((height, SEPARATOR_PX, img.shape[2]), 255, np.uint8))
    return np.concatenate(panels, axis=1)


@MODEL_REGISTRY.register()
class LIPTModel(SRModel):
    """SRModel for LIPT: fused validation, BatchNorm-aware EMA, deploy checkpoints, clear loading errors.

    - Every validation runs on ``reparameterize(net)`` of the network validation would use (``net_g_ema`` if EMA
      is on, else ``net_g`` unwrapped from DDP / DataParallel); the training networks are not touched.
    - EMA also averages BatchNorm running statistics (:func:`ema_buffers_`).
    - :meth:`save` also writes ``models/net_g_deploy_<iter>.pth`` and ``net_g_deploy_latest.pth``
      (``{'params': fused state dict, 'config': constructor keywords}``, read by :func:`lipt_arch.load_model`).
    - A NaN / infinite loss or gradient stops training with :class:`NonFiniteLossError` before the optimizer step,
      so no NaN weights are ever saved; saving and validation leave the training's random generators untouched
      (an exact resume, :mod:`lipt_arch.resume`).
    """

    _val_net: nn.Module | None = None  # fused copy, alive during one validation
    _bicubic: dict[str, float] | None = None  # summed bicubic metrics, when val.compare_bicubic
    _num_scored = 0
    _final = False  # set by save(current_iter=-1): the next validation is the last of the run
    _lq_paths: list[str] | None = None
    _dataset_name = ''

    def __init__(self, opt: dict) -> None:
        try:
            super().__init__(opt)
        except (TypeError, ValueError, KeyError) as err:
            if hasattr(self, 'net_g'):
                raise
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise OptionError(f"network_g {dict(opt['network_g'])}: {message}") from None

    def init_training_settings(self) -> None:
        super().init_training_settings()
        if self.opt['train'].get('compile_rep_convs'):
            try:
                count = compile_rep_convs(self.get_bare_model(self.net_g))
            except RuntimeError as err:
                raise OptionError(f'train.compile_rep_convs: {err}') from None
            get_root_logger().info(f'torch.compile: {count} six-branch convs of net_g compiled for training.')

    # networks ------------------------------------------------------------------------------------------------
    def validation_network(self) -> nn.Module:
        """The network validation and export use: ``net_g_ema`` if EMA is on, else the bare ``net_g``."""
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    def model_ema(self, decay: float = 0.999) -> None:
        super().model_ema(decay)
        ema_buffers_(self.get_bare_model(self.net_g), self.net_g_ema, decay)

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True, param_key: str = 'params') -> None:
        """BasicSR's ``load_network`` with weights-only reading and one-line errors naming the option and file."""
        option = 'path.pretrain_network_g: ' if load_path == self.opt['path'].get('pretrain_network_g') else ''
        try:
            checkpoint = read_checkpoint(load_path)
        except CheckpointError as err:
            raise CheckpointError(f'{option}{err}') from None
        net = self.get_bare_model(net)
        hint = ''
        file_config = checkpoint.get('config') if isinstance(checkpoint, Mapping) else None
        if isinstance(file_config, Mapping) and isinstance(getattr(net, 'config', None), dict):
            fused = bool(file_config.get('deploy'))
            if fused != bool(net.config.get('deploy')):
                hint = f' (a {"fused" if fused else "training-form"} checkpoint: set network_g deploy: {fused})'
        if isinstance(checkpoint, Mapping) and param_key is not None:
            if param_key not in checkpoint and 'params' in checkpoint:
                param_key = 'params'
            checkpoint = checkpoint.get(param_key, checkpoint)
        if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise CheckpointError(f'{option}{load_path}: no state dict of tensors under {param_key!r}')
        state = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in checkpoint.items()}
        own = net.state_dict()
        if not strict:
            state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
        problem = state_dict_mismatch(net, state) if strict else ''
        if problem:
            raise CheckpointError(f'{option}{load_path}: weights do not fit network_g {dict(self.opt["network_g"])}: '
                                  f'{problem}{hint}')
        net.load_state_dict(state, strict=strict)
        get_root_logger().info(f'Loaded {net.__class__.__name__} from {load_path} [{param_key}].')

    # training ------------------------------------------------------------------------------------------------
    def optimize_parameters(self, current_iter: int) -> None:
        """SRModel's step (pixel + perceptual loss, Adam step, EMA), refusing a non-finite loss or gradient."""
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        losses: dict[str, torch.Tensor] = {}
        if self.cri_pix:
            losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            losses.update({k: v for k, v in (('l_percep', l_percep), ('l_style', l_style)) if v is not None})
        l_total = sum(losses.values())
        self._check_finite(current_iter, 'loss', l_total.detach(), losses)
        l_total.backward()
        grads = [p.grad.detach().abs().sum() for p in self.net_g.parameters() if p.grad is not None]
        if grads:
            self._check_finite(current_iter, 'gradient', torch.stack(grads).sum(), losses)
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _check_finite(self, current_iter: int, what: str, value: torch.Tensor, losses: dict) -> None:
        finite = torch.isfinite(value).float()
        if self.opt.get('dist') and torch.distributed.is_initialized():  # every rank stops together
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if bool(finite):
            return
        parts = ', '.join(f'{k} {float(v.detach()):g}' for k, v in losses.items())
        message = (f'iteration {current_iter}: non-finite {what} ({parts}); stopped before the optimizer step, '
                   f'weights of iteration {current_iter - 1} untouched; the last saved checkpoint is kept')
        get_root_logger().error(message)
        raise NonFiniteLossError(message)

    # validation ----------------------------------------------------------------------------------------------
    def validation(self, dataloader, current_iter, tb_logger, save_img: bool = False) -> None:
        """BasicSR's validation (dist or not), run on a fused copy of :meth:`validation_network`."""
        with preserved_rng():
            self._validation(dataloader, current_iter, tb_logger, save_img)

    def _validation(self, dataloader, current_iter, tb_logger, save_img: bool) -> None:
        self._val_net = reparameterize(self.validation_network())
        dtype = self.opt['val'].get('dtype', 'fp32')
        if dtype != 'fp32':
            self._val_net = optimize(self._val_net, dtype, self.device, calibration=self.opt['val'].get('calibration'))
        self._bicubic = {} if self.opt['val'].get('compare_bicubic') else None
        self._num_scored = 0
        self._dataset_name = dataloader.dataset.opt['name']
        try:
            super().validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._val_net, self._bicubic = None, None

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self._lq_paths = data.get('lq_path')

    def test(self) -> None:
        """Output of the fused network during validation; BasicSR's (unfused) ``test`` otherwise."""
        if self._val_net is None:
            return super().test()
        with torch.no_grad():
            self.output = self._val_net(self.lq)
        if self._bicubic is not None and hasattr(self, 'gt'):
            self._score_bicubic()

    def _score_bicubic(self) -> None:
        """Add this image's bicubic metrics to ``self._bicubic``; on the final validation save the PNG."""
        scale = self.opt.get('scale', 1)
        lq = self.lq.detach().float().cpu()[0].clamp(0, 1)
        bicubic = imresize(lq, scale).clamp(0, 1) if scale != 1 else lq
        data = {'img': tensor2img([bicubic]), 'img2': tensor2img([self.gt.detach().cpu()])}
        for name, metric_opt in (self.opt['val'].get('metrics') or {}).items():
            self._bicubic[name] = self._bicubic.get(name, 0.0) + float(calculate_metric(data, metric_opt))
        self._num_scored += 1
        if self._final or not self.is_train:  # training: visualization/; basicsr test: visualization/<dataset>/
            name = (os.path.splitext(os.path.basename(self._lq_paths[0]))[0] if self._lq_paths
                    else f'image{self._num_scored:04d}')
            folder = os.path.join(self.opt['path']['visualization'], '' if self.is_train else self._dataset_name)
            panels = [data['img'], tensor2img([self.output.detach().cpu()]), data['img2']]
            imwrite(side_by_side(panels), os.path.join(folder, f'{name}_bicubic_LIPT_GT.png'))

    def _log_validation_metric_values(self, current_iter, dataset_name: str, tb_logger) -> None:
        super()._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        if not self._bicubic or not self._num_scored:
            return
        bicubic = {name: total / self._num_scored for name, total in self._bicubic.items()}
        get_root_logger().info(f'Validation {dataset_name}, bicubic\n' + ''.join(
            f'\t # {name}: {value:.4f}\n' for name, value in bicubic.items()))
        if tb_logger:
            for name, value in bicubic.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}_bicubic', value, current_iter)
        if self._final or not self.is_train:
            line = (f'Fused LIPT: {format_metrics(self.metric_results)}   bicubic: {format_metrics(bicubic)}   '
                    f'({dataset_name}, {self._num_scored} images)')
            get_root_logger().info(line)
            print(line, flush=True)

    # checkpoints ---------------------------------------------------------------------------------------------
    def save(self, epoch: int, current_iter: int) -> None:
        """BasicSR's checkpoints plus the fused ``net_g_deploy_<iter>.pth`` and ``net_g_deploy_latest.pth``."""
        with preserved_rng():
            super().save(epoch, current_iter)
            self._save_deploy(current_iter)
        if current_iter == -1:  # train_pipeline saves the latest model right before its final validation
            self._final = True

    @master_only
    def _save_deploy(self, current_iter: int) -> None:
        net = self.validation_network()
        if not isinstance(getattr(net, 'config', None), dict):
            get_root_logger().warning(f'{net.__class__.__name__} has no .config: no deploy checkpoint written.')
            return
        fused = reparameterize(net)
        folder = self.opt['path']['models']
        if current_iter != -1:
            save_model(fused, os.path.join(folder, f'net_g_deploy_{current_iter}.pth'), fuse=False)
        save_model(fused, os.path.join(folder, 'net_g_deploy_latest.pth'), fuse=False)


def format_metrics(values: Mapping[str, float]) -> str:
    """``'PSNR 30.12 dB / SSIM 0.9012'`` from ``{'psnr': 30.12, 'ssim': 0.9012}``."""
    parts = []
    for name, value in values.items():
        label = name.upper() if name.lower() in ('psnr', 'ssim') else name
        parts.append(f'{label} {value:.2f} dB' if 'psnr' in name.lower() else f'{label} {value:.4f}')
    return ' / '.join(parts)

