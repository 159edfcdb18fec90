"""Helpers for the BasicSR workflow tests: tiny generated image pairs, tiny option dicts, running ``basicsr``."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from .conftest import REPO

TINY_NET = {'type': 'LIPT', 'upscale': 2, 'num_feat': 8, 'num_block': 1, 'window_size': 8}


def make_pairs(root: Path, count: int = 4, size: int = 32, scale: int = 2, seed: int = 0) -> tuple[Path, Path]:
    """``count`` smooth random HR PNGs (size x size) and their MATLAB-bicubic LR under ``root/{HR,LR}``."""
    from basicsr.utils.matlab_functions import imresize  # after lipt_arch's compat shim (conftest)

    rng = np.random.default_rng(seed)
    hr_dir, lr_dir = root / 'HR', root / 'LR'
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.random((size // 8, size // 8, 3)).astype(np.float32)
        hr = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        lr = imresize(hr, 1 / scale).clip(0, 1)
        cv2.imwrite(str(hr_dir / f'img{i}.png'), (hr * 255).round().astype(np.uint8))
        cv2.imwrite(str(lr_dir / f'img{i}.png'), (lr * 255).round().astype(np.uint8))
    return hr_dir, lr_dir


def paired_dataset(name: str, hr_dir: Path, lr_dir: Path, train: bool, gt_size: int = 16) -> dict[str, Any]:
    """A BasicSR PairedImageDataset option for folders (``train`` adds crops, flips, batch)."""
    opt = {'name': name, 'type': 'PairedImageDataset', 'dataroot_gt': str(hr_dir), 'dataroot_lq': str(lr_dir),
           'io_backend': {'type': 'disk'}}
    if train:
        opt.update(gt_size=gt_size, use_hflip=True, use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=2,
                   dataset_enlarge_ratio=1, prefetch_mode=None)
    return opt


def train_options(root: Path, name: str = 'tiny', iters: int = 2, model_type: str = 'LIPTModel',
                  **extra: Any) -> dict[str, Any]:
    """A complete tiny training option dict (data generated under ``root/data``), CPU only."""
    hr_dir, lr_dir = make_pairs(root / 'data')
    opt = {
        'name': name, 'model_type': model_type, 'scale': 2, 'num_gpu': 0, 'manual_seed': 0,
        'datasets': {'train': paired_dataset('train', hr_dir, lr_dir, True),
                     'val': paired_dataset('val', hr_dir, lr_dir, False)},
        'network_g': dict(TINY_NET),
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.5, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.99]},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5},
                  'total_iter': iters, 'warmup_iter': -1, 'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'val_freq': iters, 'save_img': False,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True},
                            'ssim': {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': iters, 'use_tb_logger': False},
        'dist_params': {'backend': 'gloo', 'port': 29500},
    }
    return merge(opt, extra)


def merge(base: dict, extra: dict) -> dict:
    """``base`` deep-copied with ``extra`` merged in (nested dicts merged, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_options(opt: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def start_basicsr(args: list[str], cwd: Path, module: str = 'lipt_arch.basicsr_support.command') -> subprocess.Popen:
    """Start ``python -m MODULE ARGS`` in ``cwd`` (default: the ``basicsr`` console script's code, no PATH lookup);
    read it with ``.communicate()`` (text)."""
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    # Ctrl-C reaches the child as from a terminal even when this process runs in the background (where the shell
    # ignores SIGINT and children inherit that).
    return subprocess.Popen([sys.executable, '-m', module, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
