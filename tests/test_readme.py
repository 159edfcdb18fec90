"""README's commands are the ones CI runs, its code blocks run or parse as written, and the code is lint-clean."""
import importlib.util
import re
import shlex
import subprocess
import sys

import pytest

from .conftest import IN_CI, REPO

SPANDREL_SECTION = 'Use LIPT from spandrel, traiNNer-redux or neosr'  # its snippets run in tests/test_packaging.py


def _command_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith('pip install')]


def test_ci_runs_readme_test_command():
    readme = _command_lines((REPO / 'README.md').read_text())
    ci = _command_lines((REPO / '.ci' / 'run').read_text())
    assert len(readme) == 2, readme
    assert ci == [readme[1]]
    assert 'pytest' in readme[1] and '[test]' in readme[1]


def test_ruff_clean():
    if importlib.util.find_spec('ruff') is None:
        if IN_CI:
            pytest.fail('ruff is not installed: it comes with the [test] extra')
        pytest.skip('ruff not installed (it comes with the [test] extra)')
    targets = [p for p in ('lipt_arch', 'tests', 'benchmarks', 'setup.py') if (REPO / p).exists()]
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', *targets], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _readme_blocks(language: str, skip_section: str = '') -> list[str]:
    """README's fenced ``language`` blocks, leaving out the section titled ``skip_section``."""
    sections = re.split(r'\n## ', (REPO / 'README.md').read_text())
    kept = '\n'.join(s for s in sections if not (skip_section and s.startswith(skip_section + '\n')))
    return re.findall(rf'```{language}\n(.*?)```', kept, flags=re.S)


def test_readme_python_runs(tmp_path, monkeypatch):
    """README's Python runs as written (tests/test_packaging.py runs the spandrel / traiNNer section's)."""
    import basicsr.train
    import cv2
    import numpy as np

    blocks = _readme_blocks('python', skip_section=SPANDREL_SECTION)
    assert len(blocks) == 2, blocks
    monkeypatch.chdir(tmp_path)
    cv2.imwrite('photo.png', np.random.default_rng(0).integers(0, 256, (20, 26, 3), dtype=np.uint8))
    roots = []
    monkeypatch.setattr(basicsr.train, 'train_pipeline', lambda root_path: roots.append(root_path))
    for code in blocks:
        exec(code, {})
    assert cv2.imread('photo_x4.png').shape == (80, 104, 3)
    assert roots == ['.']


def test_readme_commands_parse():
    """Every `lipt` / `basicsr` line of README's shell blocks is accepted by that command's parser."""
    from lipt_arch.basicsr_support.command import build_parser as basicsr_parser
    from lipt_arch.cli.lipt_cli import build_parser as lipt_parser

    parsers = {'lipt': lipt_parser(), 'basicsr': basicsr_parser()}
    lines = [shlex.split(line, comments=True) for block in _readme_blocks('bash') for line in block.splitlines()]
    commands = [words for words in lines if words and words[0] in parsers]
    assert len(commands) >= 3, commands
    for words in commands:
        parsers[words[0]].parse_args(words[1:])
