"""Open any LIPT checkpoint we know: fused (``save_model``, ``.pth`` or ``.safetensors``), our BasicSR training
checkpoint (``net_g_<iter>.pth``, config inferred from the key names), or one of the authors' reference code."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from lipt_arch.archs import LIPT, reparameterize
from lipt_arch.errors import CheckpointError

from .files import check_weights, load_weights, read_checkpoint, unwrap_state_dict
from .lipt_format import infer_lipt_config, model_from_checkpoint
from .official import official_model

# LIPT options that leave no trace in the weights; a BasicSR experiment's option file records them
UNRECORDED_OPTIONS = ('window_size', 'img_range', 'rgb_mean', 'img_residual')

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

    @property
    def assumed_options(self) -> set[str]:
        """Names of the options in ``assumed`` (its entries are ``name=value``)."""
        return {entry.split('=', 1)[0] for entry in self.assumed}


def count_parameters(model: nn.Module) -> int:
    """Number of learnable scalars (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def load_any(path: str | os.PathLike | Mapping[str, Any], upscale: int | None = None, window_size: int | None = None,
             source: str | None = None) -> LoadedModel:
    """Open ``path`` (any kind in :data:`KINDS`; or such a checkpoint already in memory, named ``source`` in errors),
    check ``upscale`` / ``window_size`` when given, and fuse.

    Every kind passes :func:`~lipt_arch.checkpoints.files.check_weights` before a network is built. Raises
    :class:`~lipt_arch.errors.CheckpointError` with a one-line message naming the file.
    """
    in_memory = isinstance(path, Mapping)
    source = source or ('state dict' if in_memory else os.fspath(path))
    raw = path if in_memory else read_checkpoint(source)
    options: dict[str, Any] = {}
    if isinstance(raw, Mapping) and isinstance(raw.get('config'), Mapping):
        model, kind = model_from_checkpoint(raw, source), 'fused'
        _check(source, model.config, upscale, window_size)
    else:
        state = unwrap_state_dict(raw, source)
        if 'head.weight' in state:
            options = {} if in_memory else experiment_options(source)
            model, kind = _load_training(state, source, upscale, window_size, options), 'training'
        elif 'head.0.weight' in state:
            model, kind = official_model(state, source, upscale, window_size), 'official'
        else:
            raise CheckpointError(f'{source}: not a LIPT checkpoint: neither head.weight (lipt_arch) nor head.0.weight '
                                  "(the authors' code) is in it")
    assumed = []
    if kind != 'fused' and window_size is None and 'window_size' not in options:
        assumed.append(f"window_size={model.config['window_size']}")
    if kind == 'training' and model.config['upscale'] == 1 and 'img_residual' not in options:
        assumed.append('img_residual=False')  # the authors' code has no image residual: nothing to assume there
    stored_fused, stored_parameters = bool(model.config['deploy']), count_parameters(model)
    fused = model if stored_fused else reparameterize(model)
    return LoadedModel(fused.eval(), kind, stored_fused, stored_parameters, assumed)


def experiment_options(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The options of :data:`UNRECORDED_OPTIONS` that the BasicSR experiment of ``checkpoint`` set for its LIPT.

    BasicSR keeps ``experiments/<name>/models/net_g_<iter>.pth`` next to a copy of the option file it was trained
    with (``experiments/<name>/<options>.yml``); ``network_g`` there says what the weights cannot. Empty when the
    checkpoint is not in such a folder or no option file there has a LIPT ``network_g``. Raises
    :class:`CheckpointError` when the option files there disagree.
    """
    models = Path(checkpoint).resolve().parent
    if models.name != 'models':
        return {}
    found: dict[Path, dict[str, Any]] = {}
    for option_file in sorted(models.parent.glob('*.yml')):
        try:
            network = (yaml.safe_load(option_file.read_text(encoding='utf-8')) or {}).get('network_g')
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            continue  # not a BasicSR option file
        if isinstance(network, Mapping) and str(network.get('type', '')).startswith('LIPT'):
            found[option_file] = {k: network[k] for k in UNRECORDED_OPTIONS if k in network}
    if len({repr(sorted(v.items())) for v in found.values()}) > 1:
        names = ', '.join(path.name for path in found)
        raise CheckpointError(f'{checkpoint}: the option files of its experiment ({names} in {models.parent}) set '
                              f'different LIPT options ({", ".join(UNRECORDED_OPTIONS)}); keep the one it was '
                              'trained with')
    return next(iter(found.values()), {})


def _check(source: str, config: Mapping[str, Any], upscale: int | None, window_size: int | None) -> None:
    if upscale is not None and upscale != config['upscale']:
        raise CheckpointError(f"{source}: scale mismatch: asked for x{upscale}, but the model is x{config['upscale']}")
    if window_size is not None and window_size != config['window_size']:
        raise CheckpointError(f"{source}: window mismatch: asked for {window_size}, but the model was built with "
                              f"{config['window_size']}")


def _load_training(state: dict, source: str, upscale: int | None, window_size: int | None,
                   options: Mapping[str, Any]) -> LIPT:
    """A LIPT for our training checkpoint ``state``: shape from the tensors, ``options`` (from the experiment's
    option file) for what they do not record; ``window_size``, when given, must agree with them."""
    if window_size is not None and options.get('window_size', window_size) != window_size:
        raise CheckpointError(f"{source}: window mismatch: asked for {window_size}, but its experiment's option file "
                              f"says window_size {options['window_size']}")
    try:
        overrides = {k: v for k, v in options.items() if k != 'window_size'}
        config = infer_lipt_config(state, upscale, window_size or options.get('window_size'), **overrides)
    except (CheckpointError, ValueError, TypeError) as err:
        raise CheckpointError(f'{source}: {err}') from None
    target = f'the LIPT inferred from them ({config})'
    check_weights(source, state, config, target)  # before LIPT(**config): the key names may claim a huge network
    try:
        model = LIPT(**config)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f'{source}: {err}') from None
    load_weights(model, state, source, target)
    return model.eval()
