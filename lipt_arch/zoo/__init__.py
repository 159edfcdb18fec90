"""Pretrained LIPT models shipped inside the package: fused weights (safetensors, config in the metadata) plus a
model card each in ``models.json`` (data, recipe, training budget, scores next to bicubic or the degraded input and
the paper's).

    from lipt_arch.zoo import load_pretrained
    net = load_pretrained('tiny', scale=4)   # or load_pretrained('lipt-tiny-x4'); fused, eval mode, on CPU
    net = load_pretrained('tiny', task='denoise')   # lipt-tiny-denoise; task='jpeg': lipt-tiny-jpeg (gray)

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
TASKS = ('sr', 'denoise', 'jpeg')
# The score `lipt models` shows per task: (test set, level); the level is the noise sigma or the JPEG quality.
HEADLINE = {'sr': ('Set5', None), 'denoise': ('CBSD68', '25'), 'jpeg': ('Classic5', '10')}
LEVEL_NAMES = {'denoise': 'sigma', 'jpeg': 'q'}


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


def resolve_name(spec: str = DEFAULT_PRESET, scale: int | None = None, task: str = 'sr') -> str:
    """A shipped model's name from a name (``'lipt-tiny-x2'``, ``'lipt-tiny-denoise'``, case-insensitive) or a
    preset plus ``scale`` (``'tiny'``, 2; default scale 4) or plus ``task`` (``'tiny'``, task ``'jpeg'``).
    Raises ``ValueError`` naming the shipped models when there is none."""
    if task not in TASKS:
        raise ValueError(f'task must be one of {", ".join(TASKS)}, got {task!r}')
    cards = model_cards()
    key = spec.lower()
    if key in cards:
        card = cards[key]
        if scale is not None and scale != card['scale']:
            raise ValueError(f"pretrained model {key!r} is x{card['scale']}, not x{scale}")
        if task != 'sr' and task != card['task']:
            raise ValueError(f"pretrained model {key!r} is for {card['task']}, not {task}")
        return key
    if task != 'sr' and scale not in (None, 1):
        raise ValueError(f'task {task!r} keeps the image size (scale 1), not x{scale}')
    candidate = model_name(key, DEFAULT_SCALE if scale is None else scale, task)
    if candidate in cards:
        return candidate
    shipped = ', '.join(cards) or 'none'
    wanted = f' at x{scale}' if scale is not None and task == 'sr' else (f' for {task}' if task != 'sr' else '')
    raise ValueError(f'no pretrained LIPT {spec!r}{wanted}; shipped models: {shipped}')


def headline(card: dict[str, Any]) -> tuple[str, dict[str, float], dict[str, float], dict[str, float] | None]:
    """The score ``lipt models`` shows for a card: ``(label, model, baseline, paper)``, e.g. ``('Set5', ...)`` with
    bicubic as the baseline for SR, ``('CBSD68 sigma 25', ...)`` with the noisy input for denoising. Each score is a
    ``{'psnr', 'ssim', ...}`` dict; ``paper`` is None where the paper gives no figure."""
    test, level = HEADLINE[card['task']]
    if level is None:
        return test, card['scores'][test], card['bicubic'][test], card['paper'].get(test)
    paper = card['paper'].get(test, {}).get(level)
    return (f"{test} {LEVEL_NAMES[card['task']]} {level}", card['scores'][test][level], card['input'][test][level],
            paper)


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
                    device: torch.device | str = 'cpu', task: str = 'sr') -> nn.Module:
    """A shipped pretrained LIPT, fused, in eval mode: ``load_pretrained('tiny', scale=2)``,
    ``load_pretrained('lipt-tiny-x2')`` or ``load_pretrained('tiny', task='denoise')``. Input (B, C, H, W) in [0, 1]
    as for :class:`lipt_arch.LIPT`: C = 3 (RGB) except for the gray JPEG model (C = 1).

    The file's SHA-256 is checked against its card, so a damaged install fails with a clear error.
    """
    return load_model(checked_weights(resolve_name(spec, scale, task)), device)


__all__ = ['DEFAULT_PRESET', 'DEFAULT_SCALE', 'HEADLINE', 'LEVEL_NAMES', 'TASKS', 'checked_weights', 'file_sha256',
           'headline', 'load_pretrained', 'model_cards', 'model_name', 'resolve_name', 'weights_path']
