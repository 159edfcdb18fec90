"""LIPTModel: BasicSR's SRModel that validates and exports the *fused* LIPT and keeps BatchNorm statistics in EMA.

Option keys of ours (all optional):

- ``val.compare_bicubic`` (bool): also score MATLAB-style bicubic upsampling of the LQ on the same images and log
  it next to LIPT's; after the final validation of a training run, save ``bicubic | LIPT | GT`` PNGs in the
  visualization folder and print a one-line summary.
- ``train.amp`` / ``train.channels_last`` / ``train.compile`` / ``train.compile_mode`` (and the older
  ``train.compile_rep_convs``): faster training steps, see :mod:`lipt_arch.models.training_speed`.
- ``val.dtype`` ('fp32' (default), 'bf16', 'fp16', 'int8'): validate the fused network in this inference form
  (:func:`lipt_arch.optimize`); ``val.calibration`` (folder of training images) is needed for int8.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.matlab_functions import imresize
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn

from lipt_arch.basicsr_support.resume import preserved_rng
from lipt_arch.checkpoints import check_weights, load_weights, read_checkpoint, unwrap_state_dict
from lipt_arch.deploy.optimized import optimize
from lipt_arch.errors import CheckpointError, NonFiniteLossError, OptionError
from lipt_arch.image_io import write_image
from lipt_arch.models import training_speed
from lipt_arch.visualization import side_by_side


@MODEL_REGISTRY.register()
class LIPTModel(SRModel):
    """SRModel for LIPT: faster training steps, validation in any inference form, bicubic comparison, clear errors.

    What every BasicSR model type gets with a LIPT (:mod:`lipt_arch.basicsr_support`), LIPTModel has too: validation
    and ``basicsr test`` on the fused network (the EMA one when EMA is on; the training networks untouched), an EMA
    that averages BatchNorm statistics, and ``models/net_g_deploy_<iter>.pth`` / ``net_g_deploy_latest.pth``
    (``{'params': fused state dict, 'config': constructor keywords}``, read by :func:`lipt_arch.load_model`).
    Its own additions:

    - ``train.amp`` / ``channels_last`` / ``compile`` and ``val.dtype`` / ``val.compare_bicubic`` (module docstring);
    - a NaN / infinite loss or gradient stops training with :class:`NonFiniteLossError` before the optimizer step,
      so no NaN weights are ever saved; saving and validation leave the training's random generators untouched
      (an exact resume, :mod:`lipt_arch.basicsr_support.resume`).
    """

    _bicubic: dict[str, float] | None = None  # summed bicubic metrics, when val.compare_bicubic
    _num_scored = 0
    _final = False  # set by save(current_iter=-1): the next validation is the last of the run
    _lq_paths: list[str] | None = None
    _dataset_name = ''
    _consecutive_skips = 0  # fp16 steps in a row skipped by the gradient scaler
    speed = training_speed.SpeedOptions()  # train.amp / channels_last / compile, read by init_training_settings
    reads_speed_options = True  # lipt_arch.validation refuses those options for models that would ignore them
    train_forward: nn.Module | None = None  # what the training forward calls: net_g, or torch.compile(net_g)
    grad_scaler = torch.amp.GradScaler('cpu', enabled=False)  # a pass-through; an enabled one under amp: fp16

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
        train = self.opt['train']
        self.speed = training_speed.speed_options(train)
        logger = get_root_logger()
        if train.get('compile_rep_convs') and 'compile' not in train:
            logger.info('train.compile_rep_convs: true is read as train.compile: rep_convs')
        try:
            self.train_forward = training_speed.prepare_training_network(
                self.net_g, self.get_bare_model(self.net_g), self.speed)
        except RuntimeError as err:
            key = 'compile_rep_convs' if 'compile' not in train else 'compile'
            raise OptionError(f'train.{key}: {err}') from None
        self.grad_scaler = training_speed.grad_scaler(self.speed, self.device)
        logger.info(f'Training steps: {self.speed.describe()}; validation: fused network, float32.')

    # networks ------------------------------------------------------------------------------------------------
    def model_to_device(self, net: nn.Module) -> nn.Module:
        """BasicSR's, with ``train.channels_last`` applied first, so a DDP wrapper sees the final parameter layout."""
        if self.opt.get('is_train') and (self.opt.get('train') or {}).get('channels_last') is True:
            net = net.to(memory_format=torch.channels_last)
        return super().model_to_device(net)

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
        keys = () if param_key is None else (param_key, 'params')  # BasicSR falls back to 'params' too
        source = f'{option}{load_path}'
        state = unwrap_state_dict(checkpoint, source, keys)
        check_weights(source, state)  # floating point and finite; the shapes are load_weights' check
        left = load_weights(net, state, source, f'network_g {dict(self.opt["network_g"])}', strict, hint)
        get_root_logger().info(f'Loaded {net.__class__.__name__} from {load_path} [{param_key}].')
        if left:
            total = len(net.state_dict())
            get_root_logger().info(f'strict_load_g false: {total - len(left)} of {total} tensors loaded; left at '
                                   f'their initial values: {", ".join(left)}')

    # training ------------------------------------------------------------------------------------------------
    def optimize_parameters(self, current_iter: int) -> None:
        """SRModel's step (pixel + perceptual loss, Adam step, EMA), refusing a non-finite loss or gradient; forward
        and losses under ``train.amp`` autocast, the fp16 loss scaled (an overflowing step is skipped and logged)."""
        self.optimizer_g.zero_grad()
        speed, scaler = self.speed, self.grad_scaler
        lq, gt = self.lq, self.gt
        if speed.channels_last:
            lq, gt = training_speed.to_channels_last(lq), training_speed.to_channels_last(gt)
        with training_speed.autocast(speed, lq.device):  # the model's device (feed_data put the batch there)
            self.output = (self.net_g if self.train_forward is None else self.train_forward)(lq)
            losses: dict[str, torch.Tensor] = {}
            if self.cri_pix:
                losses['l_pix'] = self.cri_pix(self.output, gt)
            if self.cri_perceptual:
                l_percep, l_style = self.cri_perceptual(self.output, gt)
                losses.update({k: v for k, v in (('l_percep', l_percep), ('l_style', l_style)) if v is not None})
            l_total = sum(losses.values())
        self._check_finite(current_iter, 'loss', l_total.detach(), losses)
        scaler.scale(l_total).backward()
        scaler.unscale_(self.optimizer_g)  # no-op unless fp16: the check below sees the true gradients
        grads = [p.grad.detach().abs().sum() for p in self.net_g.parameters() if p.grad is not None]
        if grads and scaler.is_enabled():
            self._count_skip(current_iter, scaler, self._all_finite(torch.stack(grads).sum()), losses)
        elif grads:
            self._check_finite(current_iter, 'gradient', torch.stack(grads).sum(), losses)
        scaler.step(self.optimizer_g)  # fp16: skipped when a gradient is inf/NaN
        scaler.update()
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every rank (all-reduced under DDP, so every rank decides alike)."""
        finite = torch.isfinite(value).float()
        if self.opt.get('dist') and torch.distributed.is_initialized():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        return bool(finite)

    def _check_finite(self, current_iter: int, what: str, value: torch.Tensor, losses: dict) -> None:
        if self._all_finite(value):  # every rank stops together
            return
        self._stop(current_iter, f'non-finite {what}', losses)

    def _stop(self, current_iter: int, what: str, losses: dict) -> None:
        parts = ', '.join(f'{k} {float(v.detach()):g}' for k, v in losses.items())
        hint = '; under train.amp: fp16 the forward pass may overflow, try bf16' if self.speed.amp == 'fp16' else ''
        message = (f'iteration {current_iter}: {what} ({parts}); stopped before the optimizer step, '
                   f'weights of iteration {current_iter - 1} untouched; the last saved checkpoint is kept{hint}')
        get_root_logger().error(message)
        raise NonFiniteLossError(message)

    def _count_skip(self, current_iter: int, scaler: torch.amp.GradScaler, finite: bool, losses: dict) -> None:
        """fp16: an inf/NaN gradient is the scaler's to handle (it skips the step and halves the scale): log it, and
        stop after ``MAX_CONSECUTIVE_SKIPS`` skips in a row (the gradients are broken, not just overflowing)."""
        if finite:
            self._consecutive_skips = 0
            return
        self._consecutive_skips += 1
        if self._consecutive_skips >= training_speed.MAX_CONSECUTIVE_SKIPS:
            self._stop(current_iter, f'non-finite fp16 gradients in {self._consecutive_skips} steps in a row',
                       losses)
        scale = scaler.get_scale()
        get_root_logger().warning(f'iteration {current_iter}: fp16 gradients overflowed at loss scale {scale:g}; '
                                  f'optimizer step skipped, scale now {scale * scaler.get_backoff_factor():g}')

    def extra_training_state(self) -> dict:
        """What the training state holds beyond BasicSR's: ``grad_scaler`` (its state dict) under ``amp: fp16``."""
        return {'grad_scaler': self.grad_scaler.state_dict()} if self.grad_scaler.is_enabled() else {}

    def resume_training(self, resume_state: dict) -> None:
        """BasicSR's resume (optimizers, schedulers), plus the fp16 gradient scaler's state when both have one."""
        super().resume_training(resume_state)
        saved, scaler = resume_state.get('grad_scaler'), self.grad_scaler
        if scaler.is_enabled() and saved:
            scaler.load_state_dict(saved)
        elif scaler.is_enabled():
            get_root_logger().info('Resume: the training state has no gradient scaler (trained without amp: fp16); '
                                   'the scaler starts afresh.')
        elif saved:
            get_root_logger().info('Resume: the training state\'s fp16 gradient scaler is not used '
                                   f'(train.amp is {self.speed.amp or "false"} now).')

    # validation ----------------------------------------------------------------------------------------------
    def validation(self, dataloader, current_iter, tb_logger, save_img: bool = False) -> None:
        """BasicSR's validation (dist or not) on the fused network (:mod:`lipt_arch.basicsr_support.fused_validation`
        swaps it in), scoring bicubic beside it with ``val.compare_bicubic``."""
        self._bicubic = {} if self.opt['val'].get('compare_bicubic') else None
        self._num_scored = 0
        self._dataset_name = dataloader.dataset.opt['name']
        try:
            super().validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self._bicubic = None

    def validation_form(self, fused: nn.Module) -> nn.Module:
        """The fused network in the inference form ``val.dtype`` asks for (:func:`lipt_arch.optimize`)."""
        dtype = self.opt['val'].get('dtype', 'fp32')
        if dtype == 'fp32':
            return fused
        return optimize(fused, dtype, self.device, calibration=self.opt['val'].get('calibration'))

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self._lq_paths = data.get('lq_path')

    def test(self) -> None:
        """SRModel's ``test`` (during validation the network is the fused one), plus the bicubic score."""
        super().test()
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
            os.makedirs(folder, exist_ok=True)  # atomic: a failed write keeps an older panel of that name whole
            write_image(os.path.join(folder, f'{name}_bicubic_LIPT_GT.png'), side_by_side(panels))

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
        """BasicSR's checkpoints (with the fused ``net_g_deploy_<iter>.pth``, :mod:`lipt_arch.basicsr_support`)."""
        with preserved_rng():
            super().save(epoch, current_iter)
        if current_iter == -1:  # train_pipeline saves the latest model right before its final validation
            self._final = True


def format_metrics(values: Mapping[str, float]) -> str:
    """``'PSNR 30.12 dB / SSIM 0.9012'`` from ``{'psnr': 30.12, 'ssim': 0.9012}``."""
    parts = []
    for name, value in values.items():
        label = name.upper() if name.lower() in ('psnr', 'ssim') else name
        parts.append(f'{label} {value:.2f} dB' if 'psnr' in name.lower() else f'{label} {value:.4f}')
    return ' / '.join(parts)

