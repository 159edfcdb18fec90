"""The ``lipt`` command: every subcommand on generated images and tiny random LIPTs, and every bad input giving one
``lipt: error:`` line with a non-zero exit status (no traceback)."""
import json
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from lipt_arch import LIPT, load_model, preset_config, reparameterize, save_model
from lipt_arch.checkpoints import infer_lipt_config
from lipt_arch.cli.lipt_cli import main

from .conftest import randomize_, shared_path

CONFIG = dict(upscale=2, num_feat=8, num_block=2, shared_depth=1)


@pytest.fixture(scope='module')
def net():
    return randomize_(LIPT(**CONFIG), seed=3).eval()


@pytest.fixture(scope='module')
def ckpts(net, tmp_path_factory):
    """Checkpoints of one network: BasicSR training form, fused .pth, fused .safetensors."""
    folder = tmp_path_factory.mktemp('ckpts')
    training = folder / 'net_g_100.pth'
    torch.save({'params': net.state_dict(), 'params_ema': net.state_dict()}, training)
    fused = folder / 'fused.pth'
    save_model(net, fused)
    st = folder / 'fused.safetensors'
    save_model(net, st)
    return {'training': training, 'fused': fused, 'safetensors': st}


def write(path, img):
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    buf.tofile(str(path))
    return path


def images(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        'rgb.png': write(folder / 'rgb.png', rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)),
        'grey.jpg': write(folder / 'grey.jpg', rng.integers(0, 256, (9, 14), dtype=np.uint8)),
        'rgba.png': write(folder / 'rgba.png', rng.integers(0, 256, (10, 11, 4), dtype=np.uint8)),
        'deep.png': write(folder / 'deep.png', rng.integers(0, 65536, (8, 13, 3), dtype=np.uint16)),
        'deep.tif': write(folder / 'deep.tif', rng.integers(0, 65536, (11, 9), dtype=np.uint16)),
        'pic.bmp': write(folder / 'pic.bmp', rng.integers(0, 256, (7, 10, 3), dtype=np.uint8)),
        'pic.webp': write(folder / 'pic.webp', rng.integers(0, 256, (10, 7, 3), dtype=np.uint8)),
    }


def read(path):
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)


def run(*argv):
    return main([str(a) for a in argv])


def one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('lipt: error:')]
    assert len(lines) == 1, err
    assert 'Traceback' not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------------ infer
def test_infer_folder_of_every_kind(ckpts, tmp_path):
    inputs = images(tmp_path / 'in')
    (tmp_path / 'in' / 'readme.txt').write_text('not an image')
    assert run('infer', '-i', tmp_path / 'in', '-o', tmp_path / 'out', '--model', ckpts['training'], '-q') == 0
    for name, path in inputs.items():
        src, out = read(path), read(tmp_path / 'out' / name)
        assert out.dtype == src.dtype, name
        assert out.shape[:2] == (2 * src.shape[0], 2 * src.shape[1]), name
        assert out.shape[2:] == src.shape[2:], name  # grey stays grey, RGBA keeps alpha
    assert not (tmp_path / 'out' / 'readme.txt').exists()


def test_every_checkpoint_kind_gives_the_same_image(ckpts, tmp_path):
    src = images(tmp_path / 'in')['rgb.png']
    outputs = []
    for kind, ckpt in ckpts.items():
        out = tmp_path / f'{kind}.png'
        assert run('infer', '-i', src, '-o', out, '--model', ckpt, '--scale', 2, '-q') == 0
        outputs.append(read(out))
    assert all(np.abs(o.astype(int) - outputs[0]).max() <= 1 for o in outputs)


