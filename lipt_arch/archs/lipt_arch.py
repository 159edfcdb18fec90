"""LIPT, the Latency-aware Image Processing Transformer (Qiao et al., IEEE TIP 34, 2025), as a BasicSR arch.

Data path: reflect-pad to the window -> subtract mean -> head conv -> LIPT blocks (+ long residual) -> tail conv ->
pixel shuffle -> add mean -> crop. A LIPT block is ``1 + shared_depth`` layers of
``HRM_a, HRM_c, NVSM-SA, HRM_b`` (each with a residual), no LayerNorm and no MLP.
"""
from __future__ import annotations

from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn

from .hrm import HRM
from .nvsm_attention import Attention, NVSMAttention, WindowIndices, size_tensor, traced, window_indices

RGB_MEAN = (0.4488, 0.4371, 0.4040)
WINDOW_SIZES = (8, 16)
SCALES = (1, 2, 3, 4)


def resolve_upscale(upscale: int | None, scale: int | None, default: int | None = None) -> int | None:
    """The scale given as ``upscale`` or as its alias ``scale`` (the name traiNNer-redux, neosr and spandrel use);
    ``default`` when neither is given. Raises ``ValueError`` naming both when both are given and differ."""
    if upscale is not None and scale is not None and upscale != scale:
        raise ValueError(f"LIPT options 'upscale' ({upscale!r}) and its alias 'scale' ({scale!r}) disagree; give one "
                         'of them')
    return upscale if upscale is not None else scale if scale is not None else default


def mirror_index(length: int, padded: int, device: torch.device | str = 'cpu') -> Tensor:
    """Index (padded,) that extends an axis of ``length`` by mirroring: 0, 1, .., L-1, L-2, .., 1, 0, 1, ..

    The edge is not repeated (PyTorch's ``reflect``), the mirror repeats when the pad is longer than the axis
    (period 2L - 2), and an axis of one pixel is repeated.
    """
    pos = torch.arange(padded, device=device)
    size = size_tensor(length, pos.device)
    period = (size * 2 - 2).clamp_min(1)
    pos = pos % period
    return torch.where(pos < size, pos, period - pos)


def memory_format_of(x: Tensor) -> torch.memory_format:
    """The layout an output should keep for input ``x``: ``torch.channels_last`` for a channels-last (B, C, H, W)
    tensor that is not also plain contiguous, ``torch.contiguous_format`` for anything else."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def padded_size(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (the size :func:`reflect_pad` pads to; symbolic-safe)."""
    return (length + multiple - 1) // multiple * multiple


