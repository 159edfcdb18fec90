"""Package layout: no import circle inside lipt_arch, no import from a lower layer up to a higher one, and every
module imports in a fresh interpreter."""
from __future__ import annotations

import ast
import subprocess
import sys

from .conftest import REPO

PACKAGE = REPO / 'lipt_arch'
# Layers, lowest first: a module imports only modules of a lower layer or of its own subpackage.
LAYERS = [
    ('lipt_arch.errors', 'lipt_arch.basicsr_support.registration', 'lipt_arch.basicsr_support.bundled_options'),
    ('lipt_arch.archs', 'lipt_arch.image_io', 'lipt_arch.visualization'),
    ('lipt_arch.checkpoints', 'lipt_arch.validation', 'lipt_arch.metrics'),
    ('lipt_arch.data', 'lipt_arch.basicsr_support'),
    ('lipt_arch.zoo', 'lipt_arch.integrations', 'lipt_arch.deploy'),  # pretrained models, spandrel, deployment
    ('lipt_arch.models',),
    ('lipt_arch',),  # the package: imports the layers below so that `import lipt_arch` registers everything
    ('lipt_arch.cli', 'lipt_arch.basicsr_support.command'),  # the `lipt` and `basicsr` commands
    ('lipt_arch.train', 'lipt_arch.test'),  # `python -m lipt_arch.train|test`: the basicsr command
]


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = list(path.relative_to(REPO).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        out['.'.join(parts)] = ast.parse(path.read_text(encoding='utf-8'))
    return out


def _imports(name: str, tree: ast.Module, known: set[str], is_package: bool) -> set[str]:
    """lipt_arch modules ``name`` imports anywhere in its file (functions and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split('.')[:len(name.split('.')) - node.level + (1 if is_package else 0)]
                base = '.'.join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ''
            targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    packages = {n for n in modules if (PACKAGE.parent / n.replace('.', '/') / '__init__.py').exists()}
    return {name: _imports(name, tree, known, name in packages) for name, tree in modules.items()}


def _layer(name: str) -> tuple[int, str]:
    """The layer of ``name``: that of the longest member it is or lies inside (a submodule may sit in another layer
    than its package, e.g. ``basicsr_support.command``)."""
    matches = [(len(member), rank, member) for rank, members in enumerate(LAYERS) for member in members
               if name == member or (member != 'lipt_arch' and name.startswith(member + '.'))]
    if not matches:
        raise AssertionError(f'{name} is in no layer of tests/test_layout.py: add it')
    _, rank, member = max(matches)
    return rank, member


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError('import circle: ' + ' -> '.join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_upward_import():
    upward = []
    for name, targets in _graph().items():
        rank, home = _layer(name)
        for target in targets:
            target_rank, target_home = _layer(target)
            if target_rank > rank or (target_rank == rank and target_home != home):
                upward.append(f'{name} -> {target}')
    assert not upward, upward


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(n for n in _graph() if n != 'lipt_arch')
    code = 'import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n'
    proc = subprocess.run([sys.executable, '-c', code, *names], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_old_module_paths_are_gone():
    for old in ('checkpoint', 'loading', 'official', 'compat', 'basicsr_fixes', 'resume', 'options_check', 'optimized',
                'equalize', 'export', 'inference', 'registration', 'bundled_options'):
        assert not (PACKAGE / f'{old}.py').exists(), old
    assert not (PACKAGE / 'archs' / 'zero_init_arch.py').exists()


def test_few_modules_at_the_top():
    """The top of the package keeps only what every layer shares; jobs live in their subpackages."""
    loose = sorted(p.name for p in PACKAGE.glob('*.py') if p.name != '__init__.py')
    assert len(loose) <= 8, loose
