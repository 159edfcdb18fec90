"""Crafted image files and safe writes: a header bomb refused before decoding, animated / multi-page files and
out-of-range float images refused in one line, crafted files never a traceback, and every output (``lipt infer``
images, ``lipt export`` ONNX files, validation panels) written atomically, never over its own input, with the
umask's mode."""
from __future__ import annotations

import errno
import functools
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import lipt_arch.image_io as image_io
from lipt_arch import LIPT, save_model
from lipt_arch.cli.lipt_cli import main
from lipt_arch.errors import ImageError
from lipt_arch.image_io import atomic_write, image_header, read_image, write_bytes, write_image

from .conftest import REPO, randomize_


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('ckpt') / 'tiny_x2.pth'
    save_model(randomize_(LIPT(upscale=2, num_feat=8, num_block=1), seed=0), path)
    return path


def infer(src, dst, model, *flags) -> int:
    return main(['infer', '-i', str(src), '-o', str(dst), '--model', str(model), '-q', *map(str, flags)])


def one_error_line(capsys, *words) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('lipt: error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def write_png(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode('.png', img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def blank_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit grey PNG of zeros, written row by row: 20000x20000 is about 50 KB on disk, 400 MB decoded."""
    rows, comp, parts = bytes(1 + (width + 7) // 8) * 100, zlib.compressobj(9), []
    for start in range(0, height, 100):
        parts.append(comp.compress(rows[:(min(height - start, 100)) * (1 + (width + 7) // 8)]))
    idat = b''.join(parts) + comp.flush()
    ihdr = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)
    chunks = png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', idat) + png_chunk(b'IEND', b'')
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunks)
    return path


def no_space(fd) -> None:
    """Stands for ``os.fsync`` on a full disk: the data is in the temporary file by then."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------------------------------------- safe writes
@pytest.mark.parametrize('failure', ['encoder', 'disk_full'])
def test_failed_write_keeps_the_old_output_and_leaves_no_temporary_file(model, tmp_path, capsys, monkeypatch,
                                                                        failure):
    src = write_png(tmp_path / 'in.png', noise(12, 17))
    out = write_png(tmp_path / 'out.png', noise(5, 5, seed=9))  # a previous good output
    before = out.read_bytes()
    if failure == 'encoder':
        def imencode(*args, **kwargs):
            raise cv2.error('simulated encoder failure')
        monkeypatch.setattr(image_io.cv2, 'imencode', imencode)
    else:  # the temporary file must go, and out.png stay
        monkeypatch.setattr(image_io.os, 'fsync', no_space)
    assert infer(src, out, model) == 1
    one_error_line(capsys, 'out.png', 'simulated encoder failure' if failure == 'encoder' else 'No space left')
    assert out.read_bytes() == before
    assert listing(tmp_path) == ['in.png', 'out.png']


def test_file_size_limit_keeps_the_old_output(model, tmp_path):
    """``ulimit -f`` in a real ``lipt infer`` process: the write fails with EFBIG partway through the file."""
    src = write_png(tmp_path / 'in.png', noise(48, 48))  # 96x96 noise output: about 28 KB of PNG
    out = write_png(tmp_path / 'out.png', noise(4, 4, seed=9))
    before = out.read_bytes()
    limit = 8192

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, '-m', 'lipt_arch.cli.lipt_cli', 'infer', '-i', str(src), '-o', str(out),
                           '--model', str(model), '-q', '--device', 'cpu'], cwd=REPO, capture_output=True, text=True,
                          timeout=600, preexec_fn=limit_file_size, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'out.png: cannot write: File too large' in lines[0], proc.stderr[-2000:]
    assert out.read_bytes() == before
    assert listing(tmp_path) == ['in.png', 'out.png']


@pytest.mark.parametrize('link', ['hard_link', 'symlink', 'hard_link_in_output_folder'])
def test_output_that_is_the_input_file_is_refused(model, tmp_path, capsys, link):
    folder = tmp_path / 'in'
    folder.mkdir()
    src = write_png(folder / 'a.png', noise(9, 11))
    before = src.read_bytes()
    if link == 'hard_link_in_output_folder':
        (tmp_path / 'out').mkdir()
        os.link(src, tmp_path / 'out' / 'a.png')
        assert infer(folder, tmp_path / 'out', model) == 1
        dst = tmp_path / 'out' / 'a.png'
    else:
        dst = tmp_path / 'b.png'
        if link == 'hard_link':
            os.link(src, dst)
        else:
            dst.symlink_to(src)
        assert infer(src, dst, model) == 1
    one_error_line(capsys, str(dst), str(src), 'same file')
    assert src.read_bytes() == before and os.path.samefile(src, dst)  # nothing replaced, the link still stands


def test_same_file_is_refused_by_the_python_writers(tmp_path):
    src = write_png(tmp_path / 'a.png', noise(4, 4))
    os.link(src, tmp_path / 'b.png')
    with pytest.raises(shutil.SameFileError, match='same file as the input'):
        write_image(tmp_path / 'b.png', noise(2, 2), inputs=[src])
    with pytest.raises(shutil.SameFileError):
        write_bytes(tmp_path / 'b.png', b'x', inputs=[src])
    assert cv2.imdecode(np.fromfile(str(src), np.uint8), cv2.IMREAD_UNCHANGED).shape == (4, 4, 3)


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(model, tmp_path, umask):
    src = write_png(tmp_path / 'in.png', noise(6, 7))
    old = os.umask(umask)
    try:
        assert infer(src, tmp_path / 'out.png', model) == 0
        write_bytes(tmp_path / 'model.onnx', b'bytes')
    finally:
        os.umask(old)
    for name in ('out.png', 'model.onnx'):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_atomic_write_removes_the_temporary_file_on_any_error(tmp_path):
    target = tmp_path / 'state.bin'
    target.write_bytes(b'good')

    def interrupted(tmp: str) -> None:
        Path(tmp).write_bytes(b'partial')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_bytes() == b'good' and listing(tmp_path) == ['state.bin']
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b'new'))
    assert target.read_bytes() == b'new' and listing(tmp_path) == ['state.bin']


# ----------------------------------------------------------------------------------------------------- ONNX
class _FakeProgram:
    """Stands in for torch.onnx.export's result (the export itself is tested in test_export.py)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save(self, path, **kwargs) -> None:
        Path(path).write_bytes(b'partial' if self.fail else b'new model')
        if self.fail:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_onnx_export_is_atomic_and_never_over_its_checkpoint(model, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'lipt.onnx'
    out.write_bytes(b'old model')
    monkeypatch.setattr(torch.onnx, 'export', lambda *args, **kwargs: _FakeProgram(fail=True))
    assert main(['export', '--onnx', str(out), '--model', str(model), '--no-check']) == 1
    one_error_line(capsys, 'No space left', 'lipt.onnx')
    assert out.read_bytes() == b'old model' and listing(tmp_path) == ['lipt.onnx']

    monkeypatch.setattr(torch.onnx, 'export', lambda *args, **kwargs: _FakeProgram(fail=False))
    assert main(['export', '--onnx', str(out), '--model', str(model), '--no-check']) == 0
    assert out.read_bytes() == b'new model' and listing(tmp_path) == ['lipt.onnx']

    linked = tmp_path / 'linked.onnx'
    os.link(model, linked)
    before = model.read_bytes()
    assert main(['export', '--onnx', str(linked), '--model', str(model), '--no-check']) == 1
    one_error_line(capsys, str(linked), str(model), 'same file')
    assert model.read_bytes() == before


def test_int8_onnx_export_is_atomic(model, tmp_path, capsys, monkeypatch):
    """``lipt export --dtype int8`` writes through ``OptimizedLIPT.save_onnx`` (the quantization is replaced by its
    result: the write is what is tested); the disk filling at the flush keeps the old file and leaves no other."""
    from lipt_arch.cli import lipt_cli
    from lipt_arch.deploy.optimized import OptimizedLIPT

    calibration, folder = tmp_path / 'calibration', tmp_path / 'out'
    calibration.mkdir()
    folder.mkdir()
    out = folder / 'int8.onnx'
    out.write_bytes(b'old model')
    quantized = SimpleNamespace(onnx_model=b'new int8 model', precision='int8')
    quantized.save_onnx = functools.partial(OptimizedLIPT.save_onnx, quantized)
    monkeypatch.setattr(lipt_cli, 'optimize', lambda *args, **kwargs: quantized)
    argv = ['export', '--dtype', 'int8', '--calibration', str(calibration), '--onnx', str(out), '--model', str(model),
            '--no-check']
    with monkeypatch.context() as patch:
        patch.setattr(image_io.os, 'fsync', no_space)
        assert main(argv) == 1
    one_error_line(capsys, 'No space left', str(out))
    assert out.read_bytes() == b'old model' and listing(folder) == ['int8.onnx']
    old = os.umask(0o077)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    assert out.read_bytes() == b'new int8 model' and listing(folder) == ['int8.onnx']
    assert out.stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------------------- validation panels
def test_validation_panels_are_written_atomically(tmp_path, monkeypatch):
    from lipt_arch.basicsr_support.fused_validation import _triplets

    visuals = {'lq': torch.rand(1, 3, 4, 5), 'result': torch.rand(1, 3, 8, 10), 'gt': torch.rand(1, 3, 8, 10)}

    class FakeModel:  # what _triplets uses of a BasicSR model
        opt = {'val': {'save_triplets': True}, 'path': {'visualization': str(tmp_path / 'vis')}}

        def feed_data(self, data: dict) -> None:
            pass

        def get_current_visuals(self) -> dict:
            return visuals

    fake = FakeModel()
    loader = SimpleNamespace(dataset=SimpleNamespace(opt={'name': 'Set5'}))
    panel = tmp_path / 'vis' / 'Set5' / 'baby_7_LQ_SR_GT.png'

    def one_validation_image() -> None:
        with _triplets(fake, loader, 7):
            fake.feed_data({'lq_path': ['x/baby.png']})
            fake.get_current_visuals()

    one_validation_image()
    before = panel.read_bytes()
    assert cv2.imdecode(np.frombuffer(before, np.uint8), cv2.IMREAD_UNCHANGED).shape == (8, 10 * 3 + 8, 3)

    monkeypatch.setattr(image_io.os, 'fsync', no_space)
    visuals['result'] = torch.rand(1, 3, 8, 10)
    with pytest.raises(ImageError, match='No space left'):
        one_validation_image()
    assert panel.read_bytes() == before and listing(panel.parent) == [panel.name]


def test_bicubic_comparison_panels_are_written_atomically(tmp_path, monkeypatch):
    """``val.compare_bicubic``'s ``<name>_bicubic_LIPT_GT.png`` (LIPTModel): written through ``write_image`` into a
    folder it creates; a failed write keeps the earlier panel byte-identical and leaves no temporary file."""
    from lipt_arch.models.lipt_model import LIPTModel

    model = LIPTModel.__new__(LIPTModel)  # what _score_bicubic uses of a LIPTModel in `basicsr test`
    model.opt = {'scale': 2, 'val': {'metrics': {}}, 'path': {'visualization': str(tmp_path / 'vis')}}
    model.is_train, model._dataset_name, model._lq_paths = False, 'Set5', ['x/baby.png']
    model._bicubic, model._num_scored = {}, 0
    model.lq, model.gt, model.output = torch.rand(1, 3, 4, 5), torch.rand(1, 3, 8, 10), torch.rand(1, 3, 8, 10)
    panel = tmp_path / 'vis' / 'Set5' / 'baby_bicubic_LIPT_GT.png'
    model._score_bicubic()
    before = panel.read_bytes()
    assert cv2.imdecode(np.frombuffer(before, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (8, 10 * 3 + 8)

    monkeypatch.setattr(image_io.os, 'fsync', no_space)
    model.output = torch.rand(1, 3, 8, 10)
    with pytest.raises(ImageError, match='baby_bicubic_LIPT_GT.png: cannot write: No space left'):
        model._score_bicubic()
    assert panel.read_bytes() == before and listing(panel.parent) == [panel.name]


# -------------------------------------------------------------------------------------------------- pixel limit
def test_header_bomb_is_refused_fast_in_little_memory(tmp_path):
    """A 20000x20000 PNG of about 50 KB: refused from its header; OpenCV alone would decode 400 MB for seconds."""
    bomb = blank_png(tmp_path / 'bomb.png', 20000, 20000)
    assert bomb.stat().st_size < 400_000
    code = ('import json, resource, sys, time\n'
            'from lipt_arch.image_io import ImageError, read_image\n'
            'rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
            'start = time.perf_counter()\n'
            'try:\n'
            '    read_image(sys.argv[1])\n'
            '    message = None\n'
            'except ImageError as err:\n'
            '    message = str(err)\n'
            'print(json.dumps({"message": message, "seconds": time.perf_counter() - start,\n'
            '                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss}))\n')
    proc = subprocess.run([sys.executable, '-c', code, str(bomb)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['message'] is not None, 'the bomb was decoded'
    for word in ('bomb.png', '20000x20000', '100,000,000 pixels', '--max-pixels N', 'max_pixels=N'):
        assert word in result['message'], result['message']
    assert result['seconds'] < 2.0, result
    assert result['rss_kib'] < 50 * 1024, result  # the peak grew by less than 50 MiB (decoded: 400 MB)


def test_the_crafted_bomb_generator_makes_real_images(tmp_path):
    """Control for the test above: the same generator at a small size gives a PNG that OpenCV decodes."""
    small = blank_png(tmp_path / 'small.png', 301, 203)
    img = cv2.imdecode(np.fromfile(str(small), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (203, 301) and not img.any()
    assert image_header(small) == image_io.ImageHeader('PNG', 301, 203, 1)


def test_max_pixels_flag_and_argument(model, tmp_path, capsys):
    src = write_png(tmp_path / 'in.png', noise(12, 17))  # 204 pixels
    assert infer(src, tmp_path / 'o.png', model, '--max-pixels', 203) == 1
    one_error_line(capsys, 'in.png', '17x12 pixels', '203 pixels', '--max-pixels')
    assert not (tmp_path / 'o.png').exists()
    assert infer(src, tmp_path / 'o.png', model, '--max-pixels', 204) == 0
    assert infer(src, tmp_path / 'p.png', model, '--max-pixels', 0) == 0
    with pytest.raises(ImageError, match='17x12 pixels'):
        read_image(src, max_pixels=100)
    assert read_image(src, max_pixels=204).shape == (12, 17, 3) and read_image(src, max_pixels=None).size
    with pytest.raises(SystemExit) as exit_:
        infer(src, tmp_path / 'q.png', model, '--max-pixels', -5)
    assert exit_.value.code == 2


def test_output_larger_than_the_memory_is_refused_before_the_run(model, tmp_path, capsys, monkeypatch):
    src = write_png(tmp_path / 'in.png', noise(12, 17))
    monkeypatch.setattr(image_io, 'available_memory', lambda: 10_000)
    assert infer(src, tmp_path / 'o.png', model) == 1
    one_error_line(capsys, 'in.png', 'x2 output would be 34x24 pixels', 'GiB available')
    assert not (tmp_path / 'o.png').exists()
    assert infer(src, tmp_path / 'o.png', model, '--max-pixels', 0) == 0  # 0: no limits
    monkeypatch.setattr(image_io, 'available_memory', lambda: 10**9)
    assert infer(src, tmp_path / 'p.png', model) == 0


# --------------------------------------------------------------------------------------------- multi-frame files
def _frames(count: int) -> list[Image.Image]:
    return [Image.fromarray(noise(9, 11, seed=i)) for i in range(count)]


@pytest.mark.parametrize('kind, count, words', [
    ('tiff', 3, ('multi-page TIFF with 3 pages',)),
    ('apng', 4, ('animated PNG with 4 frames',)),
    ('webp', 2, ('animated WebP with 2 frames',)),
])
def test_multi_frame_files_are_refused_with_the_count(model, tmp_path, capsys, kind, count, words):
    if kind == 'tiff':
        src = tmp_path / 'pages.tif'
        assert cv2.imwritemulti(str(src), [noise(9, 11, seed=i) for i in range(count)])
    else:
        src = tmp_path / f'anim.{"png" if kind == "apng" else "webp"}'
        frames = _frames(count)
        frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    # control: OpenCV alone decodes these files (to their first frame), so the refusal is ours
    assert cv2.imdecode(np.fromfile(str(src), np.uint8), cv2.IMREAD_UNCHANGED) is not None
    assert infer(src, tmp_path / f'o{src.suffix}', model) == 1
    one_error_line(capsys, src.name, *words)
    assert not (tmp_path / f'o{src.suffix}').exists()


def test_hand_made_actl_chunk_is_seen(tmp_path):
    """An APNG made by hand: acTL (2 frames) between IHDR and IDAT of a plain PNG."""
    plain = write_png(tmp_path / 'plain.png', noise(5, 6)).read_bytes()
    ihdr_end = 8 + 8 + 13 + 4
    actl = png_chunk(b'acTL', struct.pack('>II', 2, 0))
    crafted = tmp_path / 'crafted.png'
    crafted.write_bytes(plain[:ihdr_end] + actl + plain[ihdr_end:])
    assert image_header(crafted).frames == 2 and image_header(tmp_path / 'plain.png').frames == 1
    with pytest.raises(ImageError, match='animated PNG with 2 frames'):
        read_image(crafted)


def test_reduced_resolution_tiff_page_is_not_a_frame(tmp_path):
    """A TIFF whose second page is a thumbnail (NewSubfileType 1) is one image."""
    tifffile = pytest.importorskip('tifffile')
    path = tmp_path / 'thumb.tif'
    with tifffile.TiffWriter(path) as tif:
        tif.write(noise(16, 20))
        tif.write(noise(4, 5), subfiletype=1)
    assert image_header(path).frames == 1
    assert read_image(path).shape == (16, 20, 3)


# ------------------------------------------------------------------------------------------------- float images
def _float_tiff(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode('.tif', img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_float_tiff_outside_0_1_is_refused_with_its_range(model, tmp_path, capsys):
    img = np.random.default_rng(0).uniform(0, 255, (10, 12, 3)).astype(np.float32)
    img[0, 0], img[1, 1] = 0, 255
    src = _float_tiff(tmp_path / 'f255.tif', img)
    assert infer(src, tmp_path / 'o.tif', model) == 1
    one_error_line(capsys, 'f255.tif', 'from 0 to 255', 'must hold values in [0, 1]', 'divide by 255')
    assert not (tmp_path / 'o.tif').exists()


def test_float_0_255_would_come_out_white_without_the_rule(monkeypatch):
    """Control: what the rule prevents. The upscaler reads float as [0, 1] and clips its output, so 0..255 data
    comes out saturated (all white with a trained network; 0 or 1 everywhere with this random one)."""
    from lipt_arch.deploy import inference

    net = randomize_(LIPT(upscale=2, num_feat=8, num_block=1), seed=0).eval()
    img = np.random.default_rng(0).uniform(0, 255, (10, 12, 3)).astype(np.float32)
    monkeypatch.setattr(inference, 'check_float_range', lambda *args: None)  # the rule switched off
    out = inference.upscale_array(net, img)
    assert ((out == 0) | (out == 1)).mean() > 0.95
    assert ((inference.upscale_array(net, img / 255) == 0) | (inference.upscale_array(net, img / 255) == 1)).mean() \
        < 0.5


def test_float_array_outside_0_1_is_refused_by_upscale_array():
    """``upscale_array`` (Python arrays) applies the rule of float image files: one line with the minimum and
    maximum, an ``ImageError`` (a ``ValueError``); [0, 1] within 1/255 passes, integer arrays are not checked."""
    from lipt_arch.deploy.inference import upscale_array

    net = randomize_(LIPT(upscale=2, num_feat=8, num_block=1), seed=0).eval()
    img = np.random.default_rng(0).uniform(0, 255, (10, 12, 3)).astype(np.float32)
    img[0, 0], img[1, 1] = 0, 255
    with pytest.raises(ValueError) as err:
        upscale_array(net, img)
    assert isinstance(err.value, ImageError) and '\n' not in str(err.value)
    assert str(err.value) == ('upscale_array: float32 array (10, 12, 3): float image with values from 0 to 255; '
                              'float images must hold values in [0, 1] (0..255 data: divide by 255, or pass it as '
                              'uint8)')
    for bad in (np.nan, np.inf, -np.inf):
        grey = np.full((6, 7), 0.5)
        grey[2, 3] = bad
        with pytest.raises(ImageError, match=r'float64 array \(6, 7\): float image with NaN or infinite samples'):
            upscale_array(net, grey)
    with pytest.raises(ImageError, match=r'from 0.5 to 1000.5; float images must hold values in \[0, 1\]$'):
        upscale_array(net, np.full((6, 7), 0.5, np.float32) + 1000 * np.eye(6, 7, dtype=np.float32))
    slack = np.clip(img / 255, 0, 1)
    slack[0, 0], slack[1, 1] = -0.5 / 255, 1 + 0.5 / 255  # rounding after resampling: accepted
    assert upscale_array(net, slack).shape == (20, 24, 3)
    assert upscale_array(net, (img.round()).astype(np.uint8)).dtype == np.uint8


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_float_tiff_with_non_finite_samples_is_refused(tmp_path, bad):
    img = np.full((6, 7), 0.5, np.float32)
    img[2, 3] = bad
    with pytest.raises(ImageError, match='NaN or infinite'):
        read_image(_float_tiff(tmp_path / 'nan.tif', img))


def test_float_tiff_in_0_1_is_upscaled(model, tmp_path):
    img = np.random.default_rng(0).uniform(0.2, 0.6, (10, 12, 3)).astype(np.float32)
    src = _float_tiff(tmp_path / 'f01.tif', img)
    assert infer(src, tmp_path / 'o.tif', model) == 0
    out = read_image(tmp_path / 'o.tif')
    assert out.dtype == np.float32 and out.shape == (20, 24, 3)
    assert 0.1 < out.mean() < 0.7  # the picture, not white


# ------------------------------------------------------------------------------------------------ crafted files
def _tiff_bytes(ifd_offset: int, entries: list[tuple[int, int, int, int]], next_ifd: int = 0) -> bytes:
    """Little-endian classic TIFF: header, then (at 8) one IFD of SHORT/LONG ``entries`` (tag, type, count, value)."""
    ifd = struct.pack('<H', len(entries)) + b''.join(struct.pack('<HHII', *e) for e in entries)
    return b'II*\x00' + struct.pack('<I', ifd_offset) + ifd + struct.pack('<I', next_ifd)


def _crafted(tmp_path: Path, case: str) -> Path:
    good_png = cv2.imencode('.png', noise(6, 6))[1].tobytes()
    good_jpg = cv2.imencode('.jpg', noise(16, 16))[1].tobytes()
    ihdr = struct.pack('>IIBBBBB', 0, 0, 8, 2, 0, 0, 0)
    files = {
        'zero.png': b'',
        'text.png': b'this is a text file, not a picture\n' * 5,
        'cut.png': good_png[:40],
        'cut.jpg': good_jpg[:len(good_jpg) // 2],
        'header_only.png': b'\x89PNG\r\n\x1a\n' + b'IEND',
        'zero_size.png': b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IEND', b''),
        'bad_data.png': good_png[:33] + png_chunk(b'IDAT', b'not zlib data') + png_chunk(b'IEND', b''),
        'no_sof.jpg': b'\xff\xd8\xff\xe0\x00\x10JFIF\x00' + bytes(9) + b'\xff\xd9',
        'ifd_past_end.tif': b'II*\x00' + struct.pack('<I', 10**6) + bytes(8),
        'page_loop.tif': _tiff_bytes(8, [(256, 3, 1, 4), (257, 3, 1, 4)], next_ifd=8),
        'cut.bmp': b'BM' + bytes(10),
        'riff_not_image.webp': b'RIFF\x10\x00\x00\x00WEBPJUNK' + bytes(8),
        'bad.ppm': b'P6\nwide tall\n255\n',
    }
    path = tmp_path / case
    if case == 'folder.png':
        path.mkdir()
    else:
        path.write_bytes(files[case])
    return path


CRAFTED = {  # file: words of its one-line error
    'zero.png': ('empty file (0 bytes)',),
    'text.png': ('not a readable image', 'content is not PNG, JPEG'),
    'cut.png': ('truncated PNG file',),
    'cut.jpg': ('truncated JPEG file',),
    'header_only.png': ('corrupt PNG header', 'ends early'),
    'zero_size.png': ('size of 0x0',),
    'bad_data.png': ('not a readable image',),
    'no_sof.jpg': ('corrupt JPEG header', 'no frame header'),
    'ifd_past_end.tif': ('corrupt TIFF header',),
    'page_loop.tif': ('corrupt TIFF header', 'loop'),
    'cut.bmp': ('corrupt BMP header',),
    'riff_not_image.webp': ('corrupt WebP header',),
    'bad.ppm': ('corrupt PNM header',),
    'folder.png': ('is a folder',),
}


@pytest.mark.parametrize('case', list(CRAFTED))
def test_crafted_file_is_one_image_error(tmp_path, case):
    path = _crafted(tmp_path, case)
    with pytest.raises(ImageError) as err:  # an ImageError, not a struct.error, cv2.error or OSError
        read_image(path)
    message = str(err.value)
    assert '\n' not in message and message.startswith(str(path)), message
    for word in CRAFTED[case]:
        assert word in message, message


@pytest.mark.parametrize('case', ['zero.png', 'text.png', 'cut.jpg', 'zero_size.png', 'bad_data.png', 'page_loop.tif',
                                  'bad.ppm'])
def test_crafted_file_in_lipt_infer_is_one_line_and_exit_1(model, tmp_path, capfd, case):
    path = _crafted(tmp_path, case)
    assert infer(path, tmp_path / f'out{path.suffix}', model) == 1
    err = capfd.readouterr().err  # file descriptor 2: what libpng / libtiff print directly counts too
    assert len(err.strip().splitlines()) == 1 and err.startswith('lipt: error:'), err
    assert all(word in err for word in (path.name, *CRAFTED[case])), err
    assert listing(tmp_path) == [path.name]


def test_folder_named_like_an_image_as_input(model, tmp_path, capsys):
    folder = _crafted(tmp_path, 'folder.png')
    assert infer(folder, tmp_path / 'out', model) == 1
    one_error_line(capsys, 'folder.png', 'no images in this folder')


def test_content_decides_the_format_not_the_extension(model, tmp_path):
    """A PNG named .jpg is read as the PNG it is (no false 'truncated JPEG')."""
    src = tmp_path / 'really_a_png.jpg'
    src.write_bytes(cv2.imencode('.png', noise(7, 9))[1].tobytes())
    assert image_header(src).format == 'PNG'
    assert infer(src, tmp_path / 'out.png', model) == 0
    assert read_image(tmp_path / 'out.png').shape == (14, 18, 3)
