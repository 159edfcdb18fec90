"""PSNR-B (Yim and Bovik, "Quality assessment of deblocked images", IEEE TIP 20(1), 2011) as a BasicSR metric.

``PSNR-B = 10 log10(255^2 / (MSE + BEF))``, where the blocking effect factor BEF of the restored image is
``log2(B) / log2(min(H, W)) * (D_B - D_Bc)`` when positive, else 0: ``D_B`` is the mean squared difference of
neighbouring pixels across the 8 x 8 block boundaries, ``D_Bc`` the same for the neighbours that are not across a
boundary. YAML: ``psnrb: {type: calculate_psnrb, crop_border: 0, test_y_channel: true}``.
"""
from __future__ import annotations

import math

import numpy as np
from basicsr.metrics.metric_util import reorder_image, to_y_channel
from basicsr.utils.registry import METRIC_REGISTRY

BLOCK = 8  # JPEG block size


def blocking_effect_factor(channel: np.ndarray, block: int = BLOCK) -> float:
    """BEF of one (H, W) channel on the [0, 255] scale; boundaries after columns/rows block-1, 2*block-1, ...

    The counts of boundary and non-boundary pairs are the actual ones, so any H, W works; for multiples of 8 this
    equals the SwinIR / FBCNN implementation.
    """
    x = channel.astype(np.float64)
    height, width = x.shape
    if min(height, width) < 2:
        return 0.0
    diff_h = (x[:, :-1] - x[:, 1:]) ** 2  # (H, W-1): column c vs c+1
    diff_v = (x[:-1] - x[1:]) ** 2  # (H-1, W): row r vs r+1
    on_col = np.zeros(width - 1, bool)
    on_col[block - 1::block] = True
    on_row = np.zeros(height - 1, bool)
    on_row[block - 1::block] = True
    n_boundary = height * on_col.sum() + width * on_row.sum()
    n_inner = height * (~on_col).sum() + width * (~on_row).sum()
    if n_boundary == 0 or n_inner == 0:
        return 0.0
    d_boundary = (diff_h[:, on_col].sum() + diff_v[on_row].sum()) / n_boundary
    d_inner = (diff_h[:, ~on_col].sum() + diff_v[~on_row].sum()) / n_inner
    if d_boundary <= d_inner:
        return 0.0
    return float(math.log2(block) / math.log2(min(height, width)) * (d_boundary - d_inner))


@METRIC_REGISTRY.register()
def calculate_psnrb(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str = 'HWC',
                    test_y_channel: bool = False, **kwargs) -> float:
    """PSNR-B (dB) of the restored ``img`` against the ground truth ``img2``, both [0, 255], HWC/CHW or HW.

    Channels are scored separately and averaged (``test_y_channel``: the Y channel of BGR images only). The BEF is
    computed on ``img``; crop a multiple of 8 pixels (``crop_border``) to keep the block grid.
    """
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes are different: {img.shape}, {img2.shape}.')
    img = reorder_image(img, input_order=input_order).astype(np.float64)
    img2 = reorder_image(img2, input_order=input_order).astype(np.float64)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    scores = []
    for c in range(img.shape[2]):
        mse = np.mean((img[..., c] - img2[..., c]) ** 2)
        denominator = mse + blocking_effect_factor(img[..., c])
        scores.append(float('inf') if denominator == 0 else 10.0 * math.log10(255.0 ** 2 / denominator))
    return float(np.mean(scores))
