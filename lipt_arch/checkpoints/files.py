"""Checkpoint files: safe reading (``torch.load(weights_only=True)`` or safetensors), atomic writing, the state dict
inside common wrappers, and loading a state dict into a network with one-line errors that name the file."""
from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lipt_arch.errors import CheckpointError

PathOrState = str | os.PathLike | Mapping[str, Any]
SAFETENSORS_CONFIG_KEY = 'lipt_config'
FORMATS = ('pth', 'safetensors')
WRAPPER_KEYS = ('params_ema', 'params', 'model_state_dict', 'state_dict', 'model')  # tried in this order
DDP_PREFIX = 'module.'


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
    from safetensors import SafetensorError, safe_open  # optional dependency, imported when a file needs it

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


def checkpoint_format(path: str | os.PathLike, format: str | None = None) -> str:
    """``format`` if given (``'pth'`` or ``'safetensors'``), else ``'safetensors'`` for a ``.safetensors`` path and
    ``'pth'`` otherwise."""
    format = format or ('safetensors' if os.fspath(path).lower().endswith('.safetensors') else 'pth')
    if format not in FORMATS:
        raise ValueError(f"checkpoint format must be 'pth' or 'safetensors', got {format!r}")
    return format


def write_checkpoint(path: str | os.PathLike, state: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                     format: str | None = None) -> None:
    """Write ``{'params': state, 'config': config}`` as ``.pth`` or safetensors (config as JSON in the metadata,
    key ``lipt_config``), atomically (:func:`atomic_write`)."""
    if checkpoint_format(path, format) == 'safetensors':
        from safetensors.torch import save_file  # optional dependency

        metadata = {'format': 'pt', SAFETENSORS_CONFIG_KEY: json.dumps(dict(config))}
        atomic_write(path, lambda tmp: save_file(dict(state), tmp, metadata=metadata))
    else:
        atomic_save({'params': dict(state), 'config': dict(config)}, path)


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


def strip_ddp_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with DataParallel's / DistributedDataParallel's ``module.`` key prefix removed."""
    return {(k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k): v for k, v in state.items()}


def unwrap_state_dict(checkpoint: Any, source: str = 'checkpoint',
                      keys: Sequence[str] = WRAPPER_KEYS) -> dict[str, torch.Tensor]:
    """The tensor dict under the first of ``keys`` the checkpoint has (else the checkpoint itself), with a
    DataParallel ``module.`` prefix removed; :class:`CheckpointError` naming ``source`` when it holds none."""
    state = checkpoint
    for key in keys:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        where = f' under {"/".join(map(repr, keys))}' if keys and tuple(keys) != WRAPPER_KEYS else ''
        raise CheckpointError(f'{source}: expected a state dict of tensors{where}, got {type(checkpoint).__name__}')
    return strip_ddp_prefix(state)


def as_state_dict(checkpoint: PathOrState) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, source name)`` from a path or an in-memory checkpoint."""
    if isinstance(checkpoint, Mapping):
        return unwrap_state_dict(checkpoint, 'state dict'), 'state dict'
    source = os.fspath(checkpoint)
    return unwrap_state_dict(read_checkpoint(source), source), source


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


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], source: str, target: str,
                 strict: bool = True, hint: str = '') -> None:
    """``net.load_state_dict(state)``; a state that does not fit raises :class:`CheckpointError`
    ``'<source>: weights do not fit <target>: <what differs><hint>'``.

    ``strict=False`` loads what fits and skips tensors whose name or shape the network does not have.
    """
    if not strict:
        own = net.state_dict()
        state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
    problem = state_dict_mismatch(net, state) if strict else ''
    if problem:
        raise CheckpointError(f'{source}: weights do not fit {target}: {problem}{hint}')
    net.load_state_dict(state, strict=strict)
