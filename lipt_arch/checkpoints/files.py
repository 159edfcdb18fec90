"""Checkpoint files: safe reading (``torch.load(weights_only=True)`` or safetensors), the loading gate (archive
integrity, dtypes, finiteness, config against tensor shapes), atomic writing, the state dict inside common wrappers,
and loading a state dict into a network with one-line errors that name the file."""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from lipt_arch.errors import CheckpointError
from lipt_arch.image_io import atomic_write, check_not_input, write_bytes

PathOrState = str | os.PathLike | Mapping[str, Any]
SAFETENSORS_CONFIG_KEY = 'lipt_config'
FORMATS = ('pth', 'safetensors')
WRAPPER_KEYS = ('params_ema', 'params', 'model_state_dict', 'state_dict', 'model')  # tried in this order
DDP_PREFIX = 'module.'
ZIP_MAGIC = b'PK\x03\x04'  # torch.save's (default) zip archive; older files are bare pickles
INTEGER_BUFFERS = ('num_batches_tracked',)  # BatchNorm's step counter: the only integer tensor a LIPT state holds
# Bytes per element of each safetensors dtype (https://github.com/huggingface/safetensors, format description).
SAFETENSORS_DTYPES = {'BOOL': 1, 'U8': 1, 'I8': 1, 'F8_E5M2': 1, 'F8_E4M3': 1, 'F8_E8M0': 1, 'I16': 2, 'U16': 2,
                      'F16': 2, 'BF16': 2, 'I32': 4, 'U32': 4, 'F32': 4, 'I64': 8, 'U64': 8, 'F64': 8, 'C64': 8}
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_LAYER_KEY = re.compile(r'^body\.0\.layers\.(\d+)\.(.+)$')


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load ``path`` on CPU with the weights-only unpickler; never executes code stored in the file.

    The file's integrity is checked first (:func:`verify_archive`). A safetensors file (recognised by its content or
    its ``.safetensors`` name) gives ``{'params': tensors}`` plus ``'config'`` when its metadata holds one.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file (0 bytes)')
    if _safetensors_by_content_or_name(path):
        return read_safetensors(path)
    verify_archive(path)
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


def _starts_with(path: str, magic: bytes) -> bool:
    with open(path, 'rb') as f:
        return f.read(len(magic)) == magic


def _safetensors_by_content_or_name(path: str) -> bool:
    """Safetensors by its content, or by its name unless it is a zip (a torch.save file named .safetensors)."""
    return is_safetensors(path) or (path.lower().endswith('.safetensors') and not _starts_with(path, ZIP_MAGIC))


