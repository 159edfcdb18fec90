"""Faster LIPTModel training steps: mixed precision, channels-last memory format and ``torch.compile``.

Options under ``train:`` (all optional; the defaults train exactly as before):

- ``amp: bf16 | fp16 | false``: ``torch.autocast`` (on the model's device type, CPU or CUDA) around the forward
  pass and the losses. Parameters, optimizer state and BatchNorm running statistics stay float32; NVSM attention
  logits and softmax run in float32 (:func:`lipt_arch.archs.nvsm_attention.qq_softmax`). ``fp16`` adds a
  ``torch.amp.GradScaler``: a step whose gradients overflow is skipped and logged, the scaler's state goes into the
  training state so a resume stays exact. fp16 also works on a CPU (torch's CPU autocast and scaler); it is fast
  only where the CPU computes fp16 natively (AMX-FP16, AVX512-FP16), elsewhere ``bf16`` is the CPU choice.
- ``channels_last: true | false``: ``net_g`` and each training batch in channels-last memory format.
- ``compile: false | rep_convs | network``: ``rep_convs`` compiles each six-branch conv
  (:func:`lipt_arch.archs.compile_rep_convs`), ``network`` the whole training forward (``torch.compile`` of
  ``net_g``, kept outside ``net_g`` so state dicts, EMA, validation and checkpoints see the plain module).
  ``compile_mode: default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs`` goes to ``torch.compile``.
  ``compile_rep_convs: true`` (older option) means ``compile: rep_convs``.

Validation and the deploy checkpoints always use the fused network in float32.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from lipt_arch.validation import COMPILE_MODES, COMPILE_TARGETS, SpeedOptions, speed_options  # noqa: F401

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
MAX_CONSECUTIVE_SKIPS = 30  # fp16 steps in a row skipped for inf/NaN gradients before training stops (scale / 2^30)


def prepare_training_network(net: nn.Module, bare: nn.Module, options: SpeedOptions) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to ``net`` (``bare``: the same network unwrapped from DDP) in place;
    return the module the training forward calls (``torch.compile(net)`` for ``compile: network``, else ``net``).

    Raises ``RuntimeError`` (message for the option) when compiling on a CPU without a C++ compiler.
    """
    if options.channels_last:
        bare.to(memory_format=torch.channels_last)
    if options.compile == 'rep_convs':
        from lipt_arch.archs import compile_rep_convs

        compile_rep_convs(bare, mode=options.compile_mode)
    elif options.compile == 'network':
        from lipt_arch.archs.hrm import check_cpu_compiler

        check_cpu_compiler(bare, 'compiling the network')
        return torch.compile(net, mode=options.compile_mode)
    return net


def autocast(options: SpeedOptions, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type in the ``amp`` dtype, or a no-op context when ``amp`` is off."""
    if options.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[options.amp])


def grad_scaler(options: SpeedOptions, device: torch.device) -> torch.amp.GradScaler:
    """A ``GradScaler`` for ``device``, enabled for ``amp: fp16`` only (disabled, its calls pass through unchanged)."""
    return torch.amp.GradScaler(device.type, enabled=options.amp == 'fp16')


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D batch (B, C, H, W) in channels-last memory format (same values and shape)."""
    return x.contiguous(memory_format=torch.channels_last)
