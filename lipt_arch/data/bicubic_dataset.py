"""SR pairs made on load from folders of HR images: the classic way to train on T91, BSD200, General100 or DIV2K HR.

BasicSR dataset ``BicubicSRDataset``. Option keys (besides BasicSR's own: ``name``, ``type``, batch sizes, ...):

- ``dataroot_gt`` (a folder) or ``hr_folders`` (a list of folders): HR images (png, jpg, bmp, tif) directly in each
  folder (BasicSR itself takes ``dataroot_gt`` to be one path, hence the second key for several).
- ``scale`` (int, set by BasicSR from the top-level ``scale``): LR = MATLAB bicubic of the modcropped HR, 8-bit
  rounded (:func:`lipt_arch.data.sr_pairs.make_pair`), made once when the dataset is built and held in memory.
- ``gt_size`` (int, training): random HR crop size, with ``use_hflip`` / ``use_rot`` augmentation (default on).
  Images smaller than ``gt_size`` are refused by name, or left out (and logged) with ``skip_smaller: true``.
- ``center_crop`` (int, optional): keep at most a centre ``center_crop`` x ``center_crop`` HR region per image.
- ``hr_downscales`` (list of floats in (0, 1), optional): scale augmentation; each HR image is also used shrunk by
  each factor (MATLAB bicubic, 8-bit), as the classic 291-image recipes do. [0.9, 0.8, 0.7, 0.6] adds 2.3x the
  pairs' memory.

Items: ``{'lq': (3, h, w), 'gt': (3, h*s, w*s), 'lq_path': name, 'gt_path': name}``, float32 RGB in [0, 1]
(grayscale images repeated to three channels). Memory: about 1.3x the HR images as float32 (47 MP of T91 + BSD200 +
General100 take about 0.7 GB at x2).
"""
from __future__ import annotations

from typing import Any

from basicsr.utils import get_root_logger
from basicsr.utils.registry import DATASET_REGISTRY

from lipt_arch.validation import downscale_factors, positive_option

from .sr_pairs import PairedMemoryDataset, load_folder_pairs


@DATASET_REGISTRY.register()
class BicubicSRDataset(PairedMemoryDataset):
    """BasicSR dataset of HR/LR pairs from HR folders, LR made by MATLAB-style bicubic (see the module docstring)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        scale = positive_option(opt, 'scale', 'BicubicSRDataset', required=True)
        if ('dataroot_gt' in opt) == ('hr_folders' in opt):
            raise ValueError("BicubicSRDataset needs exactly one of 'dataroot_gt' (a folder) and 'hr_folders' "
                             "(a list of folders)")
        roots = [opt['dataroot_gt']] if 'dataroot_gt' in opt else opt['hr_folders']
        key = 'dataroot_gt' if 'dataroot_gt' in opt else 'hr_folders'
        if isinstance(roots, str) or not roots or not all(isinstance(r, str) for r in roots):
            raise ValueError(f'BicubicSRDataset option {key!r} must be a folder (dataroot_gt) or a non-empty list '
                             f'of folders (hr_folders), got {opt[key]!r}')
        gt_size = positive_option(opt, 'gt_size', 'BicubicSRDataset')
        if opt.get('phase') == 'train' and gt_size is None:
            raise ValueError("BicubicSRDataset option 'gt_size' is required for training")
        center_crop = positive_option(opt, 'center_crop', 'BicubicSRDataset')
        downscales = downscale_factors("BicubicSRDataset option 'hr_downscales'", opt.get('hr_downscales'))
        pairs = [pair for root in roots for pair in load_folder_pairs(root, scale, center_crop, downscales)]
        skip_smaller = opt.get('skip_smaller', False)
        if not isinstance(skip_smaller, bool):
            raise ValueError(f"BicubicSRDataset option 'skip_smaller' must be true or false, got {skip_smaller!r}")
        self.opt = opt
        super().__init__(pairs, scale, gt_size, bool(opt.get('use_hflip', True)),
                         bool(opt.get('use_rot', True)), skip_smaller)
        if self.skipped:
            get_root_logger().info(f'{opt.get("name", "BicubicSRDataset")}: {len(self.skipped)} image(s) smaller than '
                                   f'gt_size {gt_size} left out: {", ".join(self.skipped)}')
