"""Restoration datasets: on-the-fly Gaussian noise and OpenCV JPEG, reproducible validation, clear option errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY

from lipt_arch.data.restoration import jpeg_compress, parse_level, stable_seed


def make_images(folder: Path, count: int = 3, size: tuple[int, int] = (40, 56), seed: int = 0) -> Path:
    """``count`` smooth colour PNGs (H, W = ``size``) in ``folder``, plus a text file the datasets must skip."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.random((size[0] // 8, size[1] // 8, 3)).astype(np.float32)
        img = cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        cv2.imwrite(str(folder / f'img{i}.png'), (img * 255).round().astype(np.uint8))
    (folder / 'README.txt').write_text('not an image')
    return folder


def denoise_opt(root: Path, phase: str = 'val', **extra) -> dict:
    opt = {'name': 'noise', 'type': 'LIPTDenoiseDataset', 'dataroot_gt': str(root), 'io_backend': {'type': 'disk'},
           'phase': phase, 'noise_sigma': 25, 'scale': 1}
    return {**opt, **extra}


def jpeg_opt(root: Path, phase: str = 'val', **extra) -> dict:
    opt = {'name': 'jpeg', 'type': 'LIPTJPEGDataset', 'dataroot_gt': str(root), 'io_backend': {'type': 'disk'},
           'phase': phase, 'jpeg_quality': 10, 'scale': 1}
    return {**opt, **extra}


@pytest.fixture
def images(tmp_path) -> Path:
    return make_images(tmp_path / 'gt')


def test_registered():
    assert DATASET_REGISTRY.get('LIPTDenoiseDataset') and DATASET_REGISTRY.get('LIPTJPEGDataset')


def test_denoise_validation_items(images):
    dataset = build_dataset(denoise_opt(images))
    assert len(dataset) == 3  # README.txt skipped
    item = dataset[0]
    assert item['lq'].shape == item['gt'].shape == (3, 40, 56)
    assert item['lq'].dtype == item['gt'].dtype == torch.float32
    assert 0 <= item['gt'].min() and item['gt'].max() <= 1
    noise = (item['lq'] - item['gt']) * 255
    assert abs(float(noise.std()) - 25) < 1.5 and abs(float(noise.mean())) < 1.5
    assert item['lq'].min() < 0 or item['lq'].max() > 1  # not clipped
    assert item['lq_path'] == item['gt_path'] and item['gt_path'].endswith('img0.png')


def test_validation_noise_is_fixed_per_image_name(images, tmp_path):
    first, second = build_dataset(denoise_opt(images)), build_dataset(denoise_opt(images))
    np.random.seed(123)  # the global RNG must not matter for validation
    a = first[1]['lq']
    np.random.seed(456)
    assert torch.equal(a, second[1]['lq'])
    # the same name in another folder gets the same noise pattern; another name gets another one
    other = make_images(tmp_path / 'copy', count=2, seed=1)
    noise = lambda item: item['lq'] - item['gt']  # noqa: E731
    assert torch.allclose(noise(build_dataset(denoise_opt(other))[1]), noise(first[1]), atol=1e-6)
    assert not torch.allclose(noise(first[0]), noise(first[1]))
    shifted = build_dataset(denoise_opt(images, seed=1))
    assert not torch.allclose(noise(shifted[1]), noise(first[1]))


def test_stable_seed_is_the_same_in_every_process():
    assert stable_seed('baboon') == 0x81373b836329abe0  # sha256 of '0:baboon': no per-process salt
    assert stable_seed('baboon') != stable_seed('barbara') != stable_seed('barbara', seed=1)


def test_denoise_training_crops_and_blind_sigma(images):
    np.random.seed(0)
    dataset = build_dataset(denoise_opt(images, 'train', gt_size=24, noise_sigma=[0, 50]))
    stds = []
    for _ in range(6):
        item = dataset[0]
        assert item['lq'].shape == item['gt'].shape == (3, 24, 24)
        stds.append(float((item['lq'] - item['gt']).std() * 255))
    assert max(stds) - min(stds) > 3 and all(s < 55 for s in stds)  # sigma varies per draw within [0, 50]
    small = build_dataset(denoise_opt(images, 'train', gt_size=64))  # larger than the 40x56 images: padded
    assert small[0]['gt'].shape == (3, 64, 64)


def test_jpeg_is_grayscale_and_changes_the_image(images):
    dataset = build_dataset(jpeg_opt(images))
    item = dataset[0]
    assert item['lq'].shape == item['gt'].shape == (1, 40, 56)
    gt = cv2.imread(str(images / 'img0.png'), cv2.IMREAD_GRAYSCALE)
    assert torch.equal(item['gt'][0], torch.from_numpy(gt.astype(np.float32) / 255))
    expected = jpeg_compress(gt, 10)
    assert torch.equal(item['lq'][0], torch.from_numpy(expected.astype(np.float32) / 255))
    assert (item['lq'] != item['gt']).float().mean() > 0.3
    assert torch.equal(item['lq'], build_dataset(jpeg_opt(images))[0]['lq'])  # deterministic
    error = {q: float((build_dataset(jpeg_opt(images, jpeg_quality=q))[0]['lq'] - item['gt']).abs().mean())
             for q in (10, 40)}
    assert error[10] > error[40] > 0


