"""Shared test helpers: where ../shared lives, and random LIPT weights with random BatchNorm statistics."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import lipt_arch  # noqa: F401  (installs the basicsr compat shim and registers LIPT)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('LIPT_SHARED', REPO.parent / 'shared'))
IN_CI = os.environ.get('CI', '').lower() == 'true'


def shared_path(*parts: str) -> Path:
    """A path under ../shared (or $LIPT_SHARED); skips the test when missing, fails under CI=true."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f'{path} not found (set LIPT_SHARED to the shared/ folder)'
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every float parameter and BN buffer with seeded random values (BN statistics included)."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if not tensor.is_floating_point() or name.endswith(('mask', 'identity', 'mean_in', 'mean_out')):
            continue
        leaf = name.rsplit('.', 1)[-1]
        if leaf == 'running_var':
            tensor.copy_(torch.rand(tensor.shape, generator=gen) * 1.5 + 0.5)
        elif leaf == 'running_mean':
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
        elif tensor.dim() == 1 and leaf == 'weight':  # BN gamma
            tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.25)
        elif tensor.dim() == 4:
            fan_in = tensor[0].numel()
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * (0.1 / fan_in) ** 0.5)
        else:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.05)
    return model


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)
    yield
