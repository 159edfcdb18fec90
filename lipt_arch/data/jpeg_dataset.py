"""JPEG compression artifact reduction: clean images encoded on the fly with OpenCV's JPEG codec."""
from __future__ import annotations

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY

from .restoration import GTDegradationDataset, draw_level, jpeg_compress, parse_level


@DATASET_REGISTRY.register()
class LIPTJPEGDataset(GTDegradationDataset):
    """``lq = decode(encode_jpeg(gt, quality))``, grayscale by default (``color: gray``, one channel).

    Option ``jpeg_quality``: an integer 1..100 (10, 20, 30, 40) or ``[low, high]`` for blind training, drawn per
    image. Colour images are read as gray with OpenCV (0.299 R + 0.587 G + 0.114 B, full range, as SwinIR and
    FBCNN evaluate grayscale JPEG); ``color: rgb`` encodes 3-channel JPEG instead. Items: ``lq``, ``gt`` (C, H, W)
    float32 in [0, 1].
    """

    default_color = 'gray'

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        if 'jpeg_quality' not in opt:
            raise ValueError("dataset option 'jpeg_quality' is required (e.g. 10 or [10, 40])")
        self.quality = parse_level(opt['jpeg_quality'], 'jpeg_quality', 1, 100, integer=True)

    def degrade(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        quality = int(draw_level(self.quality, rng, integer=True))
        return jpeg_compress(img, quality).astype(np.float32) / 255.0
