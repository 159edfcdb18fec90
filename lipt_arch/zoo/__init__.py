"""Pretrained LIPT models shipped inside the package: fused weights (safetensors, config in the metadata) plus a
model card each in ``models.json`` (data, recipe, training budget, scores next to bicubic and the paper's).

    from lipt_arch.zoo import load_pretrained
    net = load_pretrained('tiny', scale=4)   # or load_pretrained('lipt-tiny-x4'); fused, eval mode, on CPU

``lipt models`` lists them; ``lipt infer`` uses ``lipt-tiny-x<scale>`` when no ``--model`` is given. The cards are
written by ``benchmarks/zoo_eval.py``, which also measures the scores; docs/models.md is the human-readable form.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lipt_arch.checkpoints import load_model
from lipt_arch.errors import CheckpointError

MANIFEST = 'models.json'
DEFAULT_PRESET = 'tiny'
DEFAULT_SCALE = 4


def package_folder() -> Path:
    """The folder holding ``models.json`` and ``weights/`` (inside the installed package)."""
    return Path(str(resources.files(__name__)))


@lru_cache(maxsize=1)
def model_cards() -> dict[str, dict[str, Any]]:
    """Every shipped model's card, by name (e.g. ``'lipt-tiny-x4'``), in the manifest's order."""
    path = package_folder() / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding='utf-8'))


def model_name(preset: str = DEFAULT_PRESET, scale: int = DEFAULT_SCALE, task: str = 'sr') -> str:
    """The zoo name of a model: ``lipt-<preset>-x<scale>`` for super-resolution, ``lipt-<preset>-<task>`` else."""
    return f'lipt-{preset}-x{scale}' if task == 'sr' else f'lipt-{preset}-{task}'


def resolve_name(spec: str = DEFAULT_PRESET, scale: int | None = None) -> str:
    """A shipped model's name from a name (``'lipt-tiny-x2'``, case-insensitive) or a preset plus ``scale``
    (``'tiny'``, 2; default scale 4). Raises ``ValueError`` naming the shipped models when there is none."""
    cards = model_cards()
    key = spec.lower()
    if key in cards:
        card = cards[key]
        if scale is not None and scale != card['scale']:
            raise ValueError(f"pretrained model {key!r} is x{card['scale']}, not x{scale}")
        return key
    candidate = model_name(key, DEFAULT_SCALE if scale is None else scale)
    if candidate in cards:
        return candidate
    shipped = ', '.join(cards) or 'none'
    raise ValueError(f'no pretrained LIPT {spec!r}' + (f' at x{scale}' if scale is not None else '') +
                     f'; shipped models: {shipped}')


def weights_path(name: str) -> Path:
    """Path of a shipped model's weights file (``name`` as :func:`resolve_name` returns it)."""
    return package_folder() / 'weights' / model_cards()[name]['file']


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checked_weights(name: str) -> Path:
    """Path of a shipped model's weights after checking the file exists and matches its card's SHA-256."""
    path = weights_path(name)
    expected = model_cards()[name].get('sha256')
    if not path.is_file():
        raise CheckpointError(f'{path}: weights of pretrained model {name!r} missing from this install')
    if expected and file_sha256(path) != expected:
        raise CheckpointError(f'{path}: weights of pretrained model {name!r} are damaged (SHA-256 mismatch); '
                              'reinstall lipt_arch')
    return path


def load_pretrained(spec: str = DEFAULT_PRESET, scale: int | None = None,
                    device: torch.device | str = 'cpu') -> nn.Module:
    """A shipped pretrained LIPT, fused, in eval mode: ``load_pretrained('tiny', scale=2)`` or
    ``load_pretrained('lipt-tiny-x2')``. Input (B, C, H, W) in [0, 1] as for :class:`lipt_arch.LIPT`.

    The file's SHA-256 is checked against its card, so a damaged install fails with a clear error.
    """
    return load_model(checked_weights(resolve_name(spec, scale)), device)


__all__ = ['DEFAULT_PRESET', 'DEFAULT_SCALE', 'checked_weights', 'file_sha256', 'load_pretrained', 'model_cards',
           'model_name', 'resolve_name', 'weights_path']
