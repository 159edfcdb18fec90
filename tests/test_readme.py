"""README's commands are the ones CI runs, and the code is lint-clean."""
import importlib.util
import subprocess
import sys

import pytest

from .conftest import IN_CI, REPO


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