def reflect_pad(x: Tensor, multiple: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom and right up to multiples of ``multiple`` by mirroring (:func:`mirror_index`).

    Equals the reference's ``F.pad(mode='reflect')`` whenever the pad is smaller than the side; smaller images
    (which the reference cannot take) are mirrored repeatedly. Tensor ops only, so H and W stay symbolic in export.
    """
    height, width = x.shape[-2:]
    rows = mirror_index(height, padded_size(height, multiple), x.device)
    cols = mirror_index(width, padded_size(width, multiple), x.device)
    return x.index_select(2, rows).index_select(3, cols)


class LIPTLayer(nn.Module):
    """``x += HRM_a(x); x += HRM_c(x); x += NVSM-SA(x); x += HRM_b(x)``, (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, num_feat: int, exp_ratio: int, window_size: int, shift: bool, calc_attn: bool,
                 deploy: bool, keep_maps: bool = True) -> None:
        super().__init__()
        self.hrm_a = HRM(num_feat, exp_ratio, deploy)
        self.hrm_c = HRM(num_feat, exp_ratio, deploy)
        self.attn = NVSMAttention(num_feat, window_size, shift, calc_attn, deploy, keep_maps)
        self.hrm_b = HRM(num_feat, exp_ratio, deploy)

    def forward(self, x: Tensor, attn: Attention | None = None,
                indices: WindowIndices | None = None) -> tuple[Tensor, Attention | None]:
        x = self.hrm_a(x) + x
        x = self.hrm_c(x) + x
        y, attn = self.attn(x, attn, indices)
        x = y + x
        return self.hrm_b(x) + x, attn


class LIPTBlock(nn.Module):
    """``1 + shared_depth`` LIPT layers; the first computes the attention maps, the others reuse them."""

    def __init__(self, num_feat: int, shared_depth: int, exp_ratio: int, window_size: int, shift: bool,
                 deploy: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            LIPTLayer(num_feat, exp_ratio, window_size, shift, calc_attn=(j == 0), deploy=deploy,
                      keep_maps=shared_depth > 0)
            for j in range(1 + shared_depth))

    def forward(self, x: Tensor, indices: WindowIndices | None = None) -> Tensor:
        attn = None
        for layer in self.layers:
            x, attn = layer(x, attn, indices)
        return x


@ARCH_REGISTRY.register()
class LIPT(nn.Module):
    """LIPT for super-resolution (``upscale`` 2, 3, 4) and restoration (``upscale`` 1).

    Args:
        upscale: output size / input size: 1, 2, 3 or 4 (default 4).
        scale: alias of ``upscale`` (for callers that name it so, e.g. traiNNer-redux's ``build_network``).
        num_in_ch, num_out_ch: image channels.
        num_feat: width C (even).
        num_block: number of LIPT blocks; block i uses shifted windows iff i is odd.
        shared_depth: layers per block that reuse the first layer's attention (the reference's ``n_share``).
        window_size: 8 or 16.
        exp_ratio: HRM expansion ratio (the reference's ``r_expand``).
        img_range: the network computes on ``x * img_range``; 255 reproduces a model trained on 0..255 data.
        rgb_mean: mean subtracted before the head (used when the images have 3 channels; zero otherwise).
        img_residual: add the input image to the output (``upscale`` 1 only), as restoration networks such as
            SwinIR do; the reference code has no such residual (False).
        deploy: build the fused structure (plain 3x3 convs, no BatchNorm), as :func:`reparameterize` produces.
        zero_init_residual: start every residual branch at zero (:func:`zero_init_residual_`), so each LIPT block is
            the identity at initialisation; trains much faster in short runs (docs/training.md). Only initial
            values change: not part of ``config`` (checkpoints hold the trained weights).

    Input (B, num_in_ch, H, W) in [0, 1], any H, W >= 1; output (B, num_out_ch, H * upscale, W * upscale), about
    [0, 1] (not clamped).
    """

    def __init__(self, upscale: int | None = None, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_block: int = 6, shared_depth: int = 1, window_size: int = 8, exp_ratio: int = 1,
                 img_range: float = 1.0, rgb_mean: tuple[float, ...] = RGB_MEAN, img_residual: bool = False,
                 deploy: bool = False, zero_init_residual: bool = False, scale: int | None = None) -> None:
        super().__init__()
        upscale = resolve_upscale(upscale, scale, default=4)
        _check_options(upscale=upscale, num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                       num_block=num_block, shared_depth=shared_depth, window_size=window_size, exp_ratio=exp_ratio,
                       img_range=img_range)
        if img_residual and (upscale != 1 or num_in_ch != num_out_ch):
            raise ValueError("LIPT option 'img_residual' needs upscale=1 and num_in_ch == num_out_ch")
        self.config: dict[str, Any] = dict(
            upscale=upscale, num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
            shared_depth=shared_depth, window_size=window_size, exp_ratio=exp_ratio, img_range=float(img_range),
            rgb_mean=tuple(float(m) for m in rgb_mean), img_residual=img_residual, deploy=deploy)
        self.upscale, self.window_size, self.img_range = upscale, window_size, float(img_range)
        self.img_residual = img_residual
        self.register_buffer('mean_in', _mean(rgb_mean, num_in_ch), persistent=False)
        self.register_buffer('mean_out', _mean(rgb_mean, num_out_ch), persistent=False)
        self.head = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.ModuleList(
            LIPTBlock(num_feat, shared_depth, exp_ratio, window_size, shift=(i % 2 == 1), deploy=deploy)
            for i in range(num_block))
        self.tail = nn.Conv2d(num_feat, num_out_ch * upscale ** 2, 3, 1, 1)
        self.upsample = nn.PixelShuffle(upscale) if upscale > 1 else nn.Identity()
        if zero_init_residual:
            zero_init_residual_(self)

    channels_last = True  # run the convs on channels-last tensors (faster; the attention works on (B, H*W, C))

    def forward(self, x: Tensor, indices: WindowIndices | None = None) -> Tensor:
        """``indices``: :meth:`window_indices` of ``x`` (looked up when not given; a compiled network is faster when
        they come in as inputs)."""
        if x.dim() != 4 or x.shape[1] != self.head.in_channels:
            raise ValueError(f'LIPT expects a (B, {self.head.in_channels}, H, W) tensor, got {tuple(x.shape)}')
        height, width = x.shape[-2:]
        out_format = memory_format_of(x)
        x = reflect_pad(x, self.window_size) * self.img_range - self.mean_in * self.img_range
        if indices is None:
            indices = window_indices(x.shape[2], x.shape[3], self.window_size, x.shape[0], x.device)
        elif not traced() and indices[0, False][0].numel() != x.shape[0] * x.shape[2] * x.shape[3]:
            raise ValueError(f'LIPT: the indices passed are for another input size than {tuple(x.shape)} (padded); '
                             'pass model.window_indices(x)')
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feat = self.head(x)
        res = feat
        for block in self.body:
            res = block(res, indices)
        out = self.upsample(self.tail(res + feat))
        if self.img_residual:
            out = out + x
        out = (out + self.mean_out * self.img_range) / self.img_range
        return out[:, :, :height * self.upscale, :width * self.upscale].contiguous(memory_format=out_format)

    def window_indices(self, x: Tensor) -> WindowIndices:
        """The attention indices ``forward(x)`` uses (:func:`~lipt_arch.archs.nvsm_attention.window_indices` of the
        padded size of ``x``, (B, C, H, W)), computed eagerly and cached: passed to a ``torch.compile``-d LIPT as
        ``indices`` they enter its graph as inputs instead of being recomputed inside its gather kernels."""
        height, width = (padded_size(int(n), self.window_size) for n in x.shape[-2:])
        return window_indices(height, width, self.window_size, int(x.shape[0]), x.device)


@torch.no_grad()
def zero_init_residual_(model: nn.Module) -> nn.Module:
    """Zero the last layer of every residual branch of ``model`` in place (each HRM's ``conv1``, each NVSM-SA's
    ``proj_out``), training or deploy form; returns ``model``.

    An untrained LIPT's output has a standard deviation of about 4-6 on [0, 1] images (every branch adds
    unit-variance BatchNorm outputs to the residual stream); with this, every block starts as the identity and the
    network as ``tail(2 * head(x))``. The architecture, the fusion and the checkpoints are unchanged.
    """
    for module in model.modules():
        if isinstance(module, HRM):
            module.zero_init_last_()
        elif isinstance(module, NVSMAttention):
            nn.init.zeros_(module.proj_out.weight)
            nn.init.zeros_(module.proj_out.bias)
    return model


def _mean(rgb_mean: tuple[float, ...], channels: int) -> Tensor:
    values = rgb_mean if channels == 3 else (0.0,) * channels
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def _check_options(**opt: Any) -> None:
    """Raise one clear ``ValueError`` naming the first LIPT option that is out of range."""
    if opt['upscale'] not in SCALES:
        raise ValueError(f"LIPT option 'upscale' must be one of {SCALES}, got {opt['upscale']!r}")
    if opt['window_size'] not in WINDOW_SIZES:
        raise ValueError(f"LIPT option 'window_size' must be one of {WINDOW_SIZES}, got {opt['window_size']!r}")
    for key in ('num_in_ch', 'num_out_ch', 'num_feat', 'num_block', 'exp_ratio'):
        if not isinstance(opt[key], int) or isinstance(opt[key], bool) or opt[key] < 1:
            raise ValueError(f'LIPT option {key!r} must be a positive integer, got {opt[key]!r}')
    if opt['num_feat'] % 2:
        raise ValueError(f"LIPT option 'num_feat' must be even (attention splits it in halves), got {opt['num_feat']}")
    if not isinstance(opt['shared_depth'], int) or opt['shared_depth'] < 0:
        raise ValueError(f"LIPT option 'shared_depth' must be an integer >= 0, got {opt['shared_depth']!r}")
    if not opt['img_range'] > 0:
        raise ValueError(f"LIPT option 'img_range' must be positive, got {opt['img_range']!r}")
