"""NVSM-SA: window self-attention whose second half sees a 2x larger window through a non-volatile sparse mask.

The channels of the projected feature map split into two halves. Half 0 attends inside plain w x w windows. Half 1
is first resampled so each w x w window gathers w x w samples spread over a 2w x 2w region (the sparse mask); the
mask is fixed, so the resampling is a precomputed row and column index (:func:`sparse_index`), with no boolean
indexing. Queries double as keys (``softmax(q @ q^T)``, no 1/sqrt(d) scaling), as in the reference.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

from .fusion import fuse_conv_bn

Attention = tuple[Tensor, Tensor]


def sparse_offsets(window_size: int) -> list[int]:
    """Offsets, inside a 2w x 2w region, of the w rows (and columns) that the sparse mask keeps.

    Even offsets of the first half and odd offsets of the second: w = 8 gives 0, 2, 4, 6, 9, 11, 13, 15.
    """
    half = window_size // 2
    return [2 * k for k in range(half)] + [window_size + 2 * k + 1 for k in range(half)]


@lru_cache(maxsize=64)
def _sparse_index_cpu(length: int, window_size: int, shift: int) -> Tensor:
    offsets = torch.tensor(sparse_offsets(window_size))
    starts = torch.arange(0, length, window_size).repeat_interleave(window_size)
    return (starts + offsets.repeat(length // window_size) + shift) % length


def sparse_index(length: int, window_size: int, shift: int = 0, device: torch.device | str = 'cpu') -> Tensor:
    """Index (length,) of the sparse-mask resampling along one axis of a map rolled by ``-shift``.

    Output position ``a*w + r`` reads input position ``a*w + offsets[r] + shift`` modulo ``length``: the modulo is
    the reference's wrap-around padding, the ``+ shift`` its cyclic roll. ``length`` must be a multiple of w.
    """
    return _sparse_index_cpu(length, window_size, shift).to(device)


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """(B, C, H, W) -> (B * H/w * W/w, w * w, C); tokens in row-major order inside each window."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // window_size, window_size, w // window_size, window_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window_size * window_size, c)


def window_merge(tokens: Tensor, window_size: int, batch: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, w * w, C) -> (B, C, H, W)."""
    c = tokens.shape[-1]
    x = tokens.view(batch, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, c, height, width)


class NVSMAttention(nn.Module):
    """Non-volatile sparse-mask self-attention, (B, C, H, W) -> (B, C, H, W); H and W multiples of the window.

    ``calc_attn=True`` (first layer of a block): ``proj_in`` maps C -> 2C; each half of C channels holds C/2 query
    channels and C/2 value channels, and the two attention maps are returned for reuse. ``calc_attn=False`` (a
    shared layer): ``proj_in`` maps C -> C, two halves of C/2 value channels, and the maps passed in are applied;
    as in the reference, half 1's values are then taken from plain (not resampled) windows. ``shift`` rolls both
    halves by half a window first (and back after). ``deploy`` builds ``proj_in`` with the BatchNorm folded in.
    """

    def __init__(self, channels: int, window_size: int = 8, shift: bool = False, calc_attn: bool = True,
                 deploy: bool = False) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f'NVSMAttention needs an even channel count, got {channels}')
        self.channels, self.window_size, self.shift, self.calc_attn = channels, window_size, shift, calc_attn
        inner = 2 * channels if calc_attn else channels
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.proj_bn = nn.Identity() if deploy else nn.BatchNorm2d(inner)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def fold_bn(self) -> None:
        """Fold ``proj_bn`` (eval statistics) into ``proj_in`` in place; ``proj_bn`` becomes ``nn.Identity``."""
        if isinstance(self.proj_bn, nn.BatchNorm2d):
            self.proj_in = fuse_conv_bn(self.proj_in, self.proj_bn)
            self.proj_bn = nn.Identity()

    def _window_attention(self, x: Tensor, attn: Tensor | None, sparse: bool) -> tuple[Tensor, Tensor]:
        """One half, (B, c, H, W) -> (B, c_v, H, W) plus its attention map (B * nW, w*w, w*w)."""
        b, _, h, w = x.shape
        ws = self.window_size
        shift = ws // 2 if self.shift else 0
        if sparse:
            x = x.index_select(2, sparse_index(h, ws, shift, x.device))
            x = x.index_select(3, sparse_index(w, ws, shift, x.device))
        elif shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(2, 3))
        tokens = window_partition(x, ws)
        if attn is None:
            q, v = tokens.chunk(2, dim=-1)
            attn = torch.softmax(q @ q.transpose(-2, -1), dim=-1)
        else:
            v = tokens
        y = window_merge(attn @ v, ws, b, h, w)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(2, 3))
        return y, attn

    def forward(self, x: Tensor, attn: Attention | None = None) -> tuple[Tensor, Attention]:
        t = self.proj_bn(self.proj_in(x))
        half0, half1 = t.chunk(2, dim=1)
        if self.calc_attn:
            y0, a0 = self._window_attention(half0, None, sparse=False)
            y1, a1 = self._window_attention(half1, None, sparse=True)
        else:
            if attn is None:
                raise ValueError('a shared NVSMAttention layer needs the attention maps of the layer before it')
            y0, a0 = self._window_attention(half0, attn[0], sparse=False)
            y1, a1 = self._window_attention(half1, attn[1], sparse=False)
        return self.proj_out(torch.cat([y0, y1], dim=1)), (a0, a1)