def test_single_image_into_a_folder_and_tiled(ckpts, tmp_path):
    src = write(tmp_path / 'große Ansicht.png', np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8))
    assert run('infer', '-i', src, '-o', tmp_path / 'whole', '--model', ckpts['fused'], '--tile', 0, '-q') == 0
    assert run('infer', '-i', src, '-o', tmp_path / 'kachel.png', '--model', ckpts['fused'], '--tile', 24,
               '--tile-pad', 8) == 0
    whole, tiled = read(tmp_path / 'whole' / src.name), read(tmp_path / 'kachel.png')
    assert whole.shape == tiled.shape == (80, 104, 3)


def test_fp16_on_cpu_warns_and_runs(ckpts, tmp_path, capsys):
    src = images(tmp_path / 'in')['rgb.png']
    assert run('infer', '-i', src, '-o', tmp_path / 'o.png', '--model', ckpts['fused'], '--dtype', 'fp16',
               '--device', 'cpu', '-q') == 0
    assert 'fp16' in capsys.readouterr().err and (tmp_path / 'o.png').exists()
    assert run('infer', '-i', src, '-o', tmp_path / 'b.png', '--model', ckpts['fused'], '--dtype', 'bf16',
               '--device', 'cpu', '-q') == 0


# ----------------------------------------------------------------------------------------------- convert, info
def test_training_config_is_inferred_from_key_names(net):
    config = infer_lipt_config(net.state_dict())
    assert {k: config[k] for k in CONFIG} == CONFIG and config['window_size'] == 8 and not config['deploy']
    assert infer_lipt_config(reparameterize(net).state_dict())['deploy']


@pytest.mark.parametrize('name, fmt', [('out.pth', None), ('out.safetensors', None), ('st.pth', 'safetensors')])
def test_convert(net, ckpts, tmp_path, name, fmt):
    out = tmp_path / name
    assert run('convert', ckpts['training'], out, *(['--format', fmt] if fmt else [])) == 0
    model = load_model(out)
    assert model.config['deploy'] and model.config['num_feat'] == 8
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reparameterize(net)(x), rtol=0, atol=1e-6)


def test_safetensors_metadata_holds_the_config(ckpts):
    from safetensors import safe_open

    with safe_open(str(ckpts['safetensors']), framework='pt') as f:
        config = json.loads(f.metadata()['lipt_config'])
    assert config['upscale'] == 2 and config['deploy'] is True


def test_info(ckpts, tmp_path, capsys):
    assert run('info', ckpts['training']) == 0
    out = capsys.readouterr().out
    assert 'scale:      x2' in out and 'width:      8' in out and 'fused:      no' in out
    assert 'window:     8 (assumed' in out and 'preset:     none' in out
    preset = tmp_path / 'tiny_x4.safetensors'
    save_model(LIPT(**preset_config('tiny', 4)), preset)
    assert run('info', preset) == 0
    out = capsys.readouterr().out
    assert 'preset:     tiny (x4)' in out and 'fused:      yes' in out and 'width:      28' in out


def test_authors_checkpoint(tmp_path, capsys):
    state = shared_path('golden', 'A_tiny_x2', 'state_dict.pt')
    assert run('info', state) == 0
    assert "authors' reference-code" in capsys.readouterr().out
    src = images(tmp_path / 'in')['rgb.png']
    assert run('infer', '-i', src, '-o', tmp_path / 'o.png', '--model', state, '--scale', 2, '-q') == 0
    assert read(tmp_path / 'o.png').shape == (24, 34, 3)
    assert run('infer', '-i', src, '-o', tmp_path / 'p.png', '--model', state, '--scale', 4, '-q') == 1
    one_error_line(capsys, 'scale mismatch')
    assert run('convert', state, tmp_path / 'ref.safetensors') == 0
    assert run('infer', '-i', src, '-o', tmp_path / 'c.png', '--model', tmp_path / 'ref.safetensors', '-q') == 0
    assert np.abs(read(tmp_path / 'c.png').astype(int) - read(tmp_path / 'o.png')).max() <= 1


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_image_files_each_fail_alone(ckpts, tmp_path, capsys):
    folder = tmp_path / 'in'
    good = images(folder)
    (folder / 'zero.png').write_bytes(b'')
    (folder / 'cut.png').write_bytes(good['rgb.png'].read_bytes()[:60])
    (folder / 'cut.jpg').write_bytes(good['grey.jpg'].read_bytes()[:200])
    (folder / 'noise.png').write_bytes(b'this is not a PNG at all' * 10 + b'IEND')
    assert run('infer', '-i', folder, '-o', tmp_path / 'out', '--model', ckpts['fused'], '-q') == 1
    err = capsys.readouterr().err
    assert 'lipt: error: 4 of 11 images failed:' in err and 'Traceback' not in err
    for name, reason in [('zero.png', 'empty file'), ('cut.png', 'truncated'), ('cut.jpg', 'truncated'),
                         ('noise.png', 'not a readable image')]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == sorted(good)  # the others were processed


