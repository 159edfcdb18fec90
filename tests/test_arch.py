"""LIPT structure: parameter counts against the paper and the reference, registry, sizes, padding, bad options."""
import pytest
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from lipt_arch import LIPT, PRESETS, preset_config
from lipt_arch.archs.lipt_arch import reflect_pad
from lipt_arch.archs.nvsm_attention import permute_rows, sparse_index, sparse_offsets, token_index


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# The reference's deploy=True constructor, minus its 24 frozen MeanShift parameters (buffers here).
REFERENCE_DEPLOY = {
    (24, 4, 1, 8, 2): 265_284 - 24, (24, 4, 1, 8, 3): 268_539 - 24, (24, 4, 1, 8, 4): 273_096 - 24,
    (64, 5, 1, 8, 2): 2_328_420 - 24, (64, 5, 1, 8, 3): 2_337_075 - 24, (64, 5, 1, 8, 4): 2_349_192 - 24,
    (144, 22, 0, 16, 2): 26_051_076 - 24, (144, 22, 0, 16, 3): 26_070_531 - 24, (144, 22, 0, 16, 4): 26_097_768 - 24,
}


@pytest.mark.parametrize('key', list(REFERENCE_DEPLOY), ids=str)
def test_deploy_parameter_count_matches_reference(key):
    num_feat, num_block, shared, window, scale = key
    model = LIPT(upscale=scale, num_feat=num_feat, num_block=num_block, shared_depth=shared, window_size=window,
                 deploy=True)
    assert _params(model) == REFERENCE_DEPLOY[key]


def test_training_parameter_count_matches_reference():
    # reference trainable count (672,492) minus the Sobel branches' 1x1 bias, which cancels exactly (2,304)
    assert _params(LIPT(upscale=2, num_feat=24, num_block=4)) == 672_492 - 2 * 24 * 2 * 3 * 2 * 4


@pytest.mark.parametrize('preset,paper', [('small', (2.33, 2.80, 2.81)), ('tiny', (0.36, 0.36, 0.37))])
def test_preset_parameters_match_paper(preset, paper):
    counts = [_params(LIPT(**preset_config(preset, s), deploy=True)) / 1e6 for s in (2, 3, 4)]
    assert [round(c, 2) for c in counts] == list(paper)


def test_presets_are_usable_from_yaml():
    opt = yaml.safe_load('network_g: {type: LIPT_small, upscale: 3}')['network_g']
    model = build_network(opt)
    assert model.config['num_block'] == 6 and model.config['num_feat'] == 64
    opt = yaml.safe_load('{type: LIPT, upscale: 2, num_feat: 16, num_block: 1, window_size: 16}')
    model = ARCH_REGISTRY.get('LIPT')(**{k: v for k, v in opt.items() if k != 'type'})
    assert model.config['window_size'] == 16
    assert build_network({'type': 'LIPT_base', 'upscale': 4, 'num_block': 1}).config['num_feat'] == 144
    assert set(PRESETS) == {'tiny', 'small', 'base'}


@pytest.mark.parametrize('height,width', [(1, 1), (1, 9), (2, 3), (7, 1), (8, 8), (9, 17), (17, 40)])
@pytest.mark.parametrize('window', [8, 16])
def test_any_size_works(height, width, window):
    model = LIPT(upscale=2, num_feat=8, num_block=2, window_size=window).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, 2 * height, 2 * width) and torch.isfinite(out).all()


def test_reflect_pad_matches_torch_when_possible_and_mirrors_repeatedly_otherwise():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    assert torch.equal(reflect_pad(x, 8), torch.nn.functional.pad(x, [0, 2, 0, 3], mode='reflect'))
    row = torch.tensor([[[[0.0, 1.0, 2.0]]]])
    padded = reflect_pad(row, 8)
    assert padded.shape == (1, 1, 8, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]  # mirrored again, edge never repeated
    assert torch.equal(padded[0, 0], padded[0, 0, :1].expand(8, 8))  # the single row is repeated


