"""ONNX export of a fused LIPT with dynamic batch, height and width.

The network itself sizes two things with Python integers, which ``torch.export`` would freeze to the sample size:
the reflect padding (``reflect_pad``, a loop over pad steps) and the attention's gather indices (``token_index``,
cached on ``(height, width, ...)``). :class:`ExportableLIPT` runs the network's own ``forward`` with those two
functions swapped for tensor-op versions that give the same values (:func:`mirror_pad`, :func:`traced_token_index`),
so the export follows the architecture code and needs no change to ``lipt_arch/archs``.
"""
from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .archs import LIPT, reparameterize
from .archs import lipt_arch as lipt_module
from .archs import nvsm_attention as attention_module
from .archs.nvsm_attention import sparse_offsets


def mirror_index(length: int, padded: int, device: torch.device | None = None) -> Tensor:
    """Index (padded,) that reflect-pads an axis of ``length`` to ``padded`` positions.

    Edge not repeated, mirrored again when the pad is longer than the axis, a one-pixel axis repeated: the values
    of ``reflect_pad``'s loop, as one periodic formula.
    """
    pos = torch.arange(padded, device=device)
    period = (_size(length, device) * 2 - 2).clamp_min(1)  # a tensor, so the graph keeps length 1 valid
    pos = pos % period
    return torch.where(pos < _size(length, device), pos, period - pos)


def mirror_pad(x: Tensor, multiple: int) -> Tensor:
    """``reflect_pad`` without a loop: pad (B, C, H, W) at the bottom and right to multiples of ``multiple``."""
    height, width = x.shape[-2:]
    rows = mirror_index(height, (height + multiple - 1) // multiple * multiple, x.device)
    cols = mirror_index(width, (width + multiple - 1) // multiple * multiple, x.device)
    return x.index_select(2, rows).index_select(3, cols)


def _size(n: int, device: torch.device | None) -> Tensor:
    """A (possibly symbolic) size as a 0-d int64 tensor: ONNX conversion takes tensor operands, not SymInt scalars."""
    return torch.full((), n, dtype=torch.int64, device=device)


def _axis_index(length: int, window_size: int, shift: int, sparse: bool, device: torch.device) -> Tensor:
    """Rows (or columns) read by each window position along one axis: (length,), as the arch's ``sparse_index``."""
    pos = torch.arange(length, device=device)
    if sparse:
        offsets = torch.tensor(sparse_offsets(window_size), device=device)
        pos = pos - pos % window_size + offsets[pos % window_size]
    return (pos + shift) % _size(length, device)


def traced_token_index(height: int, width: int, window_size: int, shift: int = 0, sparse: bool = False,
                       device: torch.device | str = 'cpu') -> tuple[Tensor, Tensor]:
    """Same values as the arch's ``token_index`` (gather index (H*W,) and its inverse), from tensor ops only."""
    device = torch.device(device)
    rows = _axis_index(height, window_size, shift, sparse, device).view(-1, window_size)
    cols = _axis_index(width, window_size, shift, sparse, device).view(-1, window_size)
    index = (rows[:, None, :, None] * _size(width, device) + cols[None, :, None, :]).reshape(-1)
    inverse = torch.zeros_like(index).scatter(0, index, torch.arange(index.numel(), device=device))
    return index, inverse


def traced_sparse_index(length: int, window_size: int, shift: int = 0, device: torch.device | str = 'cpu') -> Tensor:
    """Same values as the arch's ``sparse_index`` (an earlier attention layout gathers with it directly)."""
    return _axis_index(length, window_size, shift, True, torch.device(device))


# Arch helper name -> traceable replacement; only the names the arch module defines are swapped.
_TRACEABLE = {lipt_module: {'reflect_pad': mirror_pad},
              attention_module: {'token_index': traced_token_index, 'sparse_index': traced_sparse_index}}


@contextlib.contextmanager
def traceable_shapes() -> Iterator[None]:
    """Swap the arch's integer-sized helpers for the tensor-op versions above inside the block."""
    saved = [(module, name, getattr(module, name)) for module, names in _TRACEABLE.items() for name in names
             if hasattr(module, name)]
    try:
        for module, name, _ in saved:
            setattr(module, name, _TRACEABLE[module][name])
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


class ExportableLIPT(nn.Module):
    """A fused LIPT whose forward keeps height and width symbolic; same values as the LIPT it wraps.

    Input (B, C_in, H, W) in [0, 1], any H, W >= 1; output (B, C_out, H * scale, W * scale).
    """

    def __init__(self, model: LIPT) -> None:
        super().__init__()
        self.net = (model if model.config.get('deploy') else reparameterize(model)).eval()

    def forward(self, x: Tensor) -> Tensor:
        with traceable_shapes():
            return self.net(x)


def export_onnx(model: LIPT, path: str | os.PathLike, opset: int = 18, sample_size: tuple[int, int] = (37, 45)
                ) -> None:
    """Write ``model`` (fused first if needed) to ONNX at ``path``: input ``image`` (B, C_in, H, W) float32 in
    [0, 1], output ``output`` (B, C_out, H * scale, W * scale); B, H and W dynamic."""
    wrapper = ExportableLIPT(copy.deepcopy(model).float().cpu()).eval()
    sample = torch.rand(2, model.config['num_in_ch'], *sample_size)  # sizes of 1 would be specialised
    dynamic = {'x': {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    with torch.no_grad():
        program = torch.onnx.export(wrapper, (sample,), dynamo=True, dynamic_shapes=dynamic, opset_version=opset,
                                    input_names=['image'], output_names=['output'], external_data=False,
                                    verbose=False)
    program.save(os.fspath(path))


def check_onnx(model: LIPT, path: str | os.PathLike, sizes: tuple[tuple[int, int], ...] = ((19, 27), (40, 33)),
               seed: int = 0) -> float | None:
    """Max abs difference between ``model`` (float32, CPU) and the ONNX file under onnxruntime on random [0, 1]
    inputs of ``sizes``; None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    net = copy.deepcopy(model).float().cpu().eval()
    gen = torch.Generator().manual_seed(seed)
    error = 0.0
    for size in sizes:
        x = torch.rand(1, model.config['num_in_ch'], *size, generator=gen)
        with torch.no_grad():
            expected = net(x)
        got = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
        error = max(error, (got - expected).abs().max().item())
    return error
