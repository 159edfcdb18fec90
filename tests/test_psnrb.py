"""PSNR-B metric: a hand-computed case, no blocking -> PSNR, registry, and the published Classic5 JPEG numbers."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from basicsr.metrics import calculate_metric, calculate_psnr

from lipt_arch.data.restoration import jpeg_compress
from lipt_arch.metrics import blocking_effect_factor, calculate_psnrb

from .conftest import shared_path


def test_hand_computed_two_blocks():
    # 16x16 restored image: left 8 columns 0, right 8 columns 16; ground truth all 0.
    # MSE = 16^2 / 2 = 128. One vertical block boundary (after column 7) in every row: 16 pairs of 16^2 = 256;
    # the row boundary (after row 7) has no difference: D_B = 16 * 256 / (16 + 16) = 128, D_Bc = 0.
    # BEF = log2(8) / log2(16) * 128 = 96, PSNR-B = 10 log10(255^2 / (128 + 96)).
    img = np.zeros((16, 16), np.uint8)
    img[:, 8:] = 16
    assert blocking_effect_factor(img) == pytest.approx(96.0)
    assert calculate_psnrb(img, np.zeros_like(img), crop_border=0) == pytest.approx(10 * math.log10(255 ** 2 / 224))
    assert calculate_psnr(img, np.zeros_like(img), crop_border=0) == pytest.approx(10 * math.log10(255 ** 2 / 128))


def test_no_blocking_equals_psnr():
    ramp = np.tile(np.arange(24, dtype=np.float64) * 4, (24, 1))  # equal steps everywhere: D_B == D_Bc
    assert blocking_effect_factor(ramp) == 0
    gt = ramp + 3
    assert calculate_psnrb(ramp, gt, 0) == pytest.approx(calculate_psnr(ramp, gt, 0))
    assert calculate_psnrb(gt, gt, 0) == float('inf')


def test_registered_and_channels_and_y():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    img = jpeg_compress(gt, 20)
    data = {'img': img, 'img2': gt}
    per_channel = np.mean([calculate_psnrb(img[..., c], gt[..., c], 0) for c in range(3)])
    assert calculate_metric(data, {'type': 'calculate_psnrb', 'crop_border': 0}) == pytest.approx(per_channel)
    y = calculate_metric(data, {'type': 'calculate_psnrb', 'crop_border': 0, 'test_y_channel': True})
    assert math.isfinite(y) and y != pytest.approx(per_channel)
    with pytest.raises(ValueError, match='shapes'):
        calculate_psnrb(img, gt[:16], 0)


def test_classic5_jpeg_q10_matches_published_input_scores():
    """The JPEG q10 input of Classic5 scores what SwinIR / FBCNN tables list for it: 27.82 dB, PSNR-B 25.21 dB."""
    folder = shared_path('datasets', 'Classic5')
    psnr, psnrb = [], []
    for path in sorted(folder.glob('*.png')):
        gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        lq = jpeg_compress(gt, 10)
        psnr.append(calculate_psnr(lq, gt, 0))
        psnrb.append(calculate_psnrb(lq, gt, 0))
    assert len(psnr) == 5
    assert round(float(np.mean(psnr)), 2) == 27.82 and round(float(np.mean(psnrb)), 2) == 25.21