def verify_archive(path: str | os.PathLike) -> None:
    """Refuse a damaged checkpoint file (:class:`CheckpointError`) before anything in it is unpickled.

    A zip archive (what ``torch.save`` writes) must open and every entry must match its CRC-32; a safetensors file
    must have a consistent header (:func:`safetensors_header`). A legacy ``torch.save`` pickle (not a zip) carries no
    checksum: it is read as it is (weights-only), and the tensor checks of :func:`check_weights` still apply.
    """
    path = os.fspath(path)
    if _safetensors_by_content_or_name(path):
        safetensors_header(path)
    elif _starts_with(path, ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
            raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or corrupt?): damaged zip '
                                  f'archive ({err})') from None
        if bad is not None:
            raise CheckpointError(f'{path}: corrupt checkpoint: archive entry {bad} fails its CRC-32 check (the file '
                                  'changed after it was written; copy or download it again)')


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file: valid JSON within the file, known dtypes,
    and tensor offsets that lie inside the data, tile it without gaps or overlaps and match each tensor's shape and
    dtype (a relabelled dtype of another element size fails here). :class:`CheckpointError` naming what is wrong."""
    path = os.fspath(path)
    prefix = f'{path}: not a readable safetensors file (truncated or corrupt?)'
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f'{prefix}: {size} bytes, shorter than the 8-byte header length')
        length = int.from_bytes(head, 'little')
        if length > size - 8 or length > SAFETENSORS_MAX_HEADER:
            raise CheckpointError(f'{prefix}: its header length ({length} bytes) runs past the end of the file '
                                  f'({size} bytes)')
        raw = f.read(length)
    try:
        header = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f'{prefix}: invalid JSON header ({err})') from None
    if not isinstance(header, dict):
        raise CheckpointError(f'{prefix}: invalid JSON header (a {type(header).__name__}, not an object)')
    data_size, spans = size - 8 - length, []
    for key, info in header.items():
        if key == '__metadata__':
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError(f'{prefix}: __metadata__ is not a map of strings')
            continue
        if not isinstance(info, dict):
            raise CheckpointError(f'{prefix}: tensor {key}: header entry is not an object')
        dtype, shape, offsets = info.get('dtype'), info.get('shape'), info.get('data_offsets')
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f'{prefix}: tensor {key}: unknown dtype {dtype!r}')
        if not _ints(shape) or not _ints(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise CheckpointError(f'{prefix}: tensor {key}: invalid shape {shape!r} or data_offsets {offsets!r}')
        if offsets[1] > data_size:
            raise CheckpointError(f'{prefix}: tensor {key}: data_offsets {offsets} run past the end of the tensor '
                                  f'data ({data_size} bytes)')
        needed = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != needed:
            raise CheckpointError(f'{prefix}: tensor {key}: {dtype} of shape {shape} needs {needed} bytes, but its '
                                  f'data_offsets span {offsets[1] - offsets[0]} (dtype or shape changed in the header)')
        spans.append((offsets[0], offsets[1], key))
    end = 0
    for begin, stop, key in sorted(spans):
        if begin != end:
            raise CheckpointError(f'{prefix}: tensor {key}: data_offsets {[begin, stop]} overlap or leave a gap '
                                  f'after byte {end}')
        end = stop
    if end != data_size:
        raise CheckpointError(f'{prefix}: {data_size - end} bytes after the last tensor\'s data')
    return header


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def read_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """``{'params': tensors}`` of a safetensors file, with ``'config'`` decoded from its ``lipt_config`` metadata."""
    from safetensors import SafetensorError, safe_open  # optional dependency, imported when a file needs it

    path = os.fspath(path)
    safetensors_header(path)
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
                     format: str | None = None, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``{'params': state, 'config': config}`` as ``.pth`` or safetensors (config as JSON in the metadata,
    key ``lipt_config``), atomically (:func:`lipt_arch.image_io.atomic_write`, as :func:`atomic_save`; never over one
    of ``inputs``: :func:`check_distinct`)."""
    if checkpoint_format(path, format) == 'safetensors':
        from safetensors.torch import save  # optional dependency

        metadata = {'format': 'pt', SAFETENSORS_CONFIG_KEY: json.dumps(dict(config))}
        check_distinct(path, *inputs)
        # serialized in memory: save_file replaces the temporary file by one of its own with mode 0600
        write_bytes(path, save(dict(state), metadata=metadata))
    else:
        atomic_save({'params': dict(state), 'config': dict(config)}, path, inputs)


