"""HR/LR pairs for super-resolution, made the standard way, shared by the demo dataset and the benchmarks.

Protocol (spec section 4): HR is modcropped to a multiple of the scale; LR is BasicSR's MATLAB-style bicubic
downsampling of HR, rounded to 8 bits like the LR PNGs of the usual test sets. Images are float32 RGB in [0, 1],
HWC numpy arrays; :class:`PairedMemoryDataset` serves them to BasicSR as CHW tensors.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from basicsr.data.transforms import augment, mod_crop, paired_random_crop
from basicsr.utils.matlab_functions import imresize
from torch.utils.data import Dataset

from lipt_arch.image_io import IMAGE_EXTENSIONS, is_image_path, read_image


@dataclass
class SRPair:
    """One image pair: ``hr`` (H, W, 3) and ``lr`` (H/s, W/s, 3), float32 RGB in [0, 1]."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8/bool -> (H, W, 3) uint8 (gray repeated, alpha dropped)."""
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        raise ValueError(f'expected an 8-bit image, got dtype {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {img.shape}')
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _resize_to_8bit_levels(img: np.ndarray, factor: float) -> np.ndarray:
    """MATLAB-style bicubic resize of (H, W, C) float [0, 1] by ``factor``, as float levels rounded into 0..255."""
    return np.clip(np.round(imresize(img, factor) * 255.0), 0, 255)


def bicubic_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic ``1/scale`` downsampling of (H, W, C) float [0, 1]; output rounded to 8-bit levels."""
    return (_resize_to_8bit_levels(hr, 1 / scale) / 255.0).astype(np.float32)


def bicubic_upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic ``scale`` upsampling of (h, w, C) float [0, 1] -> (h*s, w*s, C), clipped to [0, 1]."""
    return np.clip(imresize(lr, scale), 0, 1).astype(np.float32)


def make_pair(name: str, img: np.ndarray, scale: int, center_crop: int | None = None) -> SRPair:
    """Pair from an 8-bit image (any of :func:`to_rgb_uint8`'s layouts): optional centre crop, modcrop, bicubic LR.

    ``center_crop`` (HR pixels) keeps at most a ``center_crop`` x ``center_crop`` centre region, e.g. for fast
    CPU validation.
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f'scale must be a positive integer, got {scale!r}')
    rgb = to_rgb_uint8(img)
    if center_crop is not None:
        h, w = rgb.shape[:2]
        top, left = max(0, (h - center_crop) // 2), max(0, (w - center_crop) // 2)
        rgb = rgb[top:top + center_crop, left:left + center_crop]
    hr = mod_crop(rgb, scale).astype(np.float32) / 255.0
    if min(hr.shape[:2]) < scale:
        raise ValueError(f'image {name!r} is smaller than the scale {scale}')
    return SRPair(name, hr, bicubic_downsample(hr, scale))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; a clear error when the folder is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'image folder not found: {folder}')
    files = sorted(p for p in folder.iterdir() if is_image_path(p))
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
    return files


def read_rgb_uint8(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit image file as (H, W, 3) RGB uint8 (grey repeated, alpha dropped), read by
    :func:`lipt_arch.image_io.read_image` (BGR; one-line ``ImageError`` for a bad file)."""
    img = read_image(path)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[:, :, [2, 1, 0]]
    return to_rgb_uint8(img)


def downscale_uint8(img: np.ndarray, factor: float) -> np.ndarray:
    """MATLAB-style bicubic resize of an (H, W, C) uint8 image by ``factor`` (0 < factor < 1), rounded to uint8."""
    return _resize_to_8bit_levels(img.astype(np.float32) / 255.0, factor).astype(np.uint8)


def load_folder_pairs(folder: str | os.PathLike, scale: int, center_crop: int | None = None,
                      hr_downscales: Sequence[float] = ()) -> list[SRPair]:
    """Every image of an HR folder as an :class:`SRPair` (modcropped HR, bicubic LR).

    ``hr_downscales`` adds, for each factor f in (0, 1), a pair made from the image first shrunk by f (MATLAB
    bicubic, 8-bit), named ``<stem>@<f>``: the scale augmentation of the classic 291-image recipes."""
    pairs = []
    for path in list_images(folder):
        rgb = read_rgb_uint8(path)
        pairs.append(make_pair(path.stem, rgb, scale, center_crop))
        pairs += [make_pair(f'{path.stem}@{f:g}', downscale_uint8(rgb, f), scale, center_crop) for f in hr_downscales
                  if min(round(d * f) for d in rgb.shape[:2]) >= scale]
    return pairs


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class PairedMemoryDataset(Dataset):
    """In-memory SR pairs served in BasicSR's format: ``{'lq', 'gt', 'lq_path', 'gt_path'}``.

    ``lq`` (3, h, w) and ``gt`` (3, h*s, w*s) are float32 RGB tensors in [0, 1]. With ``gt_size`` set (training),
    each item is a random ``gt_size`` crop with random flips / 90-degree rotations (BasicSR's
    ``paired_random_crop`` and ``augment``); without it (validation), the whole pair.
    """

    def __init__(self, pairs: Sequence[SRPair], scale: int, gt_size: int | None = None, use_hflip: bool = True,
                 use_rot: bool = True, skip_smaller: bool = False) -> None:
        if not pairs:
            raise ValueError('no image pairs')
        self.skipped: list[str] = []  # names of images left out for being smaller than gt_size
        if gt_size is not None:
            if not isinstance(gt_size, int) or gt_size < scale or gt_size % scale:
                raise ValueError(f'gt_size must be a positive multiple of scale {scale}, got {gt_size!r}')
            small = [p.name for p in pairs if min(p.hr.shape[:2]) < gt_size]
            if small and not skip_smaller:
                raise ValueError(f'gt_size {gt_size} is larger than image(s) {", ".join(small)} '
                                 '(skip_smaller: true leaves such images out)')
            self.skipped = small
            pairs = [p for p in pairs if min(p.hr.shape[:2]) >= gt_size]
            if not pairs:
                raise ValueError(f'gt_size {gt_size} is larger than every image')
        self.pairs = list(pairs)
        self.scale = scale
        self.gt_size = gt_size
        self.use_hflip = use_hflip
        self.use_rot = use_rot

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        gt, lq = pair.hr, pair.lr
        if self.gt_size is not None:
            gt, lq = paired_random_crop(gt, lq, self.gt_size, self.scale, pair.name)
            # copies: augment flips in place, which must not touch the cached images
            gt, lq = np.ascontiguousarray(gt), np.ascontiguousarray(lq)
            gt, lq = augment([gt, lq], self.use_hflip, self.use_rot)
        return {'lq': _to_tensor(lq), 'gt': _to_tensor(gt), 'lq_path': pair.name, 'gt_path': pair.name}

