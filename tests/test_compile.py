"""torch.compile of the fused network gives the eager result (CPU, small input)."""
import pytest
import torch

from lipt_arch import LIPT, reparameterize

from .conftest import randomize_


@pytest.mark.timeout(900)
def test_compiled_fused_model_matches_eager():
    fused = reparameterize(randomize_(LIPT(upscale=2, num_feat=8, num_block=2), seed=11))
    compiled = torch.compile(fused)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        expected, got = fused(x), compiled(x)
    assert got.shape == (1, 3, 40, 56)
    assert (got - expected).abs().max().item() < 1e-4
