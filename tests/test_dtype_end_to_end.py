"""A fused LIPT whose weights are cast to bf16 runs in bf16 end to end: no feature map is converted to another float
dtype on the way (what autocast does around every conv and the softmax), and the output stays close to fp32's."""
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from lipt_arch import LIPT, preset_config, reparameterize

from .conftest import randomize_


class FloatDtypes(TorchDispatchMode):
    """Records the float dtypes of every tensor (more than one element) that an op takes or returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[torch.dtype, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 1:
                self.seen.setdefault(t.dtype, set()).add(str(func))
        return out


def test_bf16_weights_run_bf16_end_to_end():
    torch.manual_seed(0)
    fused = reparameterize(randomize_(LIPT(**preset_config('tiny', 2)).eval(), seed=1))
    x = torch.rand(1, 3, 20, 28)
    with torch.inference_mode():
        ref = fused(x)
        low, x_low = fused.to(torch.bfloat16), x.to(torch.bfloat16)
        with FloatDtypes() as mode:
            out = low(x_low)
    assert out.dtype == torch.bfloat16 and set(mode.seen) == {torch.bfloat16}, mode.seen
    psnr = 10 * math.log10(1 / (out.float() - ref).square().mean().item())
    assert psnr > 35, psnr  # bf16 keeps 8 mantissa bits
