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
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
COMPILE_TARGETS = ('rep_convs', 'network')
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
MAX_CONSECUTIVE_SKIPS = 30  # fp16 steps in a row skipped for inf/NaN gradients before training stops (scale / 2^30)


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
    from lipt_arch.models.lipt_model import OptionError  # here, not at the top: lipt_model imports this module

    amp = train.get('amp')
    if amp is not None and amp is not False and amp not in AMP_DTYPES:
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
