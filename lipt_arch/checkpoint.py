"""Safe checkpoint reading and writing: ``torch.load(weights_only=True)`` or safetensors, with errors that name the
file; fused LIPT checkpoints that carry their config; config inference for our BasicSR training checkpoints."""
from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

PathOrState = str | os.PathLike | Mapping[str, Any]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or not what the caller expects."""


SAFETENSORS_CONFIG_KEY = 'lipt_config'


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load ``path`` on CPU with the weights-only unpickler; never executes code stored in the file.

    A safetensors file (recognised by its content) gives ``{'params': tensors}`` plus ``'config'`` when its metadata
    holds one.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file (0 bytes)')
    if is_safetensors(path):
        return read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch's note on old pickle protocols suggests weights_only=False: never
            warnings.filterwarnings('ignore', message='.*pickle protocol', category=UserWarning)
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f'{path}: refused to load: it holds more than plain tensors and containers, and '
                              f'lipt_arch never unpickles code ({first})') from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}') from None


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file (8-byte header length, then a JSON object)."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{'


def read_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """``{'params': tensors}`` of a safetensors file, with ``'config'`` decoded from its ``lipt_config`` metadata."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            params = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f'{path}: not a readable safetensors file (truncated or corrupt?): {err}') from None
    out: dict[str, Any] = {'params': params}
    if SAFETENSORS_CONFIG_KEY in metadata:
        try:
            out['config'] = json.loads(metadata[SAFETENSORS_CONFIG_KEY])
        except json.JSONDecodeError as err:
            raise CheckpointError(f'{path}: unreadable LIPT config in the safetensors metadata: {err}') from None
    return out


def unwrap_state_dict(checkpoint: Any, source: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """The tensor dict inside common wrappers (``params_ema``, ``params``, ``model_state_dict``, ``state_dict``),
    with a DataParallel ``module.`` prefix removed."""
    state = checkpoint
    for key in ('params_ema', 'params', 'model_state_dict', 'state_dict', 'model'):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{source}: expected a state dict of tensors, got {type(checkpoint).__name__}')
    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return dict(state)


def as_state_dict(checkpoint: PathOrState) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, source name)`` from a path or an in-memory checkpoint."""
    if isinstance(checkpoint, Mapping):
        return unwrap_state_dict(checkpoint, 'state dict'), 'state dict'
    source = os.fspath(checkpoint)
    return unwrap_state_dict(read_checkpoint(source), source), source


def save_model(model: torch.nn.Module, path: str | os.PathLike, fuse: bool = True, format: str | None = None) -> None:
    """Write ``{'params': state dict, 'config': constructor keywords}`` so :func:`load_model` needs no YAML.

    With ``fuse`` (default) the fused network is saved (``config['deploy']`` True). ``format`` ``'safetensors'``
    (default for a path ending in ``.safetensors``, else ``'pth'``) stores the config as JSON in the metadata (key
    ``lipt_config``).
    Written atomically (temporary file, then rename), so an interruption never leaves a truncated file under ``path``.
    """
    from lipt_arch.archs import reparameterize

    net = reparameterize(model) if fuse else model
    config = getattr(net, 'config', None)
    if not isinstance(config, dict):
        raise TypeError(f'save_model needs a LIPT (with .config), got {type(model).__name__}')
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    format = format or ('safetensors' if os.fspath(path).lower().endswith('.safetensors') else 'pth')
    if format not in ('pth', 'safetensors'):
        raise ValueError(f"save_model format must be 'pth' or 'safetensors', got {format!r}")
    if format == 'safetensors':
        from safetensors.torch import save_file

        metadata = {'format': 'pt', SAFETENSORS_CONFIG_KEY: json.dumps(dict(config))}
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))
    else:
        atomic_save({'params': state, 'config': dict(config)}, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` beside ``path``, then rename the result over ``path``."""
    path = os.fspath(path)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(checkpoint: PathOrState, device: torch.device | str = 'cpu') -> torch.nn.Module:
    """Rebuild a LIPT (eval mode) from a checkpoint written by :func:`save_model` (``params`` + ``config``; ``.pth``
    or ``.safetensors``)."""
    from lipt_arch.archs import LIPT

    source = 'state dict' if isinstance(checkpoint, Mapping) else os.fspath(checkpoint)
    raw = checkpoint if isinstance(checkpoint, Mapping) else read_checkpoint(source)
    if not isinstance(raw, Mapping) or not isinstance(raw.get('config'), Mapping):
        raise CheckpointError(f'{source}: no LIPT config in this checkpoint (expected keys "params" and "config"; '
                              'for a BasicSR training checkpoint use lipt convert, for the authors\' code '
                              'lipt_arch.load_official)')
    config = dict(raw['config'])
    if 'rgb_mean' in config:
        config['rgb_mean'] = tuple(config['rgb_mean'])
    try:
        model = LIPT(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{source}: invalid LIPT config {config}: {err}') from None
    state = unwrap_state_dict(raw, source)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f'{source}: weights do not fit the LIPT config {config}: {err}') from None
    return model.to(device).eval()


