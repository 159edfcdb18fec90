"""NVSM-SA: window self-attention whose second half sees a 2x larger window through a non-volatile sparse mask.

The channels of the projected feature map split into two halves. Half 0 attends inside plain w x w windows. Half 1
is first resampled so each w x w window gathers w x w samples spread over a 2w x 2w region (the sparse mask).
Shift, wrap-around padding, sparse mask and window partition are all fixed permutations of the pixels, so each is
one precomputed gather index (:func:`token_index`) applied to the map as (B*H*W, C) pixel rows
(:func:`permute_rows`): no boolean indexing, no padding copies. Queries double as keys (``softmax(q @ q^T)``, no
1/sqrt(d) scaling), as in the reference.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fusion import fuse_conv_bn

Attention = tuple[Tensor, Tensor]


def sparse_offsets(window_size: int) -> list[int]:
    """Offsets, inside a 2w x 2w region, of the w rows (and columns) that the sparse mask keeps.

    Even offsets of the first half and odd offsets of the second: w = 8 gives 0, 2, 4, 6, 9, 11, 13, 15.
    """
    half = window_size // 2
    return [2 * k for k in range(half)] + [window_size + 2 * k + 1 for k in range(half)]


def traced() -> bool:
    """Whether this forward is being traced (``torch.compile``, ``torch.export`` / ONNX export, TorchScript tracing)
    rather than run op by op: eager-only shortcuts (cached indices, custom autograd, matmul projections) then step
    aside.
    """
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def size_tensor(n: int, device: torch.device) -> Tensor:
    """A (possibly symbolic, while exporting) size as a 0-d int64 tensor, so index arithmetic stays in the graph."""
    return torch.full((), n, dtype=torch.int64, device=device)


def sparse_index(length: int, window_size: int, shift: int = 0, device: torch.device | str = 'cpu') -> Tensor:
    """Index (length,) of the sparse-mask resampling along one axis of a map rolled by ``-shift``.

    Output position ``a*w + r`` reads input position ``a*w + offsets[r] + shift`` modulo ``length``: the modulo is
    the reference's wrap-around padding, the ``+ shift`` its cyclic roll. ``length`` must be a multiple of w.
    """
    pos = torch.arange(length, device=device)
    offsets = torch.tensor(sparse_offsets(window_size), device=pos.device)
    within = pos % window_size
    return (pos - within + offsets[within] + shift) % size_tensor(length, pos.device)


def _axis_index(length: int, window_size: int, shift: int, sparse: bool, device: torch.device) -> Tensor:
    if sparse:
        return sparse_index(length, window_size, shift, device)
    return (torch.arange(length, device=device) + shift) % size_tensor(length, device)


def token_index(height: int, width: int, window_size: int, shift: int = 0, sparse: bool = False,
                device: torch.device | str = 'cpu', batch: int = 1) -> tuple[Tensor, Tensor]:
    """Gather index (batch*H*W,) from pixel rows (batch-major, then row-major) to window-ordered tokens, and its
    inverse.

    Token ``((a * W/w + b) * w + r) * w + t`` of an image is row ``r``, column ``t`` of window ``(a, b)`` of the map
    rolled by ``(-shift, -shift)`` and, when ``sparse``, resampled by the sparse mask; image ``i``'s tokens follow
    image ``i - 1``'s. The inverse takes tokens of a plain (not resampled) window layout back to the un-rolled pixel
    grid; the reference leaves the sparse half's output in the resampled layout, so both halves go back through the
    plain inverse. Built from tensor ops, so sizes stay symbolic under ONNX export; the network takes these indices
    from :func:`window_indices`, which caches them.
    """
    device = torch.device(device)
    rows = _axis_index(height, window_size, shift, sparse, device).view(-1, window_size)
    cols = _axis_index(width, window_size, shift, sparse, device).view(-1, window_size)
    index = (rows[:, None, :, None] * size_tensor(width, device) + cols[None, :, None, :]).reshape(-1)
    inverse = torch.zeros_like(index).scatter(0, index, torch.arange(index.numel(), device=device))
    if isinstance(batch, int) and batch == 1:
        return index, inverse
    offsets = torch.arange(batch, device=device)[:, None] * size_tensor(height * width, device)
    return (offsets + index).reshape(-1), (offsets + inverse).reshape(-1)


WindowIndices = dict[tuple[int, bool], tuple[Tensor, Tensor]]  # (shift, sparse) -> token_index's (index, inverse)


def _compute_window_indices(height: int, width: int, window_size: int, batch: int,
                            device: torch.device) -> WindowIndices:
    return {(shift, sparse): token_index(height, width, window_size, shift, sparse, device, batch)
            for shift in (0, window_size // 2) for sparse in (False, True)}


@lru_cache(maxsize=128)
def _cached_window_indices(height: int, width: int, window_size: int, batch: int,
                           device: torch.device) -> WindowIndices:
    with torch.inference_mode(False):  # normal tensors even when first built under inference_mode: autograd
        return _compute_window_indices(height, width, window_size, batch, device)  # may save them later


def window_indices(height: int, width: int, window_size: int, batch: int = 1,
                   device: torch.device | str = 'cpu') -> WindowIndices:
    """Every :func:`token_index` an NVSM-SA layer of a (batch, C, height, width) map needs: both shifts (0 and
    ``window_size // 2``), plain and sparse, keyed ``(shift, sparse)``; read-only.

    Cached per size and device in eager mode; built from tensor ops when traced (``torch.compile``, export), so the
    sizes stay symbolic in the graph. Inductor then recomputes the index arithmetic (modulo, sparse offsets) inside
    every gather kernel; a compiled network runs faster when the indices come in as inputs, computed eagerly
    (:meth:`lipt_arch.LIPT.window_indices`, as :func:`lipt_arch.optimize` does: LIPT-Tiny 1.08x, docs/latency.md).
    """
    key = (height, width, window_size, batch, torch.device(device))
    return _compute_window_indices(*key) if traced() else _cached_window_indices(*key)


class _PermuteRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, rows: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        return rows.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


def permute_rows(rows: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
    """``rows.index_select(0, index)`` for a permutation ``index`` (N,) of the rows of ``rows`` (N, K), with
    ``inverse`` its inverse permutation: the gradient is the gather by ``inverse`` (not a scatter-add into zeros).
    Output (N, K), contiguous."""
    if torch.is_grad_enabled() and rows.requires_grad and not traced():
        return _PermuteRows.apply(rows, index, inverse)
    return rows.index_select(0, index)


def _attention(q: Tensor, v: Tensor) -> Tensor:
    """``softmax(q @ q^T) @ v`` as one fused call, (N, T, d) -> (N, T, d) (4-D inside, as ONNX export needs); in
    float32 under autocast (:func:`qq_softmax`)."""
    if torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            return _attention(q.float(), v.float())
    return F.scaled_dot_product_attention(q.unsqueeze(1), q.unsqueeze(1), v.unsqueeze(1), scale=1.0).squeeze(1)


def qq_softmax(q: Tensor) -> Tensor:
    """Attention map ``softmax(q @ q^T)``, (N, T, d) -> (N, T, T), rows summing to 1; in float32 under autocast.

    The logits are unscaled (no 1/sqrt(d)), so they grow with the square of q: fp16 overflows past 65504 and bf16
    (8-bit mantissa) rounds a logit of 400 by up to 1, which the exponential turns into a factor e in the weights
    (autocast on a CPU also keeps the softmax in bf16). Measured on random q (64 tokens, d 14; max error relative
    to the largest output): bf16 maps @ v are 1.6% off at unit-variance q and 6.2% at 3x, fp16 is inf at 80x; with
    the logits in float32 what remains is q's own bf16 rounding (0.6%, 2.2%).
    """
    if torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            return qq_softmax(q.float())
    return torch.softmax(q @ q.transpose(-2, -1), dim=-1)


class NVSMAttention(nn.Module):
    """Non-volatile sparse-mask self-attention, (B, C, H, W) -> (B, C, H, W); H and W multiples of the window.

    ``calc_attn=True`` (first layer of a block): ``proj_in`` maps C -> 2C; each half of C channels holds C/2 query
    channels and C/2 value channels, and the two attention maps (B * nW, w*w, w*w) are returned for reuse; with
    ``keep_maps=False`` (no shared layer follows) no maps are formed or returned (``None``): one fused
    ``scaled_dot_product_attention`` per half. ``calc_attn=False`` (a shared layer): ``proj_in`` maps C -> C, two
    halves of C/2 value channels, and the maps passed in are applied; as in the reference, half 1's values come from
    plain (not resampled) windows. ``shift`` rolls both halves by half a window first (and back after). ``deploy``
    builds ``proj_in`` with the BatchNorm folded in. ``indices``: the map size's :func:`window_indices` (looked up
    when not given). The output is channels-last in memory.
    """

    def __init__(self, channels: int, window_size: int = 8, shift: bool = False, calc_attn: bool = True,
                 deploy: bool = False, keep_maps: bool = True) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f'NVSMAttention needs an even channel count, got {channels}')
        self.channels, self.window_size, self.shift, self.calc_attn = channels, window_size, shift, calc_attn
        # No shared layer follows (shared_depth 0): the maps need not exist, and the fused
        # scaled_dot_product_attention is faster (CPU, 2 threads: 1.4x at 64 tokens, 1.6x at 256; docs/latency.md).
        self.fused_sdpa = calc_attn and not keep_maps
        inner = 2 * channels if calc_attn else channels
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.proj_bn = nn.Identity() if deploy else nn.BatchNorm2d(inner)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def fold_bn(self) -> None:
        """Fold ``proj_bn`` (eval statistics) into ``proj_in`` in place; ``proj_bn`` becomes ``nn.Identity``."""
        if isinstance(self.proj_bn, nn.BatchNorm2d):
            self.proj_in = fuse_conv_bn(self.proj_in, self.proj_bn)
            self.proj_bn = nn.Identity()

    def forward(self, x: Tensor, attn: Attention | None = None,
                indices: WindowIndices | None = None) -> tuple[Tensor, Attention | None]:
        b, c, h, w = x.shape
        ws, shift, half = self.window_size, (self.window_size // 2 if self.shift else 0), self.channels // 2
        if indices is None:
            indices = window_indices(h, w, ws, b, x.device)
        # proj_in as pixel rows (B*H*W, 2C or C), split into the C/2-channel parts q0, v0, q1, v1 (or v0, v1)
        parts = self._project_in(x).split(half, dim=1)
        plain = indices[shift, False]

        def windows(part: Tensor, index: tuple[Tensor, Tensor]) -> Tensor:  # (B*nW, w*w, C/2) tokens, contiguous
            return permute_rows(part, *index).view(-1, ws * ws, half)

        if self.calc_attn:
            sparse = indices[shift, True]
            q0, v0, q1, v1 = (windows(part, index) for part, index in zip(parts, (plain, plain, sparse, sparse)))
            if self.fused_sdpa:
                y = torch.cat([_attention(q0, v0), _attention(q1, v1)], dim=-1)
                return self._project_out(y, plain, b, h, w), None
            attn = (qq_softmax(q0), qq_softmax(q1))
        elif attn is None:
            raise ValueError('a shared NVSMAttention layer needs the attention maps of the layer before it')
        else:
            v0, v1 = (windows(part, plain) for part in parts)
        y = torch.cat([attn[0] @ v0, attn[1] @ v1], dim=-1)
        return self._project_out(y, plain, b, h, w), attn

    def _project_in(self, x: Tensor) -> Tensor:
        """``proj_in`` (+ ``proj_bn``) of (B, C, H, W) as pixel rows (B*H*W, C_inner).

        The fused form in eager mode runs it as one matmul on the rows (a 1x1 conv of 28 channels falls back to
        PyTorch's slow path); compiled or exported it stays a 1x1 conv, which Inductor prepacks for oneDNN and ONNX
        Runtime quantizes with the other convs."""
        if isinstance(self.proj_bn, nn.BatchNorm2d) or traced():
            t = self.proj_bn(self.proj_in(x))
            return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
        rows = x.permute(0, 2, 3, 1).reshape(-1, self.channels)  # a view when x is channels-last
        weight = self.proj_in.weight
        return F.linear(rows, weight.view(weight.shape[0], self.channels), self.proj_in.bias)

    def _project_out(self, y: Tensor, plain: tuple[Tensor, Tensor], b: int, h: int, w: int) -> Tensor:
        """``proj_out`` on window-ordered tokens (B*nW, w*w, C), then back to the pixel grid: (B, C, H, W)."""
        c = self.channels
        y = F.linear(y.view(-1, c), self.proj_out.weight.view(c, c), self.proj_out.bias)
        index, inverse = plain
        return permute_rows(y, inverse, index).view(b, h, w, c).permute(0, 3, 1, 2)
