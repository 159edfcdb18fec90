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


def test_flag_equals_the_deprecated_type_and_is_no_part_of_the_config(tmp_path):
    from lipt_arch import load_model, save_model

    torch.manual_seed(0)
    old = build_network({'type': 'LIPT_zero_init', 'preset': 'tiny', 'upscale': 2, 'num_feat': 16, 'num_block': 1})
    torch.manual_seed(0)
    new = build_network({'type': 'LIPT_tiny', 'upscale': 2, 'num_feat': 16, 'num_block': 1,
                         'zero_init_residual': True})
    assert old.config == new.config and 'zero_init_residual' not in new.config
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    save_model(new, tmp_path / 'm.pth')
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / 'm.pth')(x), reparameterize(new)(x))


def test_deprecated_type_warns_once_naming_the_replacement():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        build_network({'type': 'LIPT_zero_init', 'preset': 'small', 'upscale': 2, 'num_feat': 8, 'num_block': 1})
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert messages == ['network_g type LIPT_zero_init is deprecated: use type: LIPT_small with '
                        'zero_init_residual: true']


def test_owners_zero_their_own_layers():
    from lipt_arch.archs.hrm import RepConv3x3

    conv = RepConv3x3(4, 4).train()
    conv.zero_output_()
    assert torch.count_nonzero(conv(torch.rand(2, 4, 6, 6))) == 0
    hrm = HRM(4, exp_ratio=2)
    hrm.zero_init_last_()
    assert torch.count_nonzero(hrm.train()(torch.rand(2, 4, 6, 6))) == 0
