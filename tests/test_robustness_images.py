"""``lipt infer`` on awkward images (1x1, below one window, extreme aspect ratios, paletted, grey + alpha, EXIF-rotated
JPEG, non-ASCII names), and checkpoints that carry pickled code refused at every entry point, with nothing run."""
from __future__ import annotations

import io
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import lipt_arch
from lipt_arch import LIPT, save_model
from lipt_arch.basicsr_support.command import main as basicsr_main
from lipt_arch.checkpoints import CheckpointError
from lipt_arch.cli.lipt_cli import main as lipt_main

from .basicsr_helpers import train_options, write_options
from .conftest import randomize_


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def fused(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pth'
    save_model(randomize_(LIPT(upscale=2, num_feat=8, num_block=1), seed=0), path)
    return path


def _infer(src, dst, model) -> int:
    return lipt_main(['infer', '-i', str(src), '-o', str(dst), '--model', str(model), '-q'])


def _read(path):
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize('height, width', [(1, 1), (3, 5), (7, 7), (1, 300), (300, 2)],
                         ids=['1x1', '3x5', 'below_window', 'wide_1x300', 'tall_300x2'])
def test_tiny_and_extreme_aspect_images(fused, tmp_path, height, width):
    src = tmp_path / 'in.png'
    cv2.imwrite(str(src), np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    assert _infer(src, tmp_path / 'out.png', fused) == 0
    assert _read(tmp_path / 'out.png').shape == (2 * height, 2 * width, 3)


def test_paletted_png_is_upscaled_as_colour(fused, tmp_path):
    src = tmp_path / 'palette.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 12, 3), dtype=np.uint8)).convert(
        'P', palette=Image.Palette.ADAPTIVE, colors=16).save(src)
    assert Image.open(src).mode == 'P'
    assert _infer(src, tmp_path / 'out.png', fused) == 0
    assert _read(tmp_path / 'out.png').shape == (18, 24, 3)  # OpenCV expands the palette to BGR


def test_grey_with_alpha_png(fused, tmp_path):
    src = tmp_path / 'la.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 12, 2), dtype=np.uint8), 'LA').save(src)
    assert _infer(src, tmp_path / 'out.png', fused) == 0
    assert _read(tmp_path / 'out.png').shape == (18, 24, 4)  # OpenCV reads LA as BGRA; alpha upscaled bicubic


def test_exif_rotated_jpeg_keeps_stored_orientation(fused, tmp_path):
    """Decision: pixels as stored. OpenCV's IMREAD_UNCHANGED ignores the EXIF orientation tag, and so do we."""
    src = tmp_path / 'rotated.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(np.full((8, 20, 3), 128, np.uint8)).save(src, exif=exif.tobytes())
    assert _infer(src, tmp_path / 'out.png', fused) == 0
    assert _read(tmp_path / 'out.png').shape == (16, 40, 3)  # not (40, 16): stored 20 wide, 8 high


def test_non_ascii_folder_and_file_names(fused, tmp_path):
    folder = tmp_path / 'Fotos – 写真'
    folder.mkdir()
    ok, buf = cv2.imencode('.png', np.zeros((6, 9, 3), np.uint8))
    buf.tofile(str(folder / 'Straße ñ 1.png'))
    assert _infer(folder, tmp_path / 'aus gabe', fused) == 0
    assert _read(tmp_path / 'aus gabe' / 'Straße ñ 1.png').shape == (12, 18, 3)


# Checkpoints with pickled code ---------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates the file named ``marker``: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _evil(path, marker, wrap) -> str:
    torch.save(wrap(_Payload(str(marker))), path)
    return str(path)


def _net_state(payload) -> dict:
    state = LIPT(upscale=2, num_feat=8, num_block=1).state_dict()
    return {'params': {**state, 'head.weight': payload}, 'config': {'upscale': 2, 'num_feat': 8, 'num_block': 1}}


def test_load_model_and_load_official_refuse_code(tmp_path):
    marker = tmp_path / 'ran'
    evil = _evil(tmp_path / 'evil.pth', marker, _net_state)
    for load in (lipt_arch.load_model, lambda p: lipt_arch.load_official(p, upscale=2)):
        with pytest.raises(CheckpointError, match='refused to load'):
            load(evil)
    assert not marker.exists()


def test_lipt_infer_refuses_code(tmp_path, capsys):
    marker = tmp_path / 'ran'
    evil = _evil(tmp_path / 'evil.pth', marker, _net_state)
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    assert _infer(tmp_path / 'a.png', tmp_path / 'b.png', evil) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('lipt: error:') and 'refused to load' in err[0]
    assert not marker.exists() and not (tmp_path / 'b.png').exists()


def test_pretrain_network_g_and_resume_state_refuse_code(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, 'argv', list(sys.argv))
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / 'ran'
    evil = _evil(tmp_path / 'evil.pth', marker, _net_state)
    opt = train_options(tmp_path, path={'pretrain_network_g': evil})
    assert basicsr_main(['train', '-opt', str(write_options(opt, tmp_path / 'a.yml'))]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('basicsr train: error: path.pretrain_network_g:') and 'refused to load' in last

    states = tmp_path / 'experiments' / 'tiny' / 'training_states'
    states.mkdir(parents=True, exist_ok=True)
    _evil(states / '8.state', marker, lambda p: {'iter': 8, 'epoch': 0, 'optimizers': [p], 'schedulers': []})
    opt = train_options(tmp_path)
    assert basicsr_main(['train', '-opt', str(write_options(opt, tmp_path / 'b.yml')), '--auto_resume']) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('basicsr train: error:') and '8.state: refused to load' in last
    assert not marker.exists()


def test_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Control: the crafted files do execute code under a plain unpickler (so the tests above test something)."""
    marker = tmp_path / 'ran'
    buffer = io.BytesIO()
    torch.save(_Payload(str(marker)), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=False)
    assert marker.exists()
