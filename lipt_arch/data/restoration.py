"""Shared pieces of the restoration datasets: option parsing, per-image seeds, Gaussian noise and JPEG encoding.

Images are numpy arrays, HWC (or HW), BGR as OpenCV reads them; float32 in [0, 1] unless stated otherwise.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from basicsr.data.data_util import paths_from_lmdb
from basicsr.utils import FileClient, imfrombytes, img2tensor, scandir
from torch.utils import data

from lipt_arch.image_io import IMAGE_EXTENSIONS
from lipt_arch.validation import positive_option

Level = tuple[float, float]  # (low, high); low == high for a fixed level


def parse_level(value: Any, option: str, low: float, high: float, integer: bool = False) -> Level:
    """Read a fixed level (``25``) or a range for blind training (``[0, 50]``) into ``(low, high)``.

    Raises a one-line ``ValueError`` naming ``option`` when the value is not a number / pair of numbers within
    ``[low, high]`` (integers when ``integer``), or when the pair is reversed.
    """
    kind = 'an integer' if integer else 'a number'
    expected = f'{kind} in {low:g}..{high:g} or a [low, high] pair of them'
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    ok_type = (int,) if integer else (int, float)
    if (len(values) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, ok_type) for v in values)
            or any(not low <= v <= high for v in values) or values[0] > values[-1]):
        raise ValueError(f'dataset option {option!r} must be {expected}, got {value!r}')
    return float(values[0]), float(values[-1])


def draw_level(level: Level, rng: np.random.Generator, integer: bool = False) -> float:
    """A fixed level as is, or a uniform draw from ``[low, high]`` (integers inclusive when ``integer``)."""
    low, high = level
    if low == high:
        return low
    return float(rng.integers(int(low), int(high) + 1)) if integer else float(rng.uniform(low, high))


def stable_seed(name: str, seed: int = 0) -> int:
    """A seed from an image name that is the same in every process and run (unlike Python's salted ``hash``)."""
    digest = hashlib.sha256(f'{seed}:{name}'.encode()).digest()
    return int.from_bytes(digest[:8], 'little')


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``img + N(0, (sigma / 255)^2)`` per pixel and channel; float32, not clipped (as DnCNN/SwinIR train and test).

    ``img``: float in [0, 1]; ``sigma`` on the [0, 255] scale.
    """
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return (img + noise).astype(np.float32)


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with OpenCV's JPEG codec at an integer ``quality`` (1..100).

    ``img``: uint8 HW (grayscale, encoded as one channel) or HWC with 1 or 3 (BGR) channels; returns uint8 of the
    same shape. basicsr's ``add_jpg_compression`` passes a float quality, which OpenCV 5 rejects.
    """
    if img.dtype != np.uint8:
        raise TypeError(f'jpeg_compress needs a uint8 image, got {img.dtype}')
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise ValueError(f'JPEG quality must be in 1..100, got {quality}')
    ok, buffer = cv2.imencode('.jpg', img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise RuntimeError(f'OpenCV could not JPEG-encode an image of shape {img.shape}')
    flag = cv2.IMREAD_GRAYSCALE if img.ndim == 2 or img.shape[2] == 1 else cv2.IMREAD_COLOR
    return cv2.imdecode(buffer, flag).reshape(img.shape)


COLORS = ('rgb', 'gray')


def random_crop_augment(img: np.ndarray, size: int, hflip: bool, rot: bool, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` x ``size`` crop (reflect-padded first if a side is shorter), then a random flip/rotation.

    ``img``: HWC; returns a contiguous HWC array of the same dtype.
    """
    pad_h, pad_w = max(size - img.shape[0], 0), max(size - img.shape[1], 0)
    if pad_h or pad_w:
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode='reflect')
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(0, img.shape[1] - size + 1))
    img = img[top:top + size, left:left + size]
    if hflip and rng.random() < 0.5:
        img = img[:, ::-1]
    if rot and rng.random() < 0.5:
        img = img[::-1]
    if rot and rng.random() < 0.5:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


class GTDegradationDataset(data.Dataset):
    """Ground-truth images from a folder (``io_backend: {type: disk}``) or an lmdb, degraded on the fly.

    Subclasses implement :meth:`degrade`. Options (a BasicSR dataset dict):
        dataroot_gt: folder of images (sorted, recursive) or a ``.lmdb`` folder.
        meta_info_file: optional (disk): a text file whose lines start with image paths relative to ``dataroot_gt``
            (BasicSR's format, e.g. ``0001.png (2040,1404,3)``); only those images are used.
        io_backend: ``{type: disk}`` or ``{type: lmdb}``.
        phase: ``train`` (random ``gt_size`` crops, ``use_hflip`` / ``use_rot``, fresh random degradation from
            numpy's global RNG, which BasicSR seeds from ``manual_seed`` per worker) or anything else (whole images,
            degradation seeded by :func:`stable_seed` of the image name and option ``seed``, default 0).
        color: ``rgb`` (3 channels) or ``gray`` (1 channel, OpenCV's BGR -> gray: 0.299 R + 0.587 G + 0.114 B).

    Items: ``{'lq': (C, H, W) float32, 'gt': (C, H, W) float32 in [0, 1], 'lq_path': str, 'gt_path': str}``, RGB
    channel order; ``lq`` is in [0, 1] except for unclipped noise.
    """

    default_color = 'rgb'

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.color = opt.get('color', self.default_color)
        if self.color not in COLORS:
            raise ValueError(f"dataset option 'color' must be one of {COLORS}, got {self.color!r}")
        self.train = opt.get('phase', 'train') == 'train'
        self.seed = int(opt.get('seed', 0))
        root = opt.get('dataroot_gt')
        if not root or not os.path.isdir(root):
            raise FileNotFoundError(f"dataset option 'dataroot_gt': folder not found: {root}")
        if self.io_backend_opt.get('type') == 'lmdb':
            self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
            self.paths = paths_from_lmdb(root)
        elif opt.get('meta_info_file'):
            self.paths = [os.path.join(root, name) for name in _read_meta_info(opt['meta_info_file'])]
        else:
            self.paths = sorted(os.path.join(root, p) for p in scandir(root, suffix=IMAGE_EXTENSIONS, recursive=True))
        if not self.paths:
            raise FileNotFoundError(f"dataset option 'dataroot_gt': no images in {root}")
        if self.train:
            positive_option(opt, 'gt_size', 'dataset', required=True)
        self.file_client: FileClient | None = None

    def degrade(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 HWC ground truth -> float32 HWC degraded image, [0, 1] scale."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        if self.file_client is None:
            backend = dict(self.io_backend_opt)
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        img = imfrombytes(self.file_client.get(path, 'gt'), flag='grayscale' if self.color == 'gray' else 'color')
        if img is None:
            raise ValueError(f'could not decode image {path}')
        if img.ndim == 2:
            img = img[..., None]
        if self.train:
            rng = np.random.default_rng(np.random.randint(0, 2**31))
            img = random_crop_augment(img, self.opt['gt_size'], self.opt.get('use_hflip', True),
                                      self.opt.get('use_rot', True), rng)
        else:
            rng = np.random.default_rng(stable_seed(os.path.splitext(os.path.basename(path))[0], self.seed))
        lq = self.degrade(img, rng)
        gt, lq = img2tensor([img.astype(np.float32) / 255.0, lq], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': path, 'gt_path': path}


def _read_meta_info(path: str) -> list[str]:
    """First token of each non-empty line of a BasicSR meta-info file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset option 'meta_info_file': file not found: {path}")
    with open(path, encoding='utf-8') as handle:
        return [line.split()[0] for line in handle if line.strip()]