def test_single_bad_image_is_one_line(ckpts, tmp_path, capsys):
    bad = tmp_path / 'zero.png'
    bad.write_bytes(b'')
    assert run('infer', '-i', bad, '-o', tmp_path / 'o.png', '--model', ckpts['fused']) == 1
    one_error_line(capsys, 'zero.png', 'empty file')


def test_output_file_where_a_folder_is_needed(ckpts, tmp_path, capsys):
    images(tmp_path / 'in')
    (tmp_path / 'taken').write_text('a file')
    assert run('infer', '-i', tmp_path / 'in', '-o', tmp_path / 'taken', '--model', ckpts['fused']) == 1
    one_error_line(capsys, 'taken', 'folder')


def test_output_folder_that_is_the_input_folder(ckpts, tmp_path, capsys):
    images(tmp_path / 'in')
    assert run('infer', '-i', tmp_path / 'in', '-o', tmp_path / 'in', '--model', ckpts['fused']) == 1
    one_error_line(capsys, 'input folder')


@pytest.mark.parametrize('which', ['input', 'output'])
def test_unknown_extension(ckpts, tmp_path, capsys, which):
    src = images(tmp_path / 'in')['rgb.png']
    if which == 'input':
        src = tmp_path / 'anim.gif'
        src.write_bytes(b'GIF89a')
    assert run('infer', '-i', src, '-o', tmp_path / f'{which}.xyz', '--model', ckpts['fused']) == 1
    one_error_line(capsys, 'unknown image extension')


def test_checkpoint_that_is_not_lipt(tmp_path, capsys):
    path = tmp_path / 'resnet.pth'
    torch.save({'params': {'conv1.weight': torch.zeros(4, 3, 3, 3)}}, path)
    assert run('info', path) == 1
    one_error_line(capsys, 'resnet.pth', 'not a LIPT checkpoint')
    assert run('info', tmp_path / 'missing.pth') == 1
    one_error_line(capsys, 'checkpoint not found')


class _Payload:
    def __reduce__(self):
        return (print, ('code ran',))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'params': {'head.weight': _Payload()}}, f)
    assert run('info', path) == 1
    captured = capsys.readouterr()
    assert 'code ran' not in captured.out
    assert run('convert', path, tmp_path / 'out.pth') == 1
    one_error_line(capsys, 'refused to load')
    assert not (tmp_path / 'out.pth').exists()


def test_scale_mismatch(ckpts, tmp_path, capsys):
    src = images(tmp_path / 'in')['rgb.png']
    for kind in ('training', 'fused'):
        assert run('infer', '-i', src, '-o', tmp_path / 'o.png', '--model', ckpts[kind], '--scale', 3) == 1
        one_error_line(capsys, 'scale mismatch')


def test_console_script_prints_no_traceback(tmp_path):
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump(_Payload(), f)
    proc = subprocess.run([sys.executable, '-m', 'lipt_arch.cli.lipt_cli', 'info', str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith('lipt: error:') and 'Traceback' not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and 'code ran' not in proc.stdout
