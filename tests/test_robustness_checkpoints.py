"""Crafted and damaged checkpoints: every loading path (``lipt`` CLI, ``load_model``, ``load_official``, spandrel,
BasicSR ``pretrain_network_g`` and resume) refuses them before a network is built, with one line naming the file."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lipt_arch.image_io as image_io
from lipt_arch import LIPT, load_model, load_official, save_model
from lipt_arch.basicsr_support import fixes
from lipt_arch.checkpoints import CheckpointError, atomic_save, load_any, read_checkpoint
from lipt_arch.checkpoints.files import check_weights, expected_shapes
from lipt_arch.cli.lipt_cli import main
from lipt_arch.image_io import check_not_input
from lipt_arch.models.lipt_model import LIPTModel

from .conftest import randomize_, shared_path

CONFIG = dict(upscale=2, num_feat=8, num_block=1, shared_depth=1)
HUGE = dict(num_feat=1024, num_block=40)


@pytest.fixture(scope='module')
def net() -> LIPT:
    return randomize_(LIPT(**CONFIG), seed=5).eval()


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def one_error_line(capsys: pytest.CaptureFixture, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('lipt: error:')]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    assert 'Traceback' not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def image(path: Path) -> Path:
    ok, buf = cv2.imencode('.png', np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    assert ok
    buf.tofile(str(path))
    return path


def zip_entry_data(path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of the stored bytes of zip entry ``name`` (torch.save stores entries uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        local = f.read(30)
    name_len, extra_len = struct.unpack('<HH', local[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def zero_inside_tensor_data(path: Path) -> str:
    """Zero 16 bytes inside the largest tensor entry of a torch zip checkpoint; returns the entry's name."""
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if '/data/' in i.filename), key=lambda i: i.file_size)
    offset, size = zip_entry_data(path, entry.filename)
    assert size >= 64
    data = bytearray(path.read_bytes())
    data[offset + size // 2: offset + size // 2 + 16] = bytes(16)
    path.write_bytes(bytes(data))
    return entry.filename


def safetensors_parts(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], 'little')
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write_safetensors(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, 'little') + text + data)
    return path


# -------------------------------------------------------------------------------------------- damaged archives
def test_crc_damaged_pth_is_refused_by_load_model_and_convert(net, tmp_path, capsys):
    path = tmp_path / 'fused.pth'
    save_model(net, path)
    entry = zero_inside_tensor_data(path)
    assert isinstance(torch.load(path, weights_only=True), dict)  # torch alone reads the damaged file silently
    with pytest.raises(CheckpointError, match=f'fused.pth: corrupt checkpoint: archive entry {entry} fails its CRC'):
        load_model(path)
    out = tmp_path / 'out.safetensors'
    assert run('convert', path, out) == 1
    one_error_line(capsys, str(path), 'CRC-32')
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # no temporary file left either
    assert run('info', path) == 1
    one_error_line(capsys, 'CRC-32')


def test_bit_flipped_training_state_is_refused_on_resume(tmp_path):
    param = torch.nn.Parameter(torch.ones(64))
    optimizer = torch.optim.Adam([param], 1e-3)
    param.sum().backward()
    optimizer.step()
    states = tmp_path / 'experiments' / 'x' / 'training_states'
    states.mkdir(parents=True)
    path = states / '7.state'
    torch.save({'epoch': 1, 'iter': 7, 'optimizers': [optimizer.state_dict()], 'schedulers': []}, path)
    opt = {'name': 'x', 'auto_resume': True, 'path': {'resume_state': None, 'training_states': str(states),
                                                      'models': str(states.parent / 'models')}}
    assert fixes.load_resume_state(dict(opt, path=dict(opt['path'])))['iter'] == 7  # the intact state resumes
    with zipfile.ZipFile(path) as archive:
        entry = next(i.filename for i in archive.infolist() if '/data/' in i.filename and i.file_size == 256)
    offset, _ = zip_entry_data(path, entry)
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0x10  # one bit of an Adam moment
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)['iter'] == 7  # torch alone reads it
    with pytest.raises(CheckpointError, match=r'7\.state: corrupt checkpoint: .* fails its CRC-32 check') as err:
        fixes.load_resume_state(opt)
    assert '\n' not in str(err.value)


