"""Open any LIPT checkpoint we know: fused (``save_model``, ``.pth`` or ``.safetensors``), our BasicSR training
checkpoint (``net_g_<iter>.pth``, config inferred from the key names), or one of the authors' reference code."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .archs import LIPT, reparameterize
from .checkpoint import (
    CheckpointError,
    infer_lipt_config,
    load_model,
    matching_window,
    read_checkpoint,
    unwrap_state_dict,
)
from .official import infer_config as infer_official_config
from .official import load_official

KINDS = {'fused': 'lipt_arch checkpoint with config', 'training': 'lipt_arch training checkpoint (BasicSR)',
         'official': "authors' reference-code checkpoint"}


@dataclass
class LoadedModel:
    """A checkpoint opened for inference: the fused model plus what the file said (or did not say)."""

    model: LIPT                      # fused (deploy form), eval mode, on CPU
    kind: str                        # a key of KINDS
    stored_fused: bool               # the file held the fused form already
    stored_parameters: int           # parameters of the network as stored (training form: before fusion)
    assumed: list[str] = field(default_factory=list)  # options not recorded in the file, taken as defaults

    @property
    def config(self) -> dict[str, Any]:
        return self.model.config


def count_parameters(model: nn.Module) -> int:
    """Number of learnable scalars (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def load_any(path: str | os.PathLike | Mapping[str, Any], upscale: int | None = None, window_size: int | None = None
             ) -> LoadedModel:
    """Open ``path`` (any kind in :data:`KINDS`; or such a checkpoint already in memory), check ``upscale`` /
    ``window_size`` when given, and fuse.

    Raises :class:`~lipt_arch.checkpoint.CheckpointError` with a one-line message naming the file.
    """
    in_memory = isinstance(path, Mapping)
    source = 'state dict' if in_memory else os.fspath(path)
    raw = path if in_memory else read_checkpoint(source)
    assumed: list[str] = []
    if isinstance(raw, Mapping) and isinstance(raw.get('config'), Mapping):
        model, kind = load_model(raw if in_memory else source), 'fused'
        _check(source, model.config, upscale, window_size)
    else:
        state = unwrap_state_dict(raw, source)
        try:
            if 'head.weight' in state:
                model, kind = _load_training(state, upscale, window_size, assumed), 'training'
            elif 'head.0.weight' in state:
                model, kind = _load_official(state, upscale, window_size, assumed), 'official'
            else:
                raise CheckpointError('not a LIPT checkpoint: neither head.weight (lipt_arch) nor head.0.weight '
                                      "(the authors' code) is in it")
        except CheckpointError as err:
            raise CheckpointError(f'{source}: {err}') from None
    stored_fused, stored_parameters = bool(model.config['deploy']), count_parameters(model)
    fused = model if stored_fused else reparameterize(model)
    return LoadedModel(fused.eval(), kind, stored_fused, stored_parameters, assumed)


def _check(source: str, config: Mapping[str, Any], upscale: int | None, window_size: int | None) -> None:
    if upscale is not None and upscale != config['upscale']:
        raise CheckpointError(f"{source}: scale mismatch: asked for x{upscale}, but the model is x{config['upscale']}")
    if window_size is not None and window_size != config['window_size']:
        raise CheckpointError(f"{source}: window mismatch: asked for {window_size}, but the model was built with "
                              f"{config['window_size']}")


def _load_training(state: dict, upscale: int | None, window_size: int | None, assumed: list[str]) -> LIPT:
    config = infer_lipt_config(state, upscale, window_size)
    if window_size is None:
        assumed.append(f"window_size={config['window_size']}")
    model = LIPT(**config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f'weights do not fit the LIPT inferred from them ({config}): {first}') from None
    return model.eval()


def _load_official(state: dict, upscale: int | None, window_size: int | None, assumed: list[str]) -> LIPT:
    if upscale is None:  # the tail has num_in_ch * scale**2 channels
        channels, tail = state['head.0.weight'].shape[1], state['tail.0.weight'].shape[0]
        upscale = next((s for s in (1, 2, 3, 4) if tail == channels * s * s), None)
        if upscale is None:
            raise CheckpointError(f'not a LIPT checkpoint: its tail has {tail} channels, which fits no scale')
    config = infer_official_config(state, upscale, window_size or 8)
    if window_size is None:
        window_size = matching_window(config)
        assumed.append(f'window_size={window_size}')
    return load_official(state, upscale, window_size)
