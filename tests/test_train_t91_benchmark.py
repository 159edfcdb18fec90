"""benchmarks/train_t91.py: the pieces that do not need minutes of training."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from benchmarks import train_t91
from lipt_arch.models.training_speed import SpeedOptions

from .conftest import shared_path


def test_missing_data_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('LIPT_SHARED', str(tmp_path))
    assert train_t91.main(['--minutes', '0']) == 1
    err = capsys.readouterr().err
    assert 'dataset folder(s) not found' in err and 'T91' in err and 'LIPT_SHARED' in err


def test_schedule_warms_up_then_decays_in_time():
    lr = [train_t91.lr_at(s, e, 100.0, 1e-3, 10, 0.1) for s, e in [(0, 0), (9, 1), (50, 50), (99, 100)]]
    assert lr[0] == pytest.approx(1e-4) and lr[1] == pytest.approx(1e-3, rel=1e-3)
    assert lr[2] == pytest.approx(0.55e-3) and lr[3] == pytest.approx(1e-4)


def test_markdown_table_has_a_row_per_evaluation():
    curve = train_t91.Curve({'Set5': 33.68}, [(0.0, 0, 1.0, {'Set5': 10.0}), (2.5, 100, 1.5, {'Set5': 34.0})])
    args = argparse.Namespace(preset='tiny', scale=2, init='zero', gt_size=32, batch=8, lr=2e-3, warmup=20,
                              min_lr_ratio=0.1, seed=0, clock='cpu', amp='bf16', channels_last=False)
    text = train_t91.markdown(curve, args, 'python benchmarks/train_t91.py', 91, 360_000, 60.0)
    assert '| 2.5 | 100 | 1.5 | 34.00 | 33.68 |' in text and 'process CPU time' in text
    assert 'training steps in amp bf16, contiguous (NCHW), eager' in text


def test_fused_psnr_of_an_untrained_net_is_finite_and_bicubic_matches_set5():
    pairs = train_t91.load_folder_pairs(shared_path('datasets', 'Set5', 'HR'), 2, center_crop=48)[:2]
    net = train_t91.LIPT(upscale=2, num_feat=8, num_block=1)
    assert 0 < train_t91.fused_psnr(net, pairs, 2) < 100
    assert 20 < train_t91.bicubic_psnr(pairs, 2) < 50


def test_bf16_channels_last_training_runs_and_evaluates_in_float32():
    """--amp bf16 --channels-last: a few CPU seconds of training on two synthetic pairs; the curve's PSNRs (of the
    fused network, float32) are finite and the net trained (the score moved)."""
    rng = np.random.default_rng(0)
    hr = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(2)]
    pairs = [train_t91.SRPair(f'p{i}', img, img[::2, ::2].copy()) for i, img in enumerate(hr)]
    args = train_t91.parse_args(['--minutes', '0.03', '--eval-every', '1', '--batch', '2', '--gt-size', '16',
                                 '--amp', 'bf16', '--channels-last'])
    assert train_t91.training_options(args) == SpeedOptions('bf16', True)
    torch.set_num_threads(1)
    curve = train_t91.train(args, pairs, {'synthetic': pairs[:1]})
    (_, _, _, first), (_, steps, _, last) = curve.rows
    assert steps > 0 and np.isfinite(last['synthetic']) and last['synthetic'] != first['synthetic']
