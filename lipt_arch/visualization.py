"""Images for people: panels side by side (e.g. ``bicubic | LIPT | GT`` after a validation)."""
from __future__ import annotations

import numpy as np

SEPARATOR_PX = 4  # white gap between the panels of a side-by-side PNG


def side_by_side(images: list[np.ndarray]) -> np.ndarray:
    """Uint8 (H, W, C) or (H, W) images side by side with white gaps, each bottom-padded to the tallest."""
    images = [img[:, :, None] if img.ndim == 2 else img for img in images]
    height = max(img.shape[0] for img in images)
    panels = []
    for i, img in enumerate(images):
        pad = np.full((height - img.shape[0], img.shape[1], img.shape[2]), 255, np.uint8)
        panels.append(np.concatenate([img, pad], axis=0))
        if i < len(images) - 1:
            panels.append(np.full((height, SEPARATOR_PX, img.shape[2]), 255, np.uint8))
    return np.concatenate(panels, axis=1)
