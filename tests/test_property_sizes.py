"""Property test: any size 1..70 per side, batch 1..3, every preset and scale: shape, finiteness, fusion."""
from functools import cache

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lipt_arch import LIPT, preset_config, reparameterize

from .conftest import randomize_


@cache
def _pair(preset: str, scale: int) -> tuple[LIPT, torch.nn.Module]:
    # one block (one unshifted attention layer plus its shared layers) keeps the test fast; width as the preset
    overrides = dict(num_block=2, num_feat=16) if preset == 'base' else dict(num_block=1)
    model = randomize_(LIPT(**preset_config(preset, scale, **overrides)), seed=scale).eval()
    return model, reparameterize(model)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), batch=st.integers(1, 3),
       preset=st.sampled_from(['tiny', 'small', 'base']), scale=st.sampled_from([1, 2, 3, 4]))
def test_any_input(height, width, batch, preset, scale):
    model, fused = _pair(preset, scale)
    x = torch.rand(batch, 3, height, width)
    with torch.no_grad():
        out, out_fused = model(x), fused(x)
    assert out.shape == (batch, 3, height * scale, width * scale)
    assert torch.isfinite(out).all() and torch.isfinite(out_fused).all()
    assert ((out - out_fused).abs().max() / out.abs().max()).item() <= 1e-4