def test_sparse_index_follows_the_mask():
    assert sparse_offsets(8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert sparse_offsets(16) == list(range(0, 16, 2)) + list(range(17, 32, 2))
    assert sparse_index(16, 8).tolist() == [0, 2, 4, 6, 9, 11, 13, 15, 8, 10, 12, 14, 1, 3, 5, 7]
    assert sparse_index(16, 8, shift=4).tolist()[:8] == [4, 6, 8, 10, 13, 15, 1, 3]


def test_output_range_and_image_residual():
    model = LIPT(upscale=1, num_feat=8, num_block=1, img_residual=True).eval()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.allclose(model(x), x, atol=1e-6)  # zero network + image residual = identity


@pytest.mark.parametrize('kwargs,key', [
    (dict(upscale=5), 'upscale'), (dict(window_size=12), 'window_size'), (dict(num_feat=7), 'num_feat'),
    (dict(num_block=0), 'num_block'), (dict(shared_depth=-1), 'shared_depth'), (dict(img_range=0), 'img_range'),
    (dict(upscale=2, img_residual=True), 'img_residual'),
])
def test_bad_options_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LIPT(**kwargs)


def test_unknown_preset_and_wrong_input():
    with pytest.raises(ValueError, match='unknown LIPT preset'):
        preset_config('huge', 2)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        LIPT(num_feat=8, num_block=1)(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize('size', [1, 2, 3, 7, 8, 9, 15, 16, 17, 30])
def test_reflect_pad_is_periodic_mirroring(size):
    x = torch.rand(1, 2, size, size + 3)
    for multiple in (8, 16):
        padded = reflect_pad(x, multiple)
        assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
        pad_h, pad_w = padded.shape[-2] - size, padded.shape[-1] - size - 3
        if pad_h < size and pad_w < size + 3:
            assert torch.equal(padded, torch.nn.functional.pad(x, [0, pad_w, 0, pad_h], mode='reflect'))


def _tokens_the_reference_way(height, width, window, shift, sparse):
    """Pixel ids in token order: roll, wrap-pad + 2w x 2w windows + boolean mask (sparse), window partition."""
    img = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width)
    img = torch.roll(img, shifts=(-shift, -shift), dims=(2, 3))
    if sparse:
        keep = torch.zeros(2 * window, dtype=torch.bool)
        keep[sparse_offsets(window)] = True
        img = torch.cat([img, img[:, :, :window]], dim=2)
        img = torch.cat([img, img[:, :, :, :window]], dim=3)
        regions = img.unfold(2, 2 * window, window).unfold(3, 2 * window, window)
        return regions[..., keep[:, None] & keep[None, :]].reshape(-1).long()
    tiles = img.view(height // window, window, width // window, window).permute(0, 2, 1, 3)
    return tiles.reshape(-1).long()


@pytest.mark.parametrize('height, width, window, shift, sparse', [
    (8, 16, 8, 0, False), (24, 16, 8, 4, False), (16, 32, 8, 0, True), (24, 40, 8, 4, True), (32, 48, 16, 8, True)])
def test_token_index_matches_roll_mask_and_partition(height, width, window, shift, sparse):
    index, inverse = token_index(height, width, window, shift, sparse)
    assert torch.equal(index, _tokens_the_reference_way(height, width, window, shift, sparse))
    plain, plain_inverse = token_index(height, width, window, shift, sparse=False)
    assert torch.equal(plain[plain_inverse], torch.arange(height * width))


@pytest.mark.parametrize('sparse', [False, True])
def test_token_index_of_a_batch_offsets_each_image(sparse):
    index, inverse = token_index(16, 24, 8, 4, sparse)
    batched, batched_inverse = token_index(16, 24, 8, 4, sparse, batch=3)
    offsets = torch.arange(3)[:, None] * (16 * 24)
    assert torch.equal(batched, (offsets + index).reshape(-1))
    assert torch.equal(batched[batched_inverse], torch.arange(3 * 16 * 24))  # a permutation, with its inverse


def test_permute_rows_gradient_equals_index_select_gradient():
    index, inverse = token_index(16, 16, 8, 4, sparse=True, batch=2)
    rows = torch.randn(2 * 16 * 16, 6, dtype=torch.float64)
    weight = torch.randn(2 * 16 * 16, 6, dtype=torch.float64)
    grads = []
    for gather in (lambda r: permute_rows(r, index, inverse), lambda r: r.index_select(0, index)):
        leaf = rows.clone().requires_grad_()
        out = gather(leaf)
        (out * weight).sum().backward()
        grads.append((out.detach(), leaf.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_training_after_inference_mode_at_the_same_size():
    """The cached attention indices built under inference_mode must not break a later training step."""
    net = LIPT(upscale=2, num_feat=8, num_block=2, window_size=8)
    x = torch.rand(1, 3, 19, 27)
    with torch.inference_mode():
        net.eval()(x)
    net.train()(x).mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_indices_for_another_size_are_refused_in_one_line():
    net = LIPT(upscale=2, num_feat=8, num_block=2, window_size=8).eval()
    x = torch.rand(1, 3, 19, 27)
    with torch.no_grad():
        assert torch.equal(net(x, net.window_indices(x)), net(x))
        with pytest.raises(ValueError, match='indices passed are for another input size'):
            net(x, net.window_indices(torch.rand(1, 3, 30, 27)))
