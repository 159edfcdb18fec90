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
from lipt_arch.zoo.evaluate import TEST_SETS, headline_score, score_restoration

from .conftest import REPO, SHARED, shared_path

CARDS = zoo.model_cards()
REQUIRED = ('lipt-tiny-x2', 'lipt-tiny-x3', 'lipt-tiny-x4', 'lipt-tiny-denoise', 'lipt-tiny-jpeg')
TOLERANCE_DB = 0.02  # a card's headline score (Set5 for SR) as an install reproduces it


def test_required_models_are_shipped():
    assert set(REQUIRED) <= set(CARDS), f'missing from lipt_arch/zoo/models.json: {set(REQUIRED) - set(CARDS)}'


@pytest.mark.parametrize('name', list(CARDS))
def test_card_matches_weights(name):
    card = CARDS[name]
    path = zoo.weights_path(name)
    assert path.is_file() and zoo.file_sha256(path) == card['sha256']
    model = zoo.load_pretrained(name)
    assert model.config['upscale'] == card['scale'] and model.config['deploy']
    assert model.config['num_in_ch'] == card.get('channels', 3)
    assert sum(p.numel() for p in model.parameters()) == card['fused_parameters']
    scale = card['scale'] if card['task'] == 'sr' else None
    assert zoo.resolve_name(card['preset'], scale, card['task']) == name
    assert set(TEST_SETS[card['task']]) <= set(card['scores'])
    _, score, baseline, _ = zoo.headline(card)
    assert score['psnr'] > baseline['psnr']  # a trained model, not noise


@pytest.mark.parametrize('name', list(CARDS))
def test_headline_score_reproduces(name):
    """Set5 for SR, CBSD68 at sigma 25 for denoising, Classic5 at quality 10 for JPEG, as the card says."""
    shared_path('datasets')
    card = CARDS[name]
    got = headline_score(zoo.load_pretrained(name), card, SHARED / 'datasets')
    _, expected, _, _ = zoo.headline(card)
    assert abs(got['psnr'] - expected['psnr']) <= TOLERANCE_DB
    assert abs(got['ssim'] - expected['ssim']) <= 1e-3


def test_jpeg_input_scores_the_published_figures():
    """Classic5 at JPEG quality 10 scores 27.82 dB PSNR / 25.21 dB PSNR-B before restoration, the input row of the
    SwinIR and FBCNN tables: the zoo's JPEG protocol is theirs."""
    got = score_restoration(None, shared_path('datasets', 'Classic5'), 'jpeg', 10)
    assert got['images'] == 5
    assert round(got['psnr'], 2) == 27.82 and round(got['psnrb'], 2) == 25.21


def test_names_and_errors():
    assert zoo.resolve_name('tiny') == 'lipt-tiny-x4'  # default scale
    assert zoo.resolve_name('LIPT-Tiny-x2') == 'lipt-tiny-x2'
    with pytest.raises(ValueError, match='shipped models: .*lipt-tiny-x2'):
        zoo.resolve_name('huge', 2)
    with pytest.raises(ValueError, match='is x2, not x4'):
        zoo.resolve_name('lipt-tiny-x2', 4)
    with pytest.raises(ValueError, match='task must be one of sr, denoise, jpeg'):
        zoo.resolve_name('tiny', task='deblur')
    with pytest.raises(ValueError, match="task 'denoise' keeps the image size"):
        zoo.resolve_name('tiny', 2, task='denoise')
    for task in ('denoise', 'jpeg'):
        name = zoo.model_name('tiny', task=task)
        if name in CARDS:
            assert zoo.resolve_name('tiny', task=task) == name == f'lipt-tiny-{task}'
            with pytest.raises(ValueError, match=f"'lipt-tiny-x2' is for sr, not {task}"):
                zoo.resolve_name('lipt-tiny-x2', task=task)
        else:
            with pytest.raises(ValueError, match=f'for {task}; shipped models'):
                zoo.resolve_name('tiny', task=task)


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


RESTORATION = [name for name, card in CARDS.items() if card['task'] != 'sr']


