"""Safe checkpoint reading: ``torch.load(weights_only=True)`` with errors that name the file."""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch

PathOrState = str | os.PathLike | Mapping[str, Any]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or not what the caller expects."""


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load ``path`` on CPU with the weights-only unpickler; never executes code stored in the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f'{path}: refused to load: it holds more than plain tensors and containers, and '
                              f'lipt_arch never unpickles code ({first})') from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}') from None


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


def save_model(model: torch.nn.Module, path: str | os.PathLike, fuse: bool = True) -> None:
    """Write ``{'params': state dict, 'config': constructor keywords}`` so :func:`load_model` needs no YAML.

    With ``fuse`` (default) the fused network is saved (``config['deploy']`` True). Written atomically
    (temporary file, then rename), so an interruption never leaves a truncated file under ``path``.
    """
    from lipt_arch.archs import reparameterize

    net = reparameterize(model) if fuse else model
    config = getattr(net, 'config', None)
    if not isinstance(config, dict):
        raise TypeError(f'save_model needs a LIPT (with .config), got {type(model).__name__}')
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    atomic_save({'params': state, 'config': dict(config)}, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = os.fspath(path)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(checkpoint: PathOrState, device: torch.device | str = 'cpu') -> torch.nn.Module:
    """Rebuild a LIPT (eval mode) from a checkpoint written by :func:`save_model` (``params`` + ``config``)."""
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