# ---------------------------------------------------------------------------------------------- tensor values
@pytest.mark.parametrize('value, word', [(float('nan'), 'NaN'), (float('inf'), 'infinite'),
                                         (float('-inf'), 'infinite')])
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_non_finite_weights_are_refused(net, tmp_path, capsys, value, word, suffix):
    bad = randomize_(LIPT(**CONFIG), seed=5).eval()
    with torch.no_grad():
        bad.body[0].layers[1].attn.proj_out.weight[0, 0, 0, 0] = value
    path = tmp_path / f'bad{suffix}'
    save_model(bad, path, fuse=False)
    key = 'body.0.layers.1.attn.proj_out.weight'
    with pytest.raises(CheckpointError, match=rf'bad{suffix}: tensor {key} holds 1 {word} value\(s\)'):
        load_model(path)
    assert run('info', path) == 1
    one_error_line(capsys, str(path), key, word)
    torch.save({'params': bad.state_dict()}, tmp_path / 'net_g_5.pth')  # BasicSR training form: same gate
    with pytest.raises(CheckpointError, match=f'net_g_5.pth: tensor {key} holds 1 {word}'):
        load_any(tmp_path / 'net_g_5.pth')


@pytest.mark.parametrize('dtype', [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_float_weights_are_refused(net, tmp_path, capsys, dtype):
    state = dict(net.state_dict())
    assert any(not v.is_floating_point() for v in state.values())  # num_batches_tracked: int64, and accepted
    state['head.weight'] = state['head.weight'].to(dtype)
    path = tmp_path / 'ints.pth'
    torch.save({'params': state, 'config': net.config}, path)
    name = str(dtype).replace('torch.', '')
    with pytest.raises(CheckpointError, match=f'ints.pth: tensor head.weight has dtype {name}; weights must be '
                                              'floating point'):
        load_model(path)
    assert run('convert', path, tmp_path / 'out.pth') == 1
    one_error_line(capsys, 'head.weight', name)
    assert not (tmp_path / 'out.pth').exists()


def test_integer_counters_and_half_precision_are_accepted(net, tmp_path):
    state = net.state_dict()
    counters = [k for k, v in state.items() if not v.is_floating_point()]
    assert counters and all(k.endswith('num_batches_tracked') for k in counters)
    check_weights('x', state, net.config)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({'params': half, 'config': net.config}, tmp_path / 'half.pth')
    assert isinstance(load_model(tmp_path / 'half.pth'), LIPT)


# ------------------------------------------------------------------------------------------ safetensors files
@pytest.fixture()
def fused_st(net, tmp_path) -> Path:
    path = tmp_path / 'fused.safetensors'
    save_model(net, path)
    return path


def test_safetensors_relabelled_dtype(fused_st, tmp_path, capsys):
    header, data = safetensors_parts(fused_st)
    key = next(k for k, v in header.items() if k != '__metadata__' and v['dtype'] == 'F32' and len(v['shape']) == 4)
    header[key]['dtype'] = 'F16'  # other element size: the offsets no longer fit
    bad = write_safetensors(tmp_path / 'f16.safetensors', header, data)
    with pytest.raises(CheckpointError, match=f'f16.safetensors: not a readable safetensors file .*tensor {key}: '
                                              'F16 of shape .* needs .* bytes, but its data_offsets span'):
        load_model(bad)
    header[key]['dtype'] = 'I32'  # same element size: read, then refused as an integer weight
    bad = write_safetensors(tmp_path / 'i32.safetensors', header, data)
    with pytest.raises(CheckpointError, match=f'i32.safetensors: tensor {key} has dtype int32'):
        load_model(bad)
    assert run('info', bad) == 1
    one_error_line(capsys, str(bad), key, 'int32')


def test_safetensors_invalid_json_header(fused_st, capsys):
    raw = bytearray(fused_st.read_bytes())
    raw[9] = ord('#')  # the first key's opening quote
    fused_st.write_bytes(bytes(raw))
    from safetensors import SafetensorError, safe_open
    with pytest.raises(SafetensorError):  # what the library alone raises
        safe_open(str(fused_st), framework='pt')
    with pytest.raises(CheckpointError, match='fused.safetensors: not a readable safetensors file .*invalid JSON '
                                              'header'):
        load_model(fused_st)
    assert run('info', fused_st) == 1
    one_error_line(capsys, 'invalid JSON header')


def test_safetensors_truncated_or_offsets_out_of_range(fused_st, tmp_path, capsys):
    raw = fused_st.read_bytes()
    length = int.from_bytes(raw[:8], 'little')
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes(raw[:len(raw) // 2])  # tensor data cut
    with pytest.raises(CheckpointError, match='cut.safetensors: .*data_offsets .* run past the end of the tensor'):
        load_model(cut)
    cut.write_bytes(raw[:8 + length // 2])  # header cut
    with pytest.raises(CheckpointError, match=rf'header length \({length} bytes\) runs past the end of the file'):
        load_model(cut)
    cut.write_bytes(raw[:5])
    with pytest.raises(CheckpointError, match='shorter than the 8-byte header length'):
        load_model(cut)
    header, data = safetensors_parts(fused_st)
    key = next(k for k in header if k != '__metadata__')
    header[key]['data_offsets'] = [header[key]['data_offsets'][0] + len(data), header[key]['data_offsets'][1]
                                   + len(data)]
    moved = write_safetensors(tmp_path / 'moved.safetensors', header, data)
    with pytest.raises(CheckpointError, match=f'tensor {key}: data_offsets .* run past the end'):
        load_model(moved)
    assert run('convert', moved, tmp_path / 'o.pth') == 1
    one_error_line(capsys, str(moved), 'run past the end')
    assert not (tmp_path / 'o.pth').exists()


# ------------------------------------------------------------------------------- config against tensor shapes
HUGE_CHECK = '''
import resource, sys, time, torch, json
from safetensors.torch import save_file
from lipt_arch import LIPT
from lipt_arch.cli.lipt_cli import main
from lipt_arch.image_io import check_not_input
from lipt_arch.checkpoints.files import expected_shapes
folder, kind = sys.argv[1], sys.argv[2]
net = LIPT(upscale=2, num_feat=8, num_block=1, shared_depth=1)
state = {k: v.contiguous() for k, v in net.state_dict().items()}
if kind == 'metadata':  # a fused file whose lipt_config claims a huge network
    path = folder + '/claims.safetensors'
    save_file(state, path, metadata={'format': 'pt', 'lipt_config': json.dumps({**net.config, **HUGE})})
else:  # a training checkpoint whose key names and head claim one
    state['head.weight'] = torch.zeros(HUGE['num_feat'], 3, 3, 3)
    state['body.0.layers.0.hrm_a.conv0.conv3x3.weight'] = torch.zeros(HUGE['num_feat'], 1, 1, 1)  # exp_ratio 1
    for i in range(1, HUGE['num_block']):
        for j in range(2):
            state[f'body.{i}.layers.{j}.attn.proj_in.weight'] = torch.zeros(1)
    path = folder + '/net_g_1.pth'
    torch.save({'params': state}, path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
status = main(['info', path])
seconds = time.perf_counter() - start
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
claimed = sum(torch.Size(s).numel() for s in expected_shapes({**net.config, **HUGE}).values())  # after: cached
print(json.dumps({'status': status, 'seconds': seconds, 'grown_mb': grown_mb, 'claimed': claimed}))
'''


@pytest.mark.parametrize('kind', ['metadata', 'training'])
def test_config_claiming_a_huge_network_is_refused_quickly(tmp_path, kind):
    script = f'HUGE = {HUGE!r}\n' + textwrap.dedent(HUGE_CHECK)
    proc = subprocess.run([sys.executable, '-c', script, str(tmp_path), kind], capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['claimed'] > 1_000_000_000  # what building it would have allocated: over 1e9 parameters
    assert result['status'] == 1, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith('lipt: error: ') and 'do not fit' in line and len(line.splitlines()) == 1, line
    assert result['seconds'] < 2.0, result
    assert result['grown_mb'] < 300, result


def test_expected_shapes_equal_the_built_network():
    for config in [CONFIG, dict(CONFIG, deploy=True), dict(upscale=1, num_in_ch=1, num_out_ch=1, num_feat=6,
                                                           num_block=3, shared_depth=3, exp_ratio=2),
                   dict(upscale=3, num_feat=4, num_block=2, shared_depth=0, window_size=16)]:
        built = {k: tuple(v.shape) for k, v in LIPT(**config).state_dict().items()}
        assert expected_shapes(config) == built, config


def test_config_that_does_not_fit_names_the_tensor(net, tmp_path):
    path = tmp_path / 'wide.pth'
    torch.save({'params': net.state_dict(), 'config': dict(net.config, num_feat=16)}, path)
    with pytest.raises(CheckpointError, match=r'wide.pth: weights do not fit the LIPT config .*head.weight is '
                                              r'\(8, 3, 3, 3\) in the file but \(16, 3, 3, 3\) in the network'):
        load_model(path)
    torch.save({'params': net.state_dict(), 'config': dict(net.config, num_feat=7)}, path)
    with pytest.raises(CheckpointError, match="invalid LIPT config .*'num_feat' must be even"):
        load_model(path)


# ------------------------------------------------------------------------------------- outputs: inode and mode
def test_convert_onto_its_own_input_is_refused(net, tmp_path, capsys):
    src = tmp_path / 'net_g_1.pth'
    torch.save({'params': net.state_dict()}, src)
    before = src.read_bytes()
    link = tmp_path / 'link.pth'
    os.link(src, link)
    symlink = tmp_path / 'sym.pth'
    symlink.symlink_to(src)
    for output in (src, link, symlink, f'{tmp_path}/./net_g_1.pth'):
        assert run('convert', src, output) == 1
        one_error_line(capsys, 'is the same file as the input')
        assert src.read_bytes() == before and os.path.samefile(src, link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['link.pth', 'net_g_1.pth', 'sym.pth']
    with pytest.raises(CheckpointError, match='same file as the input') as refused:
        save_model(net, link, inputs=[src])
    with pytest.raises(shutil.SameFileError) as same:  # the one same-file check, that of every other output
        check_not_input(link, [src])
    assert str(refused.value) == str(same.value) and 'same inode' in str(refused.value)
    assert run('convert', link, tmp_path / 'fused.pth') == 0  # another file: written
    capsys.readouterr()
    assert src.read_bytes() == before


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_checkpoints_follow_the_umask(net, tmp_path, capsys, umask, mode):
    src = tmp_path / 'src.pth'
    torch.save({'params': net.state_dict()}, src)
    old = os.umask(umask)
    try:
        for name in ('a.pth', 'a.safetensors'):
            save_model(net, tmp_path / name)
            assert run('convert', src, tmp_path / f'cli_{name}') == 0
            for path in (tmp_path / name, tmp_path / f'cli_{name}'):
                assert oct(path.stat().st_mode & 0o777) == oct(mode), path
    finally:
        os.umask(old)
    capsys.readouterr()


def no_space(fd) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_checkpoints_are_written_by_the_one_atomic_writer(net, tmp_path, monkeypatch):
    """``save_model`` (``.pth``, ``.safetensors``) and ``atomic_save`` (BasicSR's saves) write through
    ``lipt_arch.image_io.atomic_write``: the data is flushed to disk before the rename, and a failure there (disk
    full) keeps the earlier file byte-identical, leaves no temporary file and names the target."""
    other = randomize_(LIPT(**CONFIG), seed=6).eval()
    paths = [tmp_path / 'a.pth', tmp_path / 'a.safetensors', tmp_path / '4.state']
    save_model(net, paths[0])
    save_model(net, paths[1])
    atomic_save({'iter': 4, 'params': net.state_dict()}, paths[2])
    before = [path.read_bytes() for path in paths]
    with monkeypatch.context() as patch:
        patch.setattr(image_io.os, 'fsync', no_space)
        for write, path in ((lambda: save_model(other, paths[0]), paths[0]),
                            (lambda: save_model(other, paths[1]), paths[1]),
                            (lambda: atomic_save({'iter': 5, 'params': other.state_dict()}, paths[2]), paths[2])):
            with pytest.raises(OSError, match='No space left') as err:
                write()
            assert err.value.filename == str(path)
    assert [path.read_bytes() for path in paths] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['4.state', 'a.pth', 'a.safetensors']


def test_killed_save_leaves_a_temporary_name_auto_resume_ignores(net, tmp_path, monkeypatch):
    """A process killed inside a save leaves ``<name>.tmp<pid>.<hex>`` (no cleanup runs); ``--auto_resume`` reads
    only ``<iter>.state`` and resumes from the newest complete one."""
    states = tmp_path / 'experiments' / 'x' / 'training_states'
    states.mkdir(parents=True)
    atomic_save({'epoch': 1, 'iter': 4, 'optimizers': [], 'schedulers': []}, states / '4.state')
    save = torch.save

    def killed(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)
        with open(path, 'r+b') as f:
            f.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt  # stands for SIGKILL: with os.remove disabled, nothing is cleaned up

    with monkeypatch.context() as patch:
        patch.setattr(torch, 'save', killed)
        patch.setattr(image_io.os, 'remove', lambda path: None)
        with pytest.raises(KeyboardInterrupt):
            atomic_save({'epoch': 2, 'iter': 9, 'optimizers': [], 'schedulers': []}, states / '9.state')
    names = sorted(p.name for p in states.iterdir())
    assert len(names) == 2 and names[0] == '4.state', names
    assert re.fullmatch(rf'9\.state\.tmp{os.getpid()}\.[0-9a-f]{{6}}', names[1]), names
    opt = {'name': 'x', 'auto_resume': True, 'path': {'resume_state': None, 'training_states': str(states),
                                                      'models': str(states.parent / 'models')}}
    assert fixes.load_resume_state(opt)['iter'] == 4
    assert opt['path']['resume_state'] == str(states / '4.state')


# ---------------------------------------------------------------------------------------------- CLI messages
@pytest.mark.parametrize('device', ['gpu', 'mps', 'meta', 'cuda:x'])
def test_bad_device_is_one_line(net, tmp_path, capsys, device):
    model = tmp_path / 'm.pth'
    save_model(net, model)
    out = tmp_path / 'o.png'
    assert run('infer', '-i', image(tmp_path / 'in.png'), '-o', out, '--model', model, '--device', device) == 1
    line = one_error_line(capsys, '--device', repr(device), 'cpu', 'cuda', 'cuda:N', 'auto')
    assert line.startswith('lipt: error: --device: ')
    assert not out.exists()


def test_quiet_int8_prints_no_calibration_lines(net, tmp_path, capfd):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    model = tmp_path / 'm.pth'
    save_model(net, model)
    calibration = tmp_path / 'cal'
    calibration.mkdir()
    for i in range(2):
        image(calibration / f'{i}.png')
    args = ['infer', '-i', image(tmp_path / 'in.png'), '-o', tmp_path / 'o.png', '--model', model, '--dtype', 'int8',
            '--calibration', calibration, '--device', 'cpu']
    assert run(*args, '-q') == 0
    captured = capfd.readouterr()
    assert captured.out == '', captured.out
    assert 'histogram' not in captured.err and 'Percentile' not in captured.err, captured.err
    assert run(*args) == 0  # control: without -q, ONNX Runtime's calibration does print
    assert 'Collecting tensor data' in capfd.readouterr().out


# ----------------------------------------------------------------------------------- the other loading paths
def test_load_official_refuses_a_nan_file(tmp_path):
    state = torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True)
    key = next(k for k in state if k.endswith('dbb_origin.conv.weight'))
    state[key] = state[key].clone()
    state[key][0, 0, 0, 0] = float('nan')
    path = tmp_path / 'authors.pth'
    torch.save({'model_state_dict': state}, path)
    with pytest.raises(CheckpointError, match=f'authors.pth: tensor {key} holds 1 NaN'):
        load_official(path, upscale=2)
    damaged = tmp_path / 'damaged.pth'
    torch.save(state, damaged)
    zero_inside_tensor_data(damaged)
    with pytest.raises(CheckpointError, match='damaged.pth: corrupt checkpoint'):
        load_official(damaged, upscale=2)


def test_spandrel_refuses_a_nan_file(tmp_path):
    pytest.importorskip('spandrel')
    from spandrel import ModelLoader

    from lipt_arch.integrations import spandrel as lipt_spandrel
    lipt_spandrel.install()
    bad = randomize_(LIPT(**CONFIG), seed=5).eval()
    with torch.no_grad():
        bad.head.bias[1] = float('nan')
    for name in ('nan.pth', 'nan.safetensors'):
        save_model(bad, tmp_path / name, fuse=False)
        with pytest.raises(CheckpointError, match=f'{name}: tensor head.bias holds 1 NaN'):
            ModelLoader().load_from_file(tmp_path / name)
    good = tmp_path / 'good.pth'
    save_model(randomize_(LIPT(**CONFIG), seed=5), good)
    ModelLoader().load_from_file(good)  # control: the same network without the NaN loads
    zero_inside_tensor_data(good)
    with pytest.raises(CheckpointError, match='good.pth: corrupt checkpoint'):
        ModelLoader().load_from_file(good)
    header, data = safetensors_parts(tmp_path / 'nan.safetensors')
    bad_json = tmp_path / 'json.safetensors'
    bad_json.write_bytes(len(json.dumps(header)).to_bytes(8, 'little') + b'#' + json.dumps(header).encode()[1:]
                         + data)
    with pytest.raises(CheckpointError, match='json.safetensors: .*invalid JSON header'):
        ModelLoader().load_from_file(bad_json)


def test_pretrain_network_g_refuses_a_nan_file(net, tmp_path):
    bad = {k: v.clone() for k, v in net.state_dict().items()}
    bad['tail.weight'][0, 0, 0, 0] = float('inf')
    path = tmp_path / 'net_g_9.pth'
    torch.save({'params': bad}, path)
    model = types.SimpleNamespace(opt={'path': {'pretrain_network_g': str(path)}, 'network_g': dict(CONFIG)},
                                  get_bare_model=lambda n: n)
    target = LIPT(**CONFIG)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=r'path.pretrain_network_g: .*net_g_9.pth: tensor tail.weight holds 1 '
                                              'infinite'):
        LIPTModel.load_network(model, target, str(path))
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded
    torch.save({'params': net.state_dict()}, path)
    LIPTModel.load_network(model, target, str(path))  # control: the finite file loads
    assert torch.equal(target.tail.weight, net.tail.weight)


def test_legacy_pickle_checkpoint_still_loads(net, tmp_path):
    """Decision: a pre-zip ``torch.save`` file has no checksum; it is read (weights-only) and gated by its tensors."""
    path = tmp_path / 'legacy.pth'
    torch.save({'params': net.state_dict(), 'config': net.config}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert isinstance(read_checkpoint(path), dict) and isinstance(load_model(path), LIPT)
    state = dict(net.state_dict(), **{'head.bias': torch.full((8,), float('nan'))})
    torch.save({'params': state, 'config': net.config}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match='legacy.pth: tensor head.bias holds 8 NaN'):
        load_model(path)