@pytest.mark.parametrize('name', RESTORATION)
def test_readme_restoration_examples(tmp_path, monkeypatch, name):
    """README's `lipt infer ... --model lipt-tiny-denoise` / `lipt-tiny-jpeg` lines keep the size; the gray JPEG
    model restores a colour image channel by channel and a gray one as gray."""
    line = next(line.split('#')[0].strip() for line in (REPO / 'README.md').read_text().splitlines()
                if line.startswith('lipt infer') and f'--model {name}' in line)
    args = shlex.split(line)[1:]
    monkeypatch.chdir(tmp_path)
    source, target = args[args.index('-i') + 1], args[args.index('-o') + 1]
    _photo(tmp_path / source)
    assert lipt_main(args + ['-q']) == 0
    assert cv2.imread(str(tmp_path / target), cv2.IMREAD_UNCHANGED).shape == (20, 26, 3)
    cv2.imwrite(str(tmp_path / 'gray.png'), cv2.imread(str(tmp_path / source), cv2.IMREAD_GRAYSCALE))
    assert lipt_main(['infer', '-i', 'gray.png', '-o', 'gray_out.png', '--model', name, '-q']) == 0
    assert cv2.imread(str(tmp_path / 'gray_out.png'), cv2.IMREAD_UNCHANGED).shape == (20, 26)


def test_unknown_model_name_is_one_line(tmp_path, capsys):
    _photo(tmp_path / 'in.png')
    assert lipt_main(['infer', '-i', str(tmp_path / 'in.png'), '-o', str(tmp_path / 'o.png'), '--model', 'nope']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not a shipped model name' in err[0] and 'lipt-tiny-x2' in err[0]


def test_models_command_lists_every_model(capsys):
    assert lipt_main(['models']) == 0
    out = capsys.readouterr().out
    for name, card in CARDS.items():
        test, score, baseline, _ = zoo.headline(card)
        line = next(line for line in out.splitlines() if line.startswith(name + ' '))
        assert test in line and f"{score['psnr']:.2f} dB ({baseline['psnr']:.2f}" in line


def test_readme_table_is_the_cards(tmp_path):
    """README's tables of shipped models are what ``benchmarks/zoo_eval.py --readme`` writes from the cards."""
    from benchmarks.zoo_eval import readme_tables, write_readme_table

    tables = readme_tables(CARDS)
    assert sum(table.count('\n') - 2 for table in tables) == len(CARDS)
    for table in tables:
        assert table in (REPO / 'README.md').read_text(), 'run: python benchmarks/zoo_eval.py --readme README.md'
    stale = tmp_path / 'README.md'
    header = ''.join(tables[0].splitlines(keepends=True)[:2])
    stale.write_text('intro\n\n' + header + '| lipt-old | 1 | 2 |\n\nafter\n')
    write_readme_table(stale, CARDS)  # a missing restoration table goes after the SR one
    assert stale.read_text() == 'intro\n\n' + '\n'.join(tables) + '\nafter\n'
    write_readme_table(stale, CARDS)
    assert stale.read_text() == 'intro\n\n' + '\n'.join(tables) + '\nafter\n'


def test_models_doc_is_the_cards():
    """docs/models.md is what ``benchmarks/zoo_eval.py --markdown`` writes from the cards."""
    from benchmarks.zoo_eval import markdown

    assert (REPO / 'docs' / 'models.md').read_text() == markdown(CARDS), \
        'run: python benchmarks/zoo_eval.py --markdown docs/models.md'


def test_recipe_line_names_warm_restarts():
    from benchmarks.zoo_eval import _recipe_line

    training = {'options': 'o.yml', 'iterations': 6500, 'batch': 16, 'hr_patch': 96, 'lr': 0.002,
                'schedule': 'CosineAnnealingRestartLR', 'periods': [4250, 2250], 'restart_weights': [1, 0.5]}
    line = _recipe_line({'task': 'sr', 'training': training})
    assert 'CosineAnnealingRestartLR (periods 4250, 2250; restart weights 1, 0.5), L1 loss' in line
    one_period = _recipe_line({'task': 'sr', 'training': training | {'periods': [1000], 'restart_weights': [1]}})
    assert 'with CosineAnnealingRestartLR, L1 loss' in one_period


@pytest.mark.slow
def test_installed_wheel_reproduces_scores(tmp_path):
    """Build the wheel, install it into a separate folder, and score every shipped model from there."""
    shared_path('datasets')
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
        'from lipt_arch.zoo.evaluate import headline_score\n'
        'scores = {n: headline_score(zoo.load_pretrained(n), c, sys.argv[1])["psnr"]\n'
        '          for n, c in zoo.model_cards().items()}\n'
        'print(json.dumps({"file": lipt_arch.__file__, "scores": scores}))\n')
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, '-c', script, str(SHARED / 'datasets')], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['file'].startswith(str(site))  # the wheel's copy, not the repository's
    for name, card in CARDS.items():
        assert abs(report['scores'][name] - zoo.headline(card)[1]['psnr']) <= TOLERANCE_DB, name
