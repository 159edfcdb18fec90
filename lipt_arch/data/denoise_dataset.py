"""Colour Gaussian denoising: clean images degraded on the fly with additive white Gaussian noise."""
from __future__ import annotations

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY

from .restoration import GTDegradationDataset, add_gaussian_noise, draw_level, parse_level


@DATASET_REGISTRY.register()
class LIPTDenoiseDataset(GTDegradationDataset):
    """``lq = gt + N(0, sigma^2)``, sigma on the [0, 255] scale, noise not clipped.

    Option ``noise_sigma``: a level (15, 25, 50) or ``[low, high]`` for blind training, sigma drawn uniformly per
    image (validation: per image from its fixed seed). Other options: :class:`GTDegradationDataset` (``color``
    defaults to ``rgb``). Items: ``lq``, ``gt`` (C, H, W) float32, RGB.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        if 'noise_sigma' not in opt:
            raise ValueError("dataset option 'noise_sigma' is required (e.g. 25 or [0, 75])")
        self.sigma = parse_level(opt['noise_sigma'], 'noise_sigma', 0, 255)

    def degrade(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return add_gaussian_noise(img.astype(np.float32) / 255.0, draw_level(self.sigma, rng), rng)
