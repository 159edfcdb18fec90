"""lipt_arch.deploy.inference: tiling (coverage, equality with untiled inference), image kinds, device and precision."""
import warnings

import cv2
import numpy as np
import pytest
import torch

from lipt_arch import LIPT, reparameterize
from lipt_arch.deploy.inference import resolve_device, resolve_dtype, tile_grid, tiled_forward, upscale_array

from .conftest import randomize_


def tiny(upscale: int = 2, num_block: int = 1, shared_depth: int = 0, seed: int = 0) -> LIPT:
    return reparameterize(randomize_(LIPT(upscale=upscale, num_feat=8, num_block=num_block,
                                          shared_depth=shared_depth), seed))


@pytest.mark.parametrize('height, width, tile, pad', [(96, 104, 32, 32), (17, 9, 8, 8), (50, 50, 20, 5)])
def test_tile_grid_covers_once_on_the_window_grid(height, width, tile, pad):
    covered = np.zeros((height, width), int)
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in tile_grid(height, width, tile, pad, multiple=8):
        covered[y0:y1, x0:x1] += 1
        assert ry0 <= y0 < y1 <= ry1 and rx0 <= x0 < x1 <= rx1
        assert ry0 % 8 == 0 and rx0 % 8 == 0  # read regions start on the image's window grid
    assert (covered == 1).all()


def test_one_tile_is_the_plain_forward():
    net, x = tiny(), torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        expected = net(x)
    assert torch.equal(tiled_forward(net, x, tile=0), expected)
    assert torch.equal(tiled_forward(net, x, tile=64, tile_pad=8), expected)


@pytest.mark.parametrize('num_block, shared_depth, tile, pad, margin', [
    (1, 0, 32, 32, 16),   # one unshifted block: receptive field < 32 px
    (2, 1, 48, 64, 8),    # shifted windows and attention sharing
])
def test_tiled_equals_untiled_away_from_borders(num_block, shared_depth, tile, pad, margin):
    """With ``tile_pad`` beyond the receptive field, tiles give the untiled result except within ``margin`` of the
    image's edges, where the network's wrap-around (sparse mask, shifted windows) reads the opposite edge of
    whatever it is given: the whole image untiled, the tile's read region tiled."""
    net, x = tiny(2, num_block, shared_depth), torch.rand(1, 3, 96, 104)
    full, tiled = tiled_forward(net, x, tile=0), tiled_forward(net, x, tile=tile, tile_pad=pad)
    m = 2 * margin
    torch.testing.assert_close(tiled[..., m:-m, m:-m], full[..., m:-m, m:-m], rtol=0, atol=1e-5)


def test_short_tile_pad_differs_near_tile_borders_only():
    net, x = tiny(), torch.rand(1, 3, 96, 96)
    full, tiled = tiled_forward(net, x, tile=0), tiled_forward(net, x, tile=48, tile_pad=16)
    diff = (tiled - full).abs().amax(dim=(0, 1))  # (192, 192) output pixels; tile border at 96
    assert diff[80:112].max() > 1e-4  # near the tile border: context was cut
    torch.testing.assert_close(diff[16:48, 16:48], torch.zeros(32, 32), rtol=0, atol=1e-5)


def _direct(net, rgb01: np.ndarray) -> np.ndarray:
    """Reference path: (H, W, 3) RGB float -> model -> (H', W', 3) RGB float in [0, 1]."""
    with torch.no_grad():
        y = net(torch.from_numpy(rgb01).permute(2, 0, 1)[None].float()).clamp(0, 1)
    return y[0].permute(1, 2, 0).numpy()


