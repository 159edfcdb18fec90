"""Scores of a model on a test folder: SR by the paper's protocol (LIPT_SPEC.md section 4), denoising and JPEG
artifact reduction by the protocol of docs/restoration.md.

SR: HR modcropped to the scale, LR by MATLAB-style bicubic rounded to 8 bits, output clamped to [0, 1] and rounded to
8 bits, PSNR and SSIM on the Y channel (BT.601) with ``scale`` border pixels cropped (BasicSR's metrics).
Restoration: the degraded inputs are the validation inputs of :class:`~lipt_arch.data.LIPTDenoiseDataset` /
:class:`~lipt_arch.data.LIPTJPEGDataset` (seeded per image name: the same every run), output clamped and rounded to
8 bits, no border cropped; denoising scores RGB PSNR / SSIM, JPEG gray PSNR / SSIM / PSNR-B.
Used to write the model cards (benchmarks/zoo_eval.py) and by the tests that check a shipped model still scores what
its card says.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from torch import nn

from lipt_arch.data.denoise_dataset import LIPTDenoiseDataset
from lipt_arch.data.jpeg_dataset import LIPTJPEGDataset
from lipt_arch.data.sr_pairs import bicubic_upsample, load_folder_pairs
from lipt_arch.metrics.psnrb import calculate_psnrb
from lipt_arch.zoo import HEADLINE

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


# The zoo's test sets per task, and where each lives under a datasets folder (``$LIPT_SHARED/datasets``).
TEST_SETS = {'sr': ('Set5', 'Set14', 'B100', 'Urban100'), 'denoise': ('CBSD68', 'McMaster'),
             'jpeg': ('Classic5', 'LIVE1')}
TEST_FOLDERS = {'Set5': 'Set5/HR', 'Set14': 'Set14/HR', 'B100': 'B100/HR', 'Urban100': 'Urban100/HR',
                'CBSD68': 'CBSD68', 'Kodak24': 'Kodak24', 'McMaster': 'McMaster', 'Classic5': 'Classic5',
                'LIVE1': 'LIVE1'}

# Restoration tasks of the zoo: the dataset that makes the degraded inputs, its level option and the levels scored.
RESTORATION = {
    'denoise': {'dataset': LIPTDenoiseDataset, 'option': 'noise_sigma', 'color': 'rgb', 'levels': (15, 25, 50)},
    'jpeg': {'dataset': LIPTJPEGDataset, 'option': 'jpeg_quality', 'color': 'gray', 'levels': (10, 20, 30, 40)},
}
Restorer = Callable[[torch.Tensor], torch.Tensor]  # (1, C, H, W) float degraded -> (1, C, H, W) restored


def network_restorer(model: nn.Module) -> Restorer:
    """Run ``model`` (on CPU, fp32, no gradient) on one (1, C, H, W) image."""
    @torch.no_grad()
    def run(lq: torch.Tensor) -> torch.Tensor:
        return model(lq)
    return run


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float -> (H, W, C) uint8, clamped to [0, 1] and rounded (channel order kept: the metrics here are
    the same in RGB and BGR)."""
    return np.clip(np.round(img.float().clamp(0, 1).numpy() * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def score_restoration(restore: Restorer | None, folder: str | os.PathLike, task: str, level: int) -> dict[str, float]:
    """Mean PSNR, SSIM (and PSNR-B for ``task='jpeg'``) of ``restore`` over the images of ``folder`` degraded at
    ``level`` (noise sigma on the [0, 255] scale, or JPEG quality); ``None`` scores the degraded input itself.

    Returns ``{'psnr', 'ssim', ['psnrb',] 'images'}``.
    """
    spec = RESTORATION[task]
    dataset = spec['dataset']({'dataroot_gt': str(folder), 'phase': 'test', spec['option']: level,
                               'color': spec['color']})
    metrics = {'psnr': calculate_psnr, 'ssim': calculate_ssim} | ({'psnrb': calculate_psnrb} if task == 'jpeg' else {})
    totals = dict.fromkeys(metrics, 0.0)
    for item in dataset:
        out = item['lq'][None] if restore is None else restore(item['lq'][None])
        got, gt = _to_uint8(out[0]), _to_uint8(item['gt'])
        for name, metric in metrics.items():
            totals[name] += float(metric(got, gt, crop_border=0, test_y_channel=False))
    return {name: total / len(dataset) for name, total in totals.items()} | {'images': len(dataset)}


def headline_score(model: nn.Module, card: dict, datasets: str | os.PathLike) -> dict[str, float]:
    """Score ``model`` on its card's headline test (:data:`lipt_arch.zoo.HEADLINE`: Set5 for SR, CBSD68 at sigma 25
    for denoising, Classic5 at quality 10 for JPEG), the test sets under ``datasets``; ``{'psnr', 'ssim', ...}``."""
    test, level = HEADLINE[card['task']]
    folder = Path(datasets) / TEST_FOLDERS[test]
    if level is None:
        return score_folder(network_upscaler(model), folder, card['scale'])
    return score_restoration(network_restorer(model), folder, card['task'], int(level))
