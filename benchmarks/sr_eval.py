"""Helpers the benchmarks (and their tests) share: Y-channel PSNR and seeding.

Images are (H, W, 3) float32 RGB numpy arrays in [0, 1], as :mod:`lipt_arch.data.sr_pairs` makes them.
"""
from __future__ import annotations

import random

import numpy as np
import torch

import lipt_arch  # noqa: F401  (makes basicsr 1.4.2 importable: before any basicsr import)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W, C) float [0, 1] -> uint8 [0, 255], rounded like a saved image."""
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Y-channel PSNR (dB) of (H, W, 3) RGB float [0, 1] images after 8-bit rounding, border ``scale`` cropped.

    BasicSR's ``calculate_psnr(test_y_channel=True)``; its ``to_y_channel`` expects BGR, hence the channel flip.
    """
    from basicsr.metrics import calculate_psnr  # after lipt_arch's compat shim

    return float(calculate_psnr(to_uint8(sr)[..., ::-1], to_uint8(hr)[..., ::-1], crop_border=scale,
                                test_y_channel=True))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (crops and augmentation use Python's and NumPy's generators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
