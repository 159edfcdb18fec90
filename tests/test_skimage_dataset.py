"""SR pairs (sr_pairs.py) and the scikit-image demo dataset: shapes, ranges, protocol, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.matlab_functions import imresize

from benchmarks.sr_eval import psnr_y
from lipt_arch.data.skimage_dataset import PHOTOS, TRAIN_IMAGES, VAL_IMAGES, SkimageSRDataset, load_photo
from lipt_arch.data.sr_pairs import PairedMemoryDataset, bicubic_upsample, load_folder_pairs, make_pair, to_rgb_uint8

from .conftest import shared_path


def test_photos_are_bundled_colour_images():
    for name in PHOTOS:
        img = load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    assert not set(TRAIN_IMAGES) & set(VAL_IMAGES)
    assert set(TRAIN_IMAGES) | set(VAL_IMAGES) == set(PHOTOS)


def test_to_rgb_uint8_layouts():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_uint8(gray).shape == (3, 4, 3) and (to_rgb_uint8(gray)[..., 2] == gray).all()
    assert to_rgb_uint8(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)
    with pytest.raises(ValueError, match='8-bit'):
        to_rgb_uint8(np.zeros((3, 4), np.float32))


def test_make_pair_modcrops_and_uses_matlab_bicubic():
    img = (np.random.default_rng(0).random((37, 50, 3)) * 255).astype(np.uint8)
    pair = make_pair('x', img, 3)
    assert pair.hr.shape == (36, 48, 3) and pair.lr.shape == (12, 16, 3)
    assert pair.hr.dtype == pair.lr.dtype == np.float32
    expected = np.clip(np.round(imresize(img[:36, :48].astype(np.float32) / 255, 1 / 3) * 255), 0, 255) / 255
    np.testing.assert_allclose(pair.lr, expected, atol=1e-6)
    assert make_pair('x', img, 2, center_crop=20).hr.shape == (20, 20, 3)


def test_train_items_are_random_augmented_crops_and_leave_the_images_intact():
    ds = build_dataset({'name': 't', 'type': 'SkimageSRDataset', 'scale': 2, 'phase': 'train', 'gt_size': 32,
                        'images': ['astronaut']})
    before = ds.pairs[0].hr.copy()
    items = [ds[0] for _ in range(8)]
    for item in items:
        assert item['gt'].shape == (3, 32, 32) and item['lq'].shape == (3, 16, 16)
        assert item['gt'].dtype == torch.float32 and 0 <= item['gt'].min() and item['gt'].max() <= 1
        assert item['lq_path'] == item['gt_path'] == 'astronaut'
    assert not all(torch.equal(items[0]['gt'], it['gt']) for it in items[1:])
    np.testing.assert_array_equal(ds.pairs[0].hr, before)  # in-place flips act on copies


def test_val_split_is_held_out_and_centre_cropped():
    ds = SkimageSRDataset({'scale': 2, 'phase': 'val', 'center_crop': 64})
    assert [item['lq_path'] for item in ds] == list(VAL_IMAGES)
    item = ds[0]
    assert item['gt'].shape == (3, 64, 64) and item['lq'].shape == (3, 32, 32)
    assert len(SkimageSRDataset({'scale': 2, 'phase': 'test', 'images': ['coffee']})) == 1
    assert len(SkimageSRDataset({'scale': 2, 'phase': 'train', 'gt_size': 32})) == len(TRAIN_IMAGES)


@pytest.mark.parametrize('opt, message', [
    ({'scale': 2, 'phase': 'val', 'images': ['lena']}, "unknown image.*'lena'"),
    ({'scale': 2, 'phase': 'val', 'images': 'chelsea'}, "'images' must be a non-empty list"),
    ({'scale': 2, 'split': 'dev'}, "'split' must be 'train' or 'val'"),
    ({'scale': 2, 'phase': 'train'}, "'gt_size' is required"),
    ({'scale': 2, 'phase': 'train', 'gt_size': 33, 'images': ['chelsea']}, 'multiple of scale'),
    ({'scale': 2, 'phase': 'train', 'gt_size': 4096, 'images': ['chelsea']}, 'larger than image'),
    ({'scale': 0, 'phase': 'val'}, "'scale' must be a positive integer"),
    ({'phase': 'val'}, "needs option 'scale'"),
])
def test_bad_options_raise_clear_errors(opt, message):
    with pytest.raises(ValueError, match=message):
        SkimageSRDataset(opt)


def test_paired_memory_dataset_rejects_empty():
    with pytest.raises(ValueError, match='no image pairs'):
        PairedMemoryDataset([], 2)


def test_images_smaller_than_the_patch_are_refused_or_skipped(tmp_path):
    import cv2

    for name, size in (('small', 40), ('large', 64)):
        cv2.imwrite(str(tmp_path / f'{name}.png'), np.full((size, size, 3), 128, np.uint8))
    opt = {'name': 'hr', 'type': 'BicubicSRDataset', 'dataroot_gt': str(tmp_path), 'scale': 2, 'phase': 'train',
           'gt_size': 48}
    with pytest.raises(ValueError, match=r'gt_size 48 is larger than image\(s\) small \(skip_smaller: true'):
        build_dataset(opt)
    dataset = build_dataset({**opt, 'skip_smaller': True})
    assert len(dataset) == 1 and dataset.skipped == ['small'] and dataset[0]['gt'].shape == (3, 48, 48)
    with pytest.raises(ValueError, match='larger than every image'):
        build_dataset({**opt, 'skip_smaller': True, 'gt_size': 96})
    with pytest.raises(ValueError, match="'skip_smaller' must be true or false"):
        build_dataset({**opt, 'skip_smaller': 'yes'})


def test_set5_bicubic_psnr_matches_the_literature():
    """Bicubic x2 on Set5 is 33.66-33.69 dB (Y channel) in the SR literature: the protocol is the usual one."""
    pairs = load_folder_pairs(shared_path('datasets', 'Set5', 'HR'), 2)
    assert len(pairs) == 5
    score = np.mean([psnr_y(bicubic_upsample(p.lr, 2), p.hr, 2) for p in pairs])
    assert 33.6 < score < 33.75


def test_set14_grayscale_image_becomes_three_channels():
    folder = shared_path('datasets', 'Set14', 'HR')
    pair = load_folder_pairs(folder, 3, center_crop=30)[[p.name for p in load_folder_pairs(folder, 3, 6)].index(
        'bridge')]
    assert pair.hr.shape == (30, 30, 3) and pair.lr.shape == (10, 10, 3)
    assert np.array_equal(pair.hr[..., 0], pair.hr[..., 2])


def test_load_folder_pairs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        load_folder_pairs(tmp_path / 'nope', 2)
    with pytest.raises(FileNotFoundError, match='no images'):
        load_folder_pairs(tmp_path, 2)


def test_hr_downscales_add_shrunk_copies(tmp_path):
    """Scale augmentation: each factor adds the image shrunk by MATLAB bicubic, then paired as usual."""
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), img)
    pairs = load_folder_pairs(tmp_path, 2, hr_downscales=[0.5, 0.75])
    assert [p.name for p in pairs] == ['a', 'a@0.5', 'a@0.75']
    assert pairs[1].hr.shape == (30, 40, 3) and pairs[1].lr.shape == (15, 20, 3)
    assert pairs[2].hr.shape == (44, 60, 3)  # 45 x 60, modcropped to the scale
    shrunk = np.clip(np.round(imresize(img[:, :, ::-1].astype(np.float32) / 255, 0.5) * 255), 0, 255) / 255
    assert np.abs(pairs[1].hr - shrunk).max() < 1e-6
    opt = {'name': 'hr', 'type': 'BicubicSRDataset', 'dataroot_gt': str(tmp_path), 'scale': 2, 'phase': 'train',
           'gt_size': 40, 'skip_smaller': True, 'hr_downscales': [0.5, 0.75]}
    dataset = build_dataset(opt)
    assert len(dataset) == 2 and dataset.skipped == ['a@0.5']


@pytest.mark.parametrize('factors', [0.9, 0, [1.0], [0], [0.5, 'x'], [True]])
def test_hr_downscales_must_be_factors_below_one(tmp_path, factors):
    import cv2

    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'hr_downscales': must be a list of factors between 0 and 1"):
        build_dataset({'name': 'hr', 'type': 'BicubicSRDataset', 'dataroot_gt': str(tmp_path), 'scale': 2,
                       'phase': 'val', 'hr_downscales': factors})