def test_bgr_uint8_matches_the_network():
    net = tiny()
    img = np.random.default_rng(0).integers(0, 256, (13, 18, 3), dtype=np.uint8)
    out = upscale_array(net, img)
    assert out.shape == (26, 36, 3) and out.dtype == np.uint8
    expected = np.round(_direct(net, img[:, :, ::-1] / 255.0)[:, :, ::-1] * 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_grey_goes_through_three_channels_and_back():
    net = tiny()
    grey = np.random.default_rng(1).integers(0, 256, (11, 15), dtype=np.uint8)
    out = upscale_array(net, grey)
    assert out.shape == (22, 30) and out.dtype == np.uint8
    expected = _direct(net, np.repeat(grey[:, :, None] / 255.0, 3, axis=2)).mean(axis=2)
    assert np.abs(out.astype(int) - np.round(expected * 255)).max() <= 1


def test_rgba_alpha_is_upscaled_bicubic_and_16_bit_is_kept():
    net = tiny()
    img = np.random.default_rng(2).integers(0, 65536, (10, 12, 4), dtype=np.uint16)
    out = upscale_array(net, img)
    assert out.shape == (20, 24, 4) and out.dtype == np.uint16
    assert np.array_equal(out[:, :, 3], cv2.resize(img[:, :, 3], (24, 20), interpolation=cv2.INTER_CUBIC))
    expected = _direct(net, img[:, :, 2::-1] / 65535.0)[:, :, ::-1]
    assert np.abs(out[:, :, :3] / 65535.0 - expected).max() < 1e-5
    assert len(np.unique(out[:, :, :3])) > 256  # really 16-bit values, not 8-bit ones scaled up


def test_one_channel_model_runs_each_colour_channel():
    net = reparameterize(randomize_(LIPT(upscale=2, num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1,
                                         shared_depth=0)))
    img = np.random.default_rng(3).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    out = upscale_array(net, img)
    grey = upscale_array(net, np.ascontiguousarray(img[:, :, 1]))
    assert out.shape == (18, 20, 3) and np.array_equal(out[:, :, 1], grey)


def test_half_precision_on_cpu_falls_back_with_a_warning():
    with pytest.warns(UserWarning, match='fp16'):
        assert resolve_dtype('fp16', torch.device('cpu')) == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert resolve_dtype('bf16', torch.device('cpu')) == torch.bfloat16
        assert resolve_dtype('fp32', torch.device('cpu')) == torch.float32
    assert resolve_device('cpu') == torch.device('cpu')
    if not torch.cuda.is_available():
        assert resolve_device('auto') == torch.device('cpu')
        with pytest.raises(ValueError, match='no CUDA device'):
            resolve_device('cuda')


def test_bf16_on_cpu_runs_close_to_fp32():
    net = tiny()
    img = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    ref = upscale_array(net, img).astype(int)
    out = upscale_array(net.to(torch.bfloat16), img, dtype=torch.bfloat16).astype(int)
    assert np.abs(out - ref).max() <= 8


@pytest.mark.slow
def test_4k_output_stays_under_2_gib_rss(tmp_path):
    """``lipt infer`` (default tiling) on a 960x540 image at x4 (3840x2160 out), peak RSS of the process < 2 GiB."""
    import subprocess
    import sys

    from lipt_arch import save_model

    ckpt = tmp_path / 'x4.pth'
    save_model(randomize_(LIPT(upscale=4, num_feat=8, num_block=1, shared_depth=0)), ckpt)
    src = tmp_path / 'in.png'
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 256, (540, 960, 3), dtype=np.uint8))
    # ru_maxrss of RUSAGE_CHILDREN is the largest child of *this* process: measure from a fresh parent.
    script = ('import resource, subprocess, sys; '
              'subprocess.run(sys.argv[1:], check=True); '
              'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)')
    cmd = [sys.executable, '-c', script, sys.executable, '-m', 'lipt_arch.cli.lipt_cli', 'infer', '-i', str(src),
           '-o', str(tmp_path / 'out.png'), '--model', str(ckpt), '--device', 'cpu', '-q']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    peak_kib = int(proc.stdout.split()[-1])
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (2160, 3840, 3)
    assert peak_kib < 2 * 1024 * 1024, f'peak RSS {peak_kib / 1024:.0f} MiB'