_OUR_LAYER_KEY = re.compile(r'^body\.(\d+)\.layers\.(\d+)\.attn\.proj_in\.weight$')


def infer_lipt_config(state: Mapping[str, torch.Tensor], upscale: int | None = None, window_size: int | None = None,
                      **overrides: Any) -> dict[str, Any]:
    """LIPT constructor keywords for a state dict with our key names (e.g. a BasicSR ``net_g_<iter>.pth``).

    Width, depth, sharing, expansion, channels and fused-or-not are read off the tensors; the scale is inferred
    from the tail (``upscale``, when given, is checked against it). ``window_size`` and the non-tensor options
    (``img_range``, ``rgb_mean``, ``img_residual``) leave no trace in the weights: pass them (``overrides``) when
    they differ from the defaults; ``window_size`` defaults to the window of the preset the weights match, else 8.
    """
    from lipt_arch.archs.lipt_arch import SCALES

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
    tail_out = int(state['tail.weight'].shape[0])
    fits = [s for s in SCALES if tail_out == num_out_ch * s * s]
    if not fits:
        raise CheckpointError(f'not a LIPT checkpoint: its tail has {tail_out} channels, which fits no scale of '
                              f'{num_out_ch}-channel output ({", ".join(map(str, SCALES))})')
    if upscale is not None and upscale != fits[0]:
        raise CheckpointError(f'scale mismatch: asked for upscale={upscale}, but its tail fits scale {fits[0]}')
    config = dict(upscale=fits[0], num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                  num_block=len(layers), shared_depth=depth - 1, exp_ratio=int(conv0.shape[0]) // num_feat,
                  deploy=deploy)
    config['window_size'] = window_size or matching_window(config)
    config.update(overrides)
    return config


def matching_window(config: Mapping[str, Any]) -> int:
    """The window of the preset whose width, depth and sharing ``config`` has at its scale; 8 if none matches."""
    name = matching_preset({**config, 'window_size': None})
    from lipt_arch.archs import PRESETS

    return PRESETS[name]['window_size'] if name else 8


def matching_preset(config: Mapping[str, Any]) -> str | None:
    """The name of the preset (``lipt_arch.PRESETS``) ``config`` equals at its scale (window ignored when None)."""
    from lipt_arch.archs import PRESETS

    for name, preset in PRESETS.items():
        blocks = preset['num_block'].get(config.get('upscale'))
        if (config.get('num_feat') == preset['num_feat'] and config.get('num_block') == blocks
                and config.get('shared_depth') == preset['shared_depth'] and config.get('exp_ratio', 1) == 1
                and config.get('window_size') in (None, preset['window_size'])):
            return name
    return None

