"""Scores of an SR model on an HR test folder, by the paper's protocol (LIPT_SPEC.md section 4).

HR modcropped to the scale, LR by MATLAB-style bicubic rounded to 8 bits, output clamped to [0, 1] and rounded to 8
bits, PSNR and SSIM on the Y channel (BT.601) with ``scale`` border pixels cropped (BasicSR's metrics). Used to write
the model cards (benchmarks/zoo_eval.py) and by the tests that check a shipped model still scores what its card says.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from torch import nn

from lipt_arch.data.sr_pairs import bicubic_upsample, load_folder_pairs

Upscaler = Callable[[np.ndarray], np.ndarray]  # (h, w, 3) float RGB [0, 1] -> (h*s, w*s, 3)


def _to_bgr_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)[..., ::-1]


def psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Y-channel PSNR (dB) of (H, W, 3) RGB float [0, 1] images after 8-bit rounding, border ``scale`` cropped."""
    return float(calculate_psnr(_to_bgr_uint8(sr), _to_bgr_uint8(hr), crop_border=scale, test_y_channel=True))


def network_upscaler(model: nn.Module) -> Upscaler:
    """Run ``model`` (on CPU, fp32, no gradient) on one (h, w, 3) RGB image in [0, 1]."""
    @torch.no_grad()
    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
        return model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    return run


def score_folder(upscale: Upscaler | None, folder: str | os.PathLike, scale: int) -> dict[str, float]:
    """Mean Y-PSNR (dB) and Y-SSIM of ``upscale`` over the HR images of ``folder``; ``None`` scores bicubic.

    Returns ``{'psnr', 'ssim', 'images'}``.
    """
    pairs = load_folder_pairs(folder, scale)
    psnr, ssim = [], []
    for pair in pairs:
        sr = bicubic_upsample(pair.lr, scale) if upscale is None else upscale(pair.lr)
        psnr.append(psnr_y(sr, pair.hr, scale))
        ssim.append(calculate_ssim(_to_bgr_uint8(sr), _to_bgr_uint8(pair.hr), crop_border=scale, test_y_channel=True))
    return {'psnr': float(np.mean(psnr)), 'ssim': float(np.mean(ssim)), 'images': len(pairs)}
