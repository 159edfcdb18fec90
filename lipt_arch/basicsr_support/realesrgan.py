"""RealESRNetModel and RealESRGANModel on the device the options give, CPU included.

basicsr 1.4.2 builds the JPEG simulator (``DiffJPEG``), the USM sharpener and the training-pair queue of both models
with ``.cuda()``, so without an NVIDIA GPU they stop with "Found no NVIDIA driver" before the first step.
:func:`install` replaces their ``__init__`` (the same three attributes, built on ``self.device``) and lets
``_dequeue_and_enqueue`` find its queue already allocated on the batch's device (the rest of BasicSR's queue logic
is unchanged). A ``queue_size`` that is not a multiple of the batch size is refused in one line naming both options.
On a CPU the JPEG simulator returns non-contiguous tensors, on which BasicSR's ``filter2D`` (blur and sinc filters,
``.view`` of its input) fails; both models' ``filter2D`` get a contiguous input.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from lipt_arch.errors import OptionError

_ORIGINAL: dict[str, Callable] = {}


def _init_on_device(cls: type) -> Callable:
    def init(self, opt: dict) -> None:
        from basicsr.utils import DiffJPEG, USMSharp

        super(cls, self).__init__(opt)
        self.jpeger = DiffJPEG(differentiable=False).to(self.device)  # simulates JPEG compression artifacts
        self.usm_sharpener = USMSharp().to(self.device)  # unsharp masking of the GT
        self.queue_size = opt.get('queue_size', 180)

    init.__doc__ = f'{cls.__name__}.__init__ with its JPEG simulator and USM sharpener on ``self.device``.'
    return init


def _queue_on_device(original: Callable) -> Callable:
    @torch.no_grad()
    def _dequeue_and_enqueue(self) -> None:
        """BasicSR's training-pair pool, its queue allocated on the batch's device."""
        if not hasattr(self, 'queue_lr'):
            batch = self.lq.shape[0]
            if self.queue_size % batch:
                raise OptionError(f'queue_size: {self.queue_size} is not a multiple of the batch size {batch} '
                                  '(datasets.train.batch_size_per_gpu)')
            self.queue_lr = self.lq.new_zeros((self.queue_size, *self.lq.shape[1:]))
            self.queue_gt = self.gt.new_zeros((self.queue_size, *self.gt.shape[1:]))
            self.queue_ptr = 0
        original(self)

    return _dequeue_and_enqueue


def _filter2d_contiguous(original: Callable) -> Callable:
    def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """BasicSR's ``filter2D`` (B, C, H, W) x kernel, on a contiguous copy of ``img`` when it is not one."""
        return original(img.contiguous(), kernel)

    return filter2d


def install() -> None:
    """Patch both model classes (idempotent)."""
    if _ORIGINAL:
        return
    from basicsr.models import realesrgan_model, realesrnet_model

    for module in (realesrnet_model, realesrgan_model):
        module.filter2D = _filter2d_contiguous(module.filter2D)
    for cls in (realesrnet_model.RealESRNetModel, realesrgan_model.RealESRGANModel):
        _ORIGINAL[cls.__name__] = cls._dequeue_and_enqueue
        cls.__init__ = _init_on_device(cls)
        cls._dequeue_and_enqueue = _queue_on_device(cls._dequeue_and_enqueue)
