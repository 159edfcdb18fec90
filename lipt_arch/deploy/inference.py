"""Run a LIPT on whole images: overlapping tiles (bounded memory), device / precision choice, and OpenCV arrays
(grey, BGR, BGRA; 8-bit, 16-bit or float) in and out."""
from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..image_io import check_float_range

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def resolve_device(name: str = 'auto') -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'`` or ``'cuda[:i]'``; ValueError if CUDA is missing."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda asked for, but no CUDA device is available (use --device cpu or auto)')
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``name`` (fp32 / fp16 / bf16) on ``device``; fp16 on CPU falls back to fp32 (and bf16
    where the GPU lacks it falls back to fp16), each with a warning, never an error."""
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == 'cpu':
        warnings.warn('fp16 is not supported well on CPU: running in fp32 instead (bf16 works on CPU)', stacklevel=2)
        return torch.float32
    if dtype == torch.bfloat16 and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        warnings.warn('this GPU has no bf16: running in fp16 instead', stacklevel=2)
        return torch.float16
    return dtype


def _align(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def tile_grid(height: int, width: int, tile: int, tile_pad: int, multiple: int = 1
              ) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles covering (height, width): ``((y0, y1, x0, x1) kept, (y0, y1, x0, x1) read)`` in input pixels.

    ``tile`` and ``tile_pad`` are rounded up to ``multiple`` (the window size), so every read region starts on the
    window grid of the whole image (or at its edge) and window attention sees the same windows as untiled.
    ``tile <= 0`` gives one tile.
    """
    if tile <= 0:
        return [((0, height, 0, width), (0, height, 0, width))]
    tile, pad = _align(tile, multiple), _align(max(tile_pad, 0), multiple)
    grid = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            grid.append(((y0, y1, x0, x1), (max(y0 - pad, 0), min(y1 + pad, height), max(x0 - pad, 0),
                                            min(x1 + pad, width))))
    return grid


@torch.no_grad()
def tiled_forward(model: nn.Module, img: Tensor, tile: int = 0, tile_pad: int = 32, progress: bool = False,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """``model(img)`` computed tile by tile, each tile read with ``tile_pad`` pixels of context around it.

    Args:
        model: a super-resolution network with ``upscale`` (1 if absent) and optionally ``window_size``.
        img: (B, C, H, W) in [0, 1]; may stay on the CPU while the model runs on ``device`` (tiles move).
        tile: tile side in input pixels (rounded up to the window size); 0 runs the whole image at once.
        tile_pad: context on each side of a tile (rounded up to the window size); pixels farther than the
            network's receptive field from a tile border are then identical to untiled inference.
        progress: show a tqdm bar over the tiles (when there is more than one).
        device, dtype: where and in what precision the tiles go to the model (default: the model's parameters',
            else ``img``'s device in float32).

    Returns (B, C_out, H * upscale, W * upscale), float32, on ``img``'s device. Peak memory is one tile's activations
    plus the input and output images.
    """
    param = next(model.parameters(), None)  # None: e.g. the int8 form of lipt_arch.optimize (ONNX Runtime)
    device = device or (param.device if param is not None else img.device)
    dtype = dtype or (param.dtype if param is not None else torch.float32)
    scale, window = int(getattr(model, 'upscale', 1)), int(getattr(model, 'window_size', 1))
    _, _, height, width = img.shape
    grid = tile_grid(height, width, tile if tile < max(height, width) else 0, tile_pad, window)
    out: Tensor | None = None
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in tqdm(grid, desc='tiles', leave=False, unit='tile',
                                                       disable=not progress or len(grid) == 1):
        piece = model(img[:, :, ry0:ry1, rx0:rx1].to(device, dtype)).float().to(img.device)
        if out is None:
            out = img.new_zeros(img.shape[0], piece.shape[1], height * scale, width * scale, dtype=torch.float32)
        out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
            piece[:, :, (y0 - ry0) * scale:(y1 - ry0) * scale, (x0 - rx0) * scale:(x1 - rx0) * scale]
    assert out is not None
    return out


def _full_scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype in (np.float32, np.float64):
        return 1.0
    raise ValueError(f'unsupported image sample type {dtype} (use 8-bit, 16-bit or float images)')


def upscale_array(model: nn.Module, img: np.ndarray, tile: int = 0, tile_pad: int = 32, progress: bool = False,
                  device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> np.ndarray:
    """Run ``model`` on an OpenCV array and return one of the same kind, ``upscale`` times larger.

    ``img``: (H, W) grey, (H, W, 1|2|3|4) grey / grey+alpha / BGR / BGRA; uint8, uint16 (kept 16-bit) or float
    in [0, 1]. Grey goes through a 3-channel model as three equal channels and comes back as their mean; alpha is
    upscaled separately (bicubic). A 1-channel model runs each colour channel on its own.

    Float input follows the rule for float image files (:func:`lipt_arch.image_io.check_float_range`): finite and
    within [0, 1] (1/255 of slack), else :class:`~lipt_arch.errors.ImageError` (a ``ValueError``) with the minimum
    and maximum; 0..255 data is never guessed (it would come out saturated).
    """
    check_float_range(f'upscale_array: {img.dtype} array {img.shape}', img, 'pass it as uint8')
    scale = int(getattr(model, 'upscale', 1))
    in_ch = int(getattr(model, 'config', {}).get('num_in_ch', 3))
    full = _full_scale(img.dtype)
    planes = img[:, :, None] if img.ndim == 2 else img
    height, width, channels = planes.shape
    if channels not in (1, 2, 3, 4):
        raise ValueError(f'unsupported image with {channels} channels')
    grey = channels in (1, 2)
    color = planes[:, :, :1] if grey else planes[:, :, 2::-1]  # BGR -> RGB
    alpha = planes[:, :, -1] if channels in (2, 4) else None
    x = torch.from_numpy(np.ascontiguousarray(color, dtype=np.float32) / np.float32(full)).permute(2, 0, 1)[None]
    if in_ch == 1:
        x = x.transpose(0, 1)  # (C, 1, H, W): every channel is one grey image
    elif x.shape[1] == 1:
        x = x.expand(1, in_ch, height, width)
    y = tiled_forward(model, x, tile, tile_pad, progress, device, dtype).clamp_(0, 1)
    y = y.transpose(0, 1) if in_ch == 1 else y  # back to (1, C, H', W')
    y = y[0].mean(0, keepdim=True) if grey and y.shape[1] != 1 else y[0]
    out = y.permute(1, 2, 0).numpy()
    out = out if grey else out[:, :, ::-1]  # RGB -> BGR
    out = _quantize(out, img.dtype, full)
    if alpha is not None:
        size = (width * scale, height * scale)
        up = alpha if scale == 1 else cv2.resize(alpha, size, interpolation=cv2.INTER_CUBIC)
        if up.dtype.kind == 'f':
            up = np.clip(up, 0, 1)
        out = np.concatenate([out, up[:, :, None].astype(out.dtype)], axis=2)
    elif grey:
        out = out[:, :, 0]
    return np.ascontiguousarray(out)


def _quantize(x: np.ndarray, dtype: np.dtype, full: float) -> np.ndarray:
    """[0, 1] float32 -> ``dtype`` samples; scales ``x`` in place (a 4K float image is 100 MB: no extra copies)."""
    if np.dtype(dtype).kind == 'f':
        return x.astype(dtype)
    np.multiply(x, np.float32(full), out=x)
    return np.round(x, out=x).astype(dtype)
