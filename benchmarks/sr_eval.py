"""Helpers the benchmarks (and their tests) share: Y-channel PSNR (the zoo's protocol, re-exported) and seeding.

Images are (H, W, 3) float32 RGB numpy arrays in [0, 1], as :mod:`lipt_arch.data.sr_pairs` makes them.
"""
from __future__ import annotations

import random

import numpy as np
import torch

import lipt_arch  # noqa: F401  (makes basicsr 1.4.2 importable: before any basicsr import)
from lipt_arch.zoo.evaluate import psnr_y  # noqa: F401  (one protocol for the zoo cards and the benchmarks)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (crops and augmentation use Python's and NumPy's generators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
