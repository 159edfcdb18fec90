"""Bundled option files (wheel and checkout), `basicsr -opt NAME`, `lipt options`, the wheel's contents, and the
README's spandrel / traiNNer-redux / neosr snippets, run as written."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
import zipfile

import pytest

from lipt_arch.basicsr_support.bundled_options import OptionNotFoundError, bundled_options, options_dir, resolve_option
from lipt_arch.basicsr_support.command import _with_option_path
from lipt_arch.cli.lipt_cli import main as lipt_main

from .conftest import REPO


def test_checkout_uses_the_top_level_options_folder():
    assert options_dir() == REPO / 'options'
    names = bundled_options()
    assert 'demo_LIPT_x2.yml' in names and 'zoo/train_LIPT_tiny_x2_lr48.yml' in names
    assert len(names) == len(list((REPO / 'options').rglob('*.yml')))


def test_resolve_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = str(REPO / 'options' / 'demo_LIPT_x2.yml')
    for name in ('demo', 'demo_LIPT_x2', 'demo_LIPT_x2.yml', 'options/demo_LIPT_x2.yml'):
        assert resolve_option(name) == demo, name
    x3 = str(REPO / 'options' / 'zoo' / 'train_LIPT_tiny_x3_lr48.yml')
    assert resolve_option('zoo/train_LIPT_tiny_x3_lr48') == x3
    (tmp_path / 'demo').write_text('name: mine\n')  # a local file wins over a bundled name
    assert resolve_option('demo') == 'demo'
    with pytest.raises(OptionNotFoundError, match=r'option file not found: nope\.yml .*train_LIPT_tiny_x2\.yml'):
        resolve_option('nope.yml')
    with pytest.raises(OptionNotFoundError):
        resolve_option('../options/demo_LIPT_x2.yml')  # only bundled names, nothing outside the folder


def test_option_path_replaces_only_the_opt_value():
    assert _with_option_path(['-opt', 'demo', '--debug'], '/x.yml') == ['-opt', '/x.yml', '--debug']
    assert _with_option_path(['-opt=demo', '--force_yml', 'name=demo'], '/x.yml') == [
        '-opt=/x.yml', '--force_yml', 'name=demo']


def test_lipt_options_lists_and_prints(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lipt_main(['options']) == 0
    out = capsys.readouterr().out
    assert 'demo  (= demo_LIPT_x2.yml)' in out and 'zoo/train_LIPT_tiny_x4_lr48.yml' in out
    assert lipt_main(['options', 'demo']) == 0
    assert capsys.readouterr().out.strip() == str(REPO / 'options' / 'demo_LIPT_x2.yml')
    assert lipt_main(['options', 'nope']) == 1
    err = capsys.readouterr().err
    assert err.startswith('lipt: error: option file not found: nope') and len(err.splitlines()) == 1


@pytest.mark.slow
def test_wheel_ships_the_options_and_finds_them(tmp_path):
    """Build the wheel from a copy of the sources (the checkout stays clean) and read options from it."""
    source = tmp_path / 'src'
    for name in ('lipt_arch', 'options'):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.py', 'pyproject.toml', 'README.md'):
        shutil.copy(REPO / name, source / name)
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                             '-w', str(tmp_path / 'dist'), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next((tmp_path / 'dist').glob('lipt_arch-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix('lipt_arch/options/') for n in names if n.startswith('lipt_arch/options/'))
    expected = sorted(p.relative_to(REPO / 'options').as_posix() for p in (REPO / 'options').rglob('*') if p.is_file())
    assert shipped == expected
    assert 'lipt_arch/integrations/spandrel.py' in names and not any(n.startswith('tests/') for n in names)
    installed = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(installed)
    probe = ('from lipt_arch.basicsr_support.bundled_options import options_dir, resolve_option; '
             'print(options_dir()); print(resolve_option("demo"))')
    out = subprocess.run([sys.executable, '-c', probe], cwd=tmp_path, capture_output=True, text=True,
                         env={'PYTHONPATH': str(installed), 'PATH': '/usr/bin:/bin'})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(installed / 'lipt_arch' / 'options'),
                                  str(installed / 'lipt_arch' / 'options' / 'demo_LIPT_x2.yml')]


def _readme_section_code(title: str) -> list[str]:
    text = (REPO / 'README.md').read_text()
    section = text.split(f'## {title}\n', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', section, flags=re.S)


def test_readme_spandrel_and_trainner_snippets_run(tmp_path, monkeypatch):
    pytest.importorskip('spandrel')
    import torch

    from lipt_arch import LIPT, preset_config, save_model

    spandrel_code, register_code, build_code = _readme_section_code('Use LIPT from spandrel, traiNNer-redux or neosr')
    monkeypatch.chdir(tmp_path)
    save_model(LIPT(**preset_config('tiny', 2)), 'lipt_tiny_x2.safetensors')
    scope: dict = {}
    exec(spandrel_code, scope)
    assert tuple(scope['sr'].shape) == (1, 3, 74, 90)

    from basicsr.utils.registry import Registry

    registry = Registry('arch')  # stands in for traiNNer's ARCH_REGISTRY (same register / get API)
    fake = types.ModuleType('traiNNer.utils.registry')
    fake.ARCH_REGISTRY = registry
    for name, module in (('traiNNer', types.ModuleType('traiNNer')), ('traiNNer.utils', types.ModuleType('u')),
                         ('traiNNer.utils.registry', fake)):
        monkeypatch.setitem(sys.modules, name, module)
    exec(register_code, {})
    net = registry.get('LIPT_small')(num_block=1, scale=3)
    assert isinstance(net, torch.nn.Module) and net.upscale == 3
    exec(build_code, {})