def test_jpeg_rgb_and_training(images):
    item = build_dataset(jpeg_opt(images, color='rgb'))[2]
    assert item['lq'].shape == (3, 40, 56) and not torch.equal(item['lq'], item['gt'])
    np.random.seed(0)
    train = build_dataset(jpeg_opt(images, 'train', gt_size=32, jpeg_quality=[10, 40]))
    item = train[1]
    assert item['lq'].shape == item['gt'].shape == (1, 32, 32)
    assert torch.equal((item['lq'] * 255).round(), item['lq'] * 255)  # decoded 8-bit values


def test_jpeg_compress_uses_integer_quality():
    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    out = jpeg_compress(img, 10.0)  # float quality from YAML is converted (OpenCV 5 rejects floats)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert jpeg_compress(np.stack([img] * 3, -1), 30).shape == (64, 64, 3)
    with pytest.raises(ValueError, match='1..100'):
        jpeg_compress(img, 0)
    with pytest.raises(TypeError, match='uint8'):
        jpeg_compress(img.astype(np.float32), 10)


def test_meta_info_file_selects_images(images, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('img2.png (40,56,3)\nimg0.png\n')
    dataset = build_dataset(denoise_opt(images, meta_info_file=str(meta)))
    assert [Path(p).name for p in dataset.paths] == ['img2.png', 'img0.png']


def test_lmdb_backend(images, tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    lmdb_path = tmp_path / 'gt.lmdb'
    names = sorted(p.name for p in images.glob('*.png'))
    make_lmdb_from_imgs(str(images), str(lmdb_path), names, [n[:-4] for n in names])
    from_lmdb = build_dataset(denoise_opt(lmdb_path, io_backend={'type': 'lmdb'}))
    from_disk = build_dataset(denoise_opt(images))
    assert len(from_lmdb) == 3
    assert torch.equal(from_lmdb[1]['lq'], from_disk[1]['lq'])  # same name -> same seed, same pixels


def test_paired_folders_work_with_basicsr(images, tmp_path):
    """Pre-degraded images (here: the JPEG dataset's own, saved) load with BasicSR's PairedImageDataset."""
    (images / 'README.txt').unlink()  # BasicSR pairs every file of the two folders
    lq_dir = tmp_path / 'lq'
    lq_dir.mkdir()
    dataset = build_dataset(jpeg_opt(images, color='rgb'))
    for item in dataset:
        img = (item['lq'].numpy().transpose(1, 2, 0)[..., ::-1] * 255).round().astype(np.uint8)
        cv2.imwrite(str(lq_dir / Path(item['gt_path']).name), img)
    paired = PairedImageDataset({'dataroot_gt': str(images), 'dataroot_lq': str(lq_dir), 'io_backend': {'type': 'disk'},
                                 'phase': 'val', 'scale': 1, 'meta_info_file': None, 'filename_tmpl': '{}'})
    ours = {Path(item['gt_path']).name: item for item in dataset}
    for item in paired:  # BasicSR lists the folder unsorted
        mine = ours[Path(item['gt_path']).name]
        assert torch.equal(item['lq'], mine['lq']) and torch.equal(item['gt'], mine['gt'])


@pytest.mark.parametrize('value,option,message', [
    ('25', 'noise_sigma', "'noise_sigma' must be a number"),
    ([50, 0], 'noise_sigma', 'got \\[50, 0\\]'),
    (300, 'noise_sigma', '0..255'),
    (0, 'jpeg_quality', '1..100'),
    (101, 'jpeg_quality', '1..100'),
    (10.5, 'jpeg_quality', 'an integer'),
    ([10, 20, 30], 'jpeg_quality', 'pair'),
    (True, 'jpeg_quality', 'an integer'),
])
def test_bad_levels_name_the_option(images, value, option, message):
    make = denoise_opt if option == 'noise_sigma' else jpeg_opt
    with pytest.raises(ValueError, match=message):
        build_dataset(make(images, **{option: value}))


def test_bad_options_name_the_option_or_file(images, tmp_path):
    with pytest.raises(FileNotFoundError, match="'dataroot_gt': folder not found: .*missing"):
        build_dataset(denoise_opt(tmp_path / 'missing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no images in'):
        build_dataset(denoise_opt(tmp_path / 'empty'))
    with pytest.raises(ValueError, match="'gt_size'"):
        build_dataset(denoise_opt(images, 'train'))
    with pytest.raises(ValueError, match="'color'"):
        build_dataset(jpeg_opt(images, color='ycbcr'))
    with pytest.raises(FileNotFoundError, match="'meta_info_file'"):
        build_dataset(denoise_opt(images, meta_info_file=str(tmp_path / 'nope.txt')))
    opt = denoise_opt(images)
    del opt['noise_sigma']
    with pytest.raises(ValueError, match="'noise_sigma' is required"):
        build_dataset(opt)


def test_parse_level():
    assert parse_level(25, 'noise_sigma', 0, 255) == (25.0, 25.0)
    assert parse_level([0, 50], 'noise_sigma', 0, 255) == (0.0, 50.0)
    assert parse_level((10, 40), 'jpeg_quality', 1, 100, integer=True) == (10.0, 40.0)
