"""Our checkpoint format: fused LIPT weights plus their constructor keywords (``save_model`` / ``load_model``), and
config inference for state dicts with our key names (BasicSR training checkpoints ``net_g_<iter>.pth``)."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from lipt_arch.archs import LIPT, PRESETS, reparameterize
from lipt_arch.archs.lipt_arch import SCALES
from lipt_arch.errors import CheckpointError

from .files import PathOrState, check_weights, load_weights, read_checkpoint, unwrap_state_dict, write_checkpoint

_OUR_LAYER_KEY = re.compile(r'^body\.(\d+)\.layers\.(\d+)\.attn\.proj_in\.weight$')
DEFAULT_WINDOW = 8  # LIPT's default window, assumed for weights that match no preset


def save_model(model: torch.nn.Module, path: str | os.PathLike, fuse: bool = True, format: str | None = None,
               inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``{'params': state dict, 'config': constructor keywords}`` so :func:`load_model` needs no YAML.

    With ``fuse`` (default) the fused network is saved (``config['deploy']`` True). ``format`` ``'safetensors'``
    (default for a path ending in ``.safetensors``, else ``'pth'``) stores the config as JSON in the metadata (key
    ``lipt_config``).
    Written atomically (temporary file, then rename), so an interruption never leaves a truncated file under ``path``;
    the file gets the mode the umask gives new files. ``inputs``: files the model was read from; ``path`` being one
    of them (same path or a hard link) raises :class:`CheckpointError` before anything is written.
    """
    net = reparameterize(model) if fuse else model
    config = getattr(net, 'config', None)
    if not isinstance(config, dict):
        raise TypeError(f'save_model needs a LIPT (with .config), got {type(model).__name__}')
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_checkpoint(path, state, config, format, inputs)


def load_model(checkpoint: PathOrState, device: torch.device | str = 'cpu') -> torch.nn.Module:
    """Rebuild a LIPT (eval mode) from a checkpoint written by :func:`save_model` (``params`` + ``config``; ``.pth``
    or ``.safetensors``).

    The file and its tensors pass :func:`~lipt_arch.checkpoints.files.check_weights` (integrity, floating point,
    finite, config against the tensor shapes) before the network is built; :class:`CheckpointError` otherwise.
    """
    source = 'state dict' if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    raw = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(source)
    return model_from_checkpoint(raw, source).to(device)


def model_from_checkpoint(raw: Any, source: str) -> LIPT:
    """:func:`load_model` of a checkpoint already read from ``source`` (named in the errors); on CPU, eval mode."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get('config'), Mapping):
        raise CheckpointError(f'{source}: no LIPT config in this checkpoint (expected keys "params" and "config"; '
                              'for a BasicSR training checkpoint use lipt convert, for the authors\' code '
                              'lipt_arch.load_official)')
    config = dict(raw['config'])
    if isinstance(config.get('rgb_mean'), list):
        config['rgb_mean'] = tuple(config['rgb_mean'])
    state = unwrap_state_dict(raw, source)
    check_weights(source, state, config)  # before LIPT(**config): a config may claim a huge network
    try:
        model = LIPT(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{source}: invalid LIPT config {config}: {err}') from None
    load_weights(model, state, source, f'the LIPT config {config}')
    return model.eval()


def tail_scale(tail_channels: int, out_channels: int, upscale: int | None = None) -> int:
    """The scale ``s`` (one of ``SCALES``) whose pixel-shuffle tail has ``out_channels * s**2`` channels; checked
    against ``upscale`` when given. :class:`CheckpointError` when none fits or it differs from ``upscale``."""
    fits = [s for s in SCALES if tail_channels == out_channels * s * s]
    if not fits:
        raise CheckpointError(f'not a LIPT checkpoint: its tail has {tail_channels} channels, which fits no scale of '
                              f'{out_channels}-channel output ({", ".join(map(str, SCALES))})')
    if upscale is not None and upscale != fits[0]:
        raise CheckpointError(f'scale mismatch: asked for upscale={upscale}, but its tail fits scale {fits[0]}')
    return fits[0]


def infer_lipt_config(state: Mapping[str, torch.Tensor], upscale: int | None = None, window_size: int | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """LIPT constructor keywords for a state dict with our key names (e.g. a BasicSR ``net_g_<iter>.pth``).

    Width, depth, sharing, expansion, channels and fused-or-not are read off the tensors; the scale is inferred
    from the tail (``upscale``, when given, is checked against it). ``window_size`` and the non-tensor options
    (``img_range``, ``rgb_mean``, ``img_residual``) leave no trace in the weights: pass them (``overrides``) when
    they differ from the defaults; ``window_size`` defaults to the window of the preset the weights match, else 8.
    """
    if 'head.weight' not in state or 'tail.weight' not in state:
        raise CheckpointError('not a LIPT checkpoint: no head.weight / tail.weight')
    num_feat, num_in_ch = (int(n) for n in state['head.weight'].shape[:2])
    layers: dict[int, set[int]] = {}
    for key in state:
        if m := _OUR_LAYER_KEY.match(key):
            layers.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    depth = len(layers.get(0, ()))
    if not layers or set(layers) != set(range(len(layers))) or any(v != set(range(depth)) for v in layers.values()):
        raise CheckpointError('not a LIPT checkpoint: no consistent body.<i>.layers.<j>.attn')
    deploy = 'body.0.layers.0.hrm_a.conv0.weight' in state
    conv0 = state.get('body.0.layers.0.hrm_a.conv0.' + ('weight' if deploy else 'conv3x3.weight'))
    if conv0 is None:
        raise CheckpointError('not a LIPT checkpoint: no body.0.layers.0.hrm_a.conv0 weights')
    num_out_ch = int(overrides.pop('num_out_ch', num_in_ch))
    scale = tail_scale(int(state['tail.weight'].shape[0]), num_out_ch, upscale)
    config = dict(upscale=scale, num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                  num_block=len(layers), shared_depth=depth - 1, exp_ratio=int(conv0.shape[0]) // num_feat,
                  deploy=deploy)
    config['window_size'] = window_size or matching_window(config)
    config.update(overrides)
    return config


def matching_window(config: Mapping[str, Any]) -> int:
    """The window of the preset whose width, depth and sharing ``config`` has at its scale; 8 if none matches."""
    name = matching_preset({**config, 'window_size': None})
    return PRESETS[name]['window_size'] if name else DEFAULT_WINDOW


def matching_preset(config: Mapping[str, Any]) -> str | None:
    """The name of the preset (``lipt_arch.PRESETS``) ``config`` equals at its scale (window ignored when None)."""
    for name, preset in PRESETS.items():
        blocks = preset['num_block'].get(config.get('upscale'))
        if (config.get('num_feat') == preset['num_feat'] and config.get('num_block') == blocks
                and config.get('shared_depth') == preset['shared_depth'] and config.get('exp_ratio', 1) == 1
                and config.get('window_size') in (None, preset['window_size'])):
            return name
    return None
