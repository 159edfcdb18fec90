"""The shipped pretrained models: present, intact, loadable from an installed wheel, scoring what their cards say."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from lipt_arch import zoo
from lipt_arch.cli.lipt_cli import main as lipt_main
from lipt_arch.zoo.evaluate import network_upscaler, score_folder

from .conftest import REPO, SHARED, shared_path

CARDS = zoo.model_cards()
REQUIRED = ('lipt-tiny-x2', 'lipt-tiny-x3', 'lipt-tiny-x4')
SET5_TOLERANCE_DB = 0.02


def test_required_models_are_shipped():
    assert set(REQUIRED) <= set(CARDS), f'missing from lipt_arch/zoo/models.json: {set(REQUIRED) - set(CARDS)}'


@pytest.mark.parametrize('name', list(CARDS))
def test_card_matches_weights(name):
    card = CARDS[name]
    path = zoo.weights_path(name)
    assert path.is_file() and zoo.file_sha256(path) == card['sha256']
    model = zoo.load_pretrained(name)
    assert model.config['upscale'] == card['scale'] and model.config['deploy']
    assert sum(p.numel() for p in model.parameters()) == card['fused_parameters']
    assert zoo.resolve_name(card['preset'], card['scale']) == name
    assert {'Set5', 'Set14', 'B100', 'Urban100'} <= set(card['scores'])
    assert card['scores']['Set5']['psnr'] > card['bicubic']['Set5']['psnr']  # a trained model, not noise


@pytest.mark.parametrize('name', list(CARDS))
def test_set5_score_reproduces(name):
    folder = shared_path('datasets', 'Set5', 'HR')
    card = CARDS[name]
    got = score_folder(network_upscaler(zoo.load_pretrained(name)), folder, card['scale'])
    assert abs(got['psnr'] - card['scores']['Set5']['psnr']) <= SET5_TOLERANCE_DB
    assert abs(got['ssim'] - card['scores']['Set5']['ssim']) <= 1e-3


def test_names_and_errors():
    assert zoo.resolve_name('tiny') == 'lipt-tiny-x4'  # default scale
    assert zoo.resolve_name('LIPT-Tiny-x2') == 'lipt-tiny-x2'
    with pytest.raises(ValueError, match='shipped models: .*lipt-tiny-x2'):
        zoo.resolve_name('huge', 2)
    with pytest.raises(ValueError, match='is x2, not x4'):
        zoo.resolve_name('lipt-tiny-x2', 4)


def test_damaged_weights_are_refused(tmp_path, monkeypatch):
    from lipt_arch import CheckpointError

    damaged = tmp_path / 'weights' / CARDS['lipt-tiny-x2']['file']
    damaged.parent.mkdir()
    data = bytearray(zoo.weights_path('lipt-tiny-x2').read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / zoo.MANIFEST).write_text(json.dumps({'lipt-tiny-x2': CARDS['lipt-tiny-x2']}))
    monkeypatch.setattr(zoo, 'package_folder', lambda: tmp_path)
    with pytest.raises(CheckpointError, match='damaged'):
        zoo.load_pretrained('lipt-tiny-x2')


def _photo(path, height=20, width=26):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_readme_infer_without_model(tmp_path, monkeypatch):
    """README's `lipt infer -i photo.png -o photo_x4.png` runs the shipped LIPT-Tiny x4 with no --model."""
    line = next(line.split('#')[0].strip() for line in (REPO / 'README.md').read_text().splitlines()
                if line.startswith('lipt infer') and '--model' not in line)
    args = shlex.split(line)[1:]
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / 'photo.png')
    assert lipt_main(args + ['-q']) == 0
    assert cv2.imread(str(tmp_path / 'photo_x4.png')).shape == (80, 104, 3)


@pytest.mark.parametrize('extra, factor', [(['--scale', '2'], 2), (['--model', 'lipt-tiny-x3'], 3)])
def test_infer_by_scale_or_name(tmp_path, extra, factor):
    _photo(tmp_path / 'in.png')
    assert lipt_main(['infer', '-i', str(tmp_path / 'in.png'), '-o', str(tmp_path / 'out.png'), '-q'] + extra) == 0
    assert cv2.imread(str(tmp_path / 'out.png')).shape == (20 * factor, 26 * factor, 3)


def test_unknown_model_name_is_one_line(tmp_path, capsys):
    _photo(tmp_path / 'in.png')
    assert lipt_main(['infer', '-i', str(tmp_path / 'in.png'), '-o', str(tmp_path / 'o.png'), '--model', 'nope']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not a shipped model name' in err[0] and 'lipt-tiny-x2' in err[0]


def test_models_command_lists_every_model(capsys):
    assert lipt_main(['models']) == 0
    out = capsys.readouterr().out
    for name, card in CARDS.items():
        assert name in out and f"{card['scores']['Set5']['psnr']:.2f} dB" in out


def test_readme_table_is_the_cards(tmp_path):
    """README's table of shipped models is what ``benchmarks/zoo_eval.py --readme`` writes from the cards."""
    from benchmarks.zoo_eval import readme_table, write_readme_table

    table = readme_table(CARDS)
    assert table.count('\n') == 2 + len(CARDS)
    assert table in (REPO / 'README.md').read_text(), 'run: python benchmarks/zoo_eval.py --readme README.md'
    stale = tmp_path / 'README.md'
    header = ''.join(table.splitlines(keepends=True)[:2])
    stale.write_text('intro\n\n' + header + '| lipt-old | 1 | 2 |\n\nafter\n')
    write_readme_table(stale, CARDS)
    assert stale.read_text() == 'intro\n\n' + table + '\nafter\n'


@pytest.mark.slow
def test_installed_wheel_reproduces_scores(tmp_path):
    """Build the wheel, install it into a separate folder, and score every shipped model from there."""
    shared_path('datasets', 'Set5', 'HR')
    source = tmp_path / 'source'  # a copy without build/ (setuptools would reuse stale files from an earlier build)
    skip = shutil.ignore_patterns('.git', '.venv*', 'build', 'dist', '*.egg-info', '.gpu_*', 'experiments', 'results',
                                  '__pycache__', '.*_cache')
    shutil.copytree(REPO, source, ignore=skip)
    wheels = tmp_path / 'wheels'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheels),
                    str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob('lipt_arch-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert 'lipt_arch/zoo/models.json' in names
    for card in CARDS.values():
        assert f"lipt_arch/zoo/weights/{card['file']}" in names
    site = tmp_path / 'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(site), str(wheel)],
                   check=True, capture_output=True)
    script = (
        'import json, sys, lipt_arch\n'
        'from lipt_arch import zoo\n'
        'from lipt_arch.zoo.evaluate import network_upscaler, score_folder\n'
        'scores = {n: score_folder(network_upscaler(zoo.load_pretrained(n)), sys.argv[1], c["scale"])["psnr"]\n'
        '          for n, c in zoo.model_cards().items()}\n'
        'print(json.dumps({"file": lipt_arch.__file__, "scores": scores}))\n')
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, '-c', script, str(SHARED / 'datasets' / 'Set5' / 'HR')], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['file'].startswith(str(site))  # the wheel's copy, not the repository's
    for name, card in CARDS.items():
        assert abs(report['scores'][name] - card['scores']['Set5']['psnr']) <= SET5_TOLERANCE_DB, name
