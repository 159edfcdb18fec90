"""SR training/validation pairs from the colour photographs bundled in scikit-image's wheel (no downloads).

BasicSR dataset ``SkimageSRDataset``. Option keys (besides BasicSR's own: ``name``, ``type``, batch sizes, ...):

- ``scale`` (int, set by BasicSR from the top-level ``scale``): LR = MATLAB bicubic of the modcropped HR.
- ``split`` (``train`` or ``val``; default: BasicSR's ``phase``, where ``test`` counts as ``val``): which images,
  :data:`VAL_IMAGES` held out for validation and :data:`TRAIN_IMAGES` for training.
- ``images`` (list of names from :data:`PHOTOS`): use these instead of the split's default list.
- ``gt_size`` (int, training): random HR crop size, with ``use_hflip`` / ``use_rot`` augmentation (default on).
- ``center_crop`` (int, validation): keep at most a centre ``center_crop`` x ``center_crop`` HR region per image
  (keeps CPU validation fast); default: whole images.

Items: ``{'lq': (3, h, w), 'gt': (3, h*s, w*s), 'lq_path': name, 'gt_path': name}``, float32 RGB in [0, 1].
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from basicsr.utils.registry import DATASET_REGISTRY

from lipt_arch.validation import positive_option

from .sr_pairs import PairedMemoryDataset, SRPair, make_pair


def _photos() -> dict[str, tuple[str, Callable[[], np.ndarray]]]:
    from skimage import data

    return {
        'astronaut': ('astronaut.png', data.astronaut),
        'chelsea': ('chelsea.png', data.chelsea),
        'coffee': ('coffee.png', data.coffee),
        'rocket': ('rocket.jpg', data.rocket),
        'immunohistochemistry': ('ihc.png', data.immunohistochemistry),
        'hubble_deep_field': ('hubble_deep_field.jpg', data.hubble_deep_field),
        'retina': ('retina.jpg', data.retina),
        'motorcycle_left': ('motorcycle_left.png', lambda: data.stereo_motorcycle()[0]),
        'motorcycle_right': ('motorcycle_right.png', lambda: data.stereo_motorcycle()[1]),
    }


#: Colour photographs shipped inside scikit-image's wheel, by name.
PHOTOS: tuple[str, ...] = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry', 'hubble_deep_field',
                           'retina', 'motorcycle_left', 'motorcycle_right')
#: Held out for validation (never in the default training list).
VAL_IMAGES: tuple[str, ...] = ('chelsea', 'coffee')
#: Default training images: every other photograph.
TRAIN_IMAGES: tuple[str, ...] = tuple(name for name in PHOTOS if name not in VAL_IMAGES)


def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image colour photograph as (H, W, 3) uint8 RGB; ValueError for an unknown name."""
    photos = _photos()
    if name not in photos:
        raise ValueError(f'unknown scikit-image photo {name!r}; choose from {", ".join(PHOTOS)}')
    filename, loader = photos[name]
    import skimage.data

    bundled = Path(skimage.data.__file__).parent / filename
    if not bundled.is_file():  # loading it would need a pooch download, which the demo must not do
        raise FileNotFoundError(f'scikit-image photo {name!r} is not bundled in this scikit-image install '
                                f'({bundled} missing); pick another image')
    return loader()


@lru_cache(maxsize=64)
def photo_pair(name: str, scale: int, center_crop: int | None = None) -> SRPair:
    """Cached :class:`SRPair` of a bundled photograph (modcropped HR, MATLAB-bicubic LR)."""
    return make_pair(name, load_photo(name), scale, center_crop)



@DATASET_REGISTRY.register()
class SkimageSRDataset(PairedMemoryDataset):
    """BasicSR dataset of HR/LR pairs from scikit-image's bundled colour photographs (see the module docstring)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        scale = positive_option(opt, 'scale', 'SkimageSRDataset', required=True)
        split = opt.get('split', opt.get('phase', 'train'))
        split = 'val' if split == 'test' else split
        if split not in ('train', 'val'):
            raise ValueError(f"SkimageSRDataset option 'split' must be 'train' or 'val', got {split!r}")
        names = opt.get('images', TRAIN_IMAGES if split == 'train' else VAL_IMAGES)
        if isinstance(names, str) or not names:
            raise ValueError(f"SkimageSRDataset option 'images' must be a non-empty list of names, got {names!r}")
        unknown = [n for n in names if n not in PHOTOS]
        if unknown:
            raise ValueError(f'SkimageSRDataset: unknown image(s) {", ".join(map(repr, unknown))}; '
                             f'choose from {", ".join(PHOTOS)}')
        gt_size = positive_option(opt, 'gt_size', 'SkimageSRDataset') if split == 'train' else None
        if split == 'train' and gt_size is None:
            raise ValueError("SkimageSRDataset option 'gt_size' is required for training")
        center_crop = positive_option(opt, 'center_crop', 'SkimageSRDataset')
        self.opt = opt
        super().__init__([photo_pair(n, scale, center_crop) for n in names], scale, gt_size,
                         bool(opt.get('use_hflip', True)), bool(opt.get('use_rot', True)))
