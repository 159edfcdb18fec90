"""The authors' network structure, restated for side-by-side timing (benchmark baseline, not used by the package).

Same weights and same function as our LIPT, computed the way the reference code computes it: NCHW everywhere,
six separate branches per 3x3 conv in training form, the attention projection's BatchNorm as a separate op,
the sparse mask as wrap-around padding copies + overlapping 2w x 2w windows + boolean indexing, and window
attention as three ops (matmul, softmax, matmul). ``converted=True`` mimics the reference ``convert.py``: only
the six-branch convs are fused.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipt_arch.archs.hrm import BorderedBatchNorm, RepConv3x3
from lipt_arch.archs.lipt_arch import LIPT, reflect_pad
from lipt_arch.archs.nvsm_attention import NVSMAttention, sparse_offsets


def _pad_with(y: Tensor, value: Tensor) -> Tensor:
    """Zero-pad by one pixel, then write ``value`` (C,) into the frame with four recorded in-place writes (as the
    reference's BN-and-pad layer and Sobel branches do; autograd keeps a copy of the gradient for each write)."""
    out = F.pad(y, [1, 1, 1, 1])
    value = value.view(1, -1, 1, 1)
    out[:, :, 0:1, :] = value
    out[:, :, -1:, :] = value
    out[:, :, :, 0:1] = value
    out[:, :, :, -1:] = value
    return out


def _bn_and_pad(bn: BorderedBatchNorm, x: Tensor) -> Tensor:
    """The reference's BN-and-pad: BatchNorm, then the frame holds BN(0) under the running statistics."""
    return _pad_with(nn.BatchNorm2d.forward(bn, x), bn.frame_value())


class ReferenceRepConv(nn.Module):
    """Six branches evaluated one by one, as the reference DiverseBranchBlock does (shares ``block``'s weights).

    The Sobel branches' 1x1 convs carry the reference's bias ``b0`` (zero here: it cancels exactly, so our
    :class:`RepConv3x3` drops it), whose value fills the frame before the unpadded depthwise conv.
    """

    def __init__(self, block: RepConv3x3) -> None:
        super().__init__()
        self.block = block
        weight = block.conv1x1.weight
        self.register_buffer('b0', weight.new_zeros(block.out_channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b = self.block
        out = b.bn3x3(b.conv3x3(x))
        out = out + b.bn1x1(b.conv1x1(x))
        out = out + b.avg_bn_out(F.avg_pool2d(_bn_and_pad(b.avg_bn, b.avg_conv(x)), 3, stride=1))
        out = out + b.seq_bn_out(b.seq_conv(_bn_and_pad(b.seq_bn, F.conv2d(x, b.seq_delta + b.seq_identity))))
        for axis in ('x', 'y'):
            y = _pad_with(F.conv2d(x, getattr(b, f'sobel_{axis}_conv').weight, self.b0), self.b0)
            kernel = getattr(b, f'sobel_{axis}_scale') * getattr(b, f'sobel_{axis}_mask')
            out = out + F.conv2d(y, kernel, getattr(b, f'sobel_{axis}_bias'), groups=b.out_channels)
        return out


def _partition(x: Tensor, w: int) -> Tensor:
    b, c, h, wd = x.shape
    return x.view(b, c, h // w, w, wd // w, w).permute(0, 2, 4, 3, 5, 1).reshape(-1, w * w, c)


def _merge(t: Tensor, w: int, b: int, h: int, wd: int) -> Tensor:
    return t.view(b, h // w, wd // w, w, w, -1).permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h, wd)


class ReferenceAttention(nn.Module):
    """NVSM-SA computed as the reference does (shares ``attn``'s weights; the projection BN stays separate)."""

    def __init__(self, attn: NVSMAttention) -> None:
        super().__init__()
        self.attn = attn
        w = attn.window_size
        keep = torch.zeros(2 * w, dtype=torch.bool)
        keep[sparse_offsets(w)] = True
        self.register_buffer('mask', keep[:, None] & keep[None, :], persistent=False)

    def _sparse(self, x: Tensor) -> Tensor:
        w = self.attn.window_size
        x = torch.cat([x, x[:, :, :w]], dim=2)
        x = torch.cat([x, x[:, :, :, :w]], dim=3)
        regions = x.unfold(2, 2 * w, w).unfold(3, 2 * w, w)  # (B, c, nh, nw, 2w, 2w)
        tokens = regions[..., self.mask]  # (B, c, nh, nw, w*w)
        return tokens.permute(0, 2, 3, 4, 1).reshape(-1, w * w, x.shape[1])

    def forward(self, x: Tensor, attn: tuple | None = None, indices: object = None) -> tuple[Tensor, tuple]:
        """``indices`` (NVSMAttention's gather indices) is unused: the reference rolls, pads and unfolds."""
        a = self.attn
        b, c, h, wd = x.shape
        w, s = a.window_size, (a.window_size // 2 if a.shift else 0)
        t = a.proj_bn(a.proj_in(x))
        halves = t.chunk(2, dim=1)
        outs, maps = [], []
        for i, half in enumerate(halves):
            if s:
                half = torch.roll(half, shifts=(-s, -s), dims=(2, 3))
            tokens = self._sparse(half) if (a.calc_attn and i == 1) else _partition(half, w)
            if a.calc_attn:
                q, v = tokens.chunk(2, dim=-1)
                score = torch.matmul(q, q.transpose(-2, -1))
                m = torch.softmax(score, dim=-1)
            else:
                m, v = attn[i], tokens
            y = _merge(torch.matmul(m, v), w, b, h, wd)
            if s:
                y = torch.roll(y, shifts=(s, s), dims=(2, 3))
            outs.append(y)
            maps.append(m)
        return a.proj_out(torch.cat(outs, dim=1)), tuple(maps)


class ReferenceLIPT(nn.Module):
    """Wraps a (deep-copied) LIPT and runs it with the reference's structure; NCHW throughout."""

    def __init__(self, model: LIPT, converted: bool) -> None:
        super().__init__()
        self.net = copy.deepcopy(model)
        for module in list(self.net.modules()):
            for name, child in module.named_children():
                if isinstance(child, RepConv3x3):
                    setattr(module, name, child.to_conv() if converted else ReferenceRepConv(child))
                elif isinstance(child, NVSMAttention):
                    setattr(module, name, ReferenceAttention(child))

    def forward(self, x: Tensor) -> Tensor:
        n = self.net
        h, w = x.shape[-2:]
        x = reflect_pad(x, n.window_size) * n.img_range - n.mean_in * n.img_range
        feat = n.head(x)
        res = feat
        for block in n.body:
            res = block(res)
        out = n.upsample(n.tail(res + feat))
        return ((out + n.mean_out * n.img_range) / n.img_range)[:, :, :h * n.upscale, :w * n.upscale]
