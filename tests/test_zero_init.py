"""LIPT_zero_init: residual branches start at zero, the network is a plain LIPT (fuses, saves, loads)."""
from __future__ import annotations

import torch
from basicsr.archs import build_network

from lipt_arch import LIPT, reparameterize
from lipt_arch.archs import zero_init_residual_
from lipt_arch.archs.hrm import HRM
from lipt_arch.archs.nvsm_attention import NVSMAttention


def test_blocks_are_identity_at_initialisation():
    net = build_network({'type': 'LIPT_zero_init', 'preset': 'tiny', 'upscale': 2, 'num_feat': 16, 'num_block': 2})
    assert type(net) is LIPT and net.config['num_feat'] == 16 and net.config['window_size'] == 8
    x = torch.rand(2, 16, 16, 16)
    for module in net.modules():
        if isinstance(module, HRM):
            assert torch.count_nonzero(module.train()(x)) == 0
        if isinstance(module, NVSMAttention) and module.calc_attn:  # shared layers: checked via the blocks
            assert torch.count_nonzero(module.train()(x)[0]) == 0
    for block in net.body:
        assert torch.equal(block.train()(x), x)


def test_output_scale_is_image_like_and_fusion_is_exact():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 28)
    default = LIPT(upscale=2, num_feat=16, num_block=2).train()
    net = build_network({'type': 'LIPT_zero_init', 'upscale': 2, 'num_feat': 16, 'num_block': 2}).train()
    assert net(x).std() < 1 < default(x).std()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(reparameterize(net)(x), net(x), atol=1e-5, rtol=1e-5)


def test_deploy_form_is_zeroed_too():
    net = zero_init_residual_(LIPT(upscale=2, num_feat=8, num_block=1, deploy=True))
    x = torch.rand(1, 8, 8, 8)
    assert all(torch.count_nonzero(m(x)) == 0 for m in net.modules() if isinstance(m, HRM))