def atomic_save(obj: Any, path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """``torch.save`` through :func:`lipt_arch.image_io.atomic_write`: a temporary file beside ``path``
    (``<name>.tmp<pid>.<hex>``, which ``--auto_resume`` never takes for a state), fsynced and renamed over it; a
    failure leaves no partial file and an existing ``path`` as it was; the mode follows the umask. ``path`` being the
    same file as one of ``inputs`` raises :class:`CheckpointError` before anything is written (:func:`check_distinct`).
    """
    check_distinct(path, *inputs)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def check_distinct(output: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """:func:`lipt_arch.image_io.check_not_input` for checkpoints: :class:`CheckpointError` (its one line) when
    ``output`` exists and is the same file as one of ``inputs`` (same device and inode: the same path, a symbolic
    link or a hard link)."""
    try:
        check_not_input(output, inputs)
    except shutil.SameFileError as err:
        raise CheckpointError(str(err)) from None


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


def check_weights(source: str, state: Mapping[str, Any], config: Mapping[str, Any] | None = None,
                  target: str | None = None, attention_bn: bool = False) -> None:
    """The loading gate, run on every state dict before a network is built from it or loaded with it:
    :func:`check_tensors` (floating point, finite), then, with ``config`` (LIPT constructor keywords),
    :func:`check_shapes`. Raises :class:`CheckpointError` naming ``source`` and the first bad tensor or key.

    Files reach it through :func:`read_checkpoint`, which checks their integrity (:func:`verify_archive`) first.
    """
    check_tensors(source, state)
    if config is not None:
        check_shapes(source, state, config, target, attention_bn)


def check_tensors(source: str, state: Mapping[str, Any]) -> None:
    """Every tensor of ``state`` floating point (integers only in BatchNorm's ``num_batches_tracked``) and finite."""
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.rsplit('.', 1)[-1] in INTEGER_BUFFERS:
            if value.is_complex() or value.dtype == torch.bool:
                raise CheckpointError(f'{source}: tensor {key} has dtype {_dtype_name(value.dtype)}; a BatchNorm '
                                      'counter is an integer')
            continue
        if not value.is_floating_point():
            raise CheckpointError(f'{source}: tensor {key} has dtype {_dtype_name(value.dtype)}; weights must be '
                                  'floating point (damaged, relabelled or not a network\'s weights)')
        if value.device.type == 'meta':
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            nan = int(torch.isnan(value).sum())
            inf = value.numel() - int(finite.sum()) - nan
            found = ' and '.join(f'{n} {what}' for n, what in ((nan, 'NaN'), (inf, 'infinite')) if n)
            raise CheckpointError(f'{source}: tensor {key} holds {found} value(s) of {value.numel()}; refusing '
                                  'non-finite weights (a diverged training run or a damaged file)')


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace('torch.', '')


def check_shapes(source: str, state: Mapping[str, Any], config: Mapping[str, Any], target: str | None = None,
                 attention_bn: bool = False) -> None:
    """``state`` has exactly the keys and shapes of ``LIPT(**config)`` (:func:`expected_shapes`; nothing is
    allocated). ``attention_bn``: each attention also keeps its projection BatchNorm (the authors' converted form).
    :class:`CheckpointError` ``'<source>: weights do not fit <target>: ...'``, or ``invalid LIPT config``."""
    try:
        layout = _layout(_hashable(config))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{source}: invalid LIPT config {dict(config)}: {err}') from None
    target = target or f'the LIPT config {dict(config)}'
    count = layout.count + (layout.attention_count if attention_bn else 0)
    if count > len(state):  # e.g. a config claiming far more blocks than the file holds: never list them all
        first = next(k for k, _ in layout.shapes(attention_bn) if k not in state)
        raise CheckpointError(f'{source}: weights do not fit {target}: the config makes {count:,} tensors, the file '
                              f'holds {len(state):,} (first missing: {first})')
    problem = shape_mismatch(dict(layout.shapes(attention_bn)), {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise CheckpointError(f'{source}: weights do not fit {target}: {problem}')


def expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``LIPT(**config).state_dict()``, computed without allocating the network (:class:`_Layout`).
    ``TypeError`` / ``ValueError`` for an invalid config, as ``LIPT`` raises them."""
    return dict(_layout(_hashable(config)).shapes())


def _hashable(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    items = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in config.items()))
    try:
        hash(items)
    except TypeError as err:
        raise TypeError(f'unexpected value ({err})') from None
    return items


class _Layout:
    """The state-dict layout of a LIPT: the tensors outside the body, those of a block's first layer (it computes
    the attention) and those of each later layer (they reuse it); every block is alike."""

    def __init__(self, outside: dict[str, tuple[int, ...]], first: dict[str, tuple[int, ...]],
                 later: dict[str, tuple[int, ...]], blocks: int, depth: int) -> None:
        self.outside, self.first, self.later, self.blocks, self.depth = outside, first, later, blocks, depth
        self.count = len(outside) + blocks * (len(first) + depth * len(later))
        self.attention_count = 5 * blocks * (1 + depth)  # the projection BatchNorm of the authors' converted form

    def shapes(self, attention_bn: bool = False) -> Iterable[tuple[str, tuple[int, ...]]]:
        """``(key, shape)`` in state-dict order, generated (a config may claim a huge network)."""
        yield from self.outside.items()
        for block in range(self.blocks):
            for j in range(1 + self.depth):
                for rest, shape in (self.first if j == 0 else self.later).items():
                    yield f'body.{block}.layers.{j}.{rest}', shape
                    if attention_bn and rest == 'attn.proj_in.weight':
                        bn = f'body.{block}.layers.{j}.attn.proj_bn.'
                        yield from ((bn + leaf, (shape[0],)) for leaf in ('weight', 'bias', 'running_mean',
                                                                          'running_var'))
                        yield bn + 'num_batches_tracked', ()


@lru_cache(maxsize=32)
def _layout(items: tuple[tuple[str, Any], ...]) -> _Layout:
    """One block of at most two layers built on the ``meta`` device (nothing allocated; a fraction of a second
    whatever the width), its layout repeated to the config's depth."""
    from lipt_arch.archs import LIPT  # the network package imports nothing from here; kept local all the same

    config = dict(items)
    blocks, depth = config.get('num_block', 6), config.get('shared_depth', 1)
    counts = all(isinstance(n, int) and not isinstance(n, bool) for n in (blocks, depth)) and blocks >= 1 and depth >= 0
    small = {**config, 'num_block': 1, 'shared_depth': min(depth, 1)} if counts else config  # invalid: LIPT says why
    with torch.device('meta'):
        net = LIPT(**small)
    outside: dict[str, tuple[int, ...]] = {}
    layers: tuple[dict, dict] = ({}, {})
    for key, value in net.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            outside[key] = tuple(value.shape)
        else:
            layers[int(match.group(1))][match.group(2)] = tuple(value.shape)
    return _Layout(outside, layers[0], layers[1], blocks, depth)


def shape_mismatch(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    """A short description of how the key -> shape map ``found`` differs from ``expected`` ('' when it fits)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f'{k} is {tuple(found[k])} in the file but {tuple(expected[k])} in the network'
              for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = []
    if shapes:
        parts.append(f'{len(shapes)} tensors differ in shape (first: {shapes[0]})')
    if missing:
        parts.append(f'{len(missing)} missing (first: {missing[0]})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected (first: {unexpected[0]})')
    return '; '.join(parts)


def state_dict_mismatch(net: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """A short description of how ``state`` differs from ``net.state_dict()`` ('' when it fits)."""
    return shape_mismatch({k: tuple(v.shape) for k, v in net.state_dict().items()},
                          {k: tuple(v.shape) for k, v in state.items()})


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], source: str, target: str,
                 strict: bool = True, hint: str = '') -> list[str]:
    """``net.load_state_dict(state)``; a state that does not fit raises :class:`CheckpointError`
    ``'<source>: weights do not fit <target>: <what differs><hint>'``.

    ``strict=False`` loads what fits and skips tensors whose name or shape the network does not have. Returns the
    names of the network's tensors left at their initial values (empty when ``strict``), sorted.
    """
    own = net.state_dict()
    if not strict:
        state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
    problem = state_dict_mismatch(net, state) if strict else ''
    if problem:
        raise CheckpointError(f'{source}: weights do not fit {target}: {problem}{hint}')
    net.load_state_dict(state, strict=strict)
    return sorted(set(own) - set(state))
