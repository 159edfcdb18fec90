"""The option files shipped with lipt_arch (``options/*.yml``, ``options/zoo/*.yml``, ``options/meta_info/*``).

In the repository they live in the top-level ``options/`` folder; a wheel installs the same files as
``lipt_arch/options/`` (setup.py maps the one onto the other). :func:`resolve_option` lets ``basicsr train -opt demo``
or ``-opt demo_LIPT_x2.yml`` run a bundled option from any directory when no such file exists there.
"""
from __future__ import annotations

import os
from pathlib import Path

ALIASES = {'demo': 'demo_LIPT_x2.yml'}  # short names for `basicsr train -opt NAME`


class OptionNotFoundError(FileNotFoundError):
    """Neither a local option file nor a bundled one has the given name."""


def options_dir() -> Path:
    """The folder of the bundled option files: ``lipt_arch/options`` in an installed wheel, else the repository's
    ``options/`` (source checkout or editable install)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / 'options'
    return installed if installed.is_dir() else package.parent / 'options'


def bundled_options() -> list[str]:
    """Names (relative to :func:`options_dir`, e.g. ``'demo_LIPT_x2.yml'``, ``'zoo/train_LIPT_tiny_x2_lr48.yml'``) of
    the bundled option YAML files, sorted."""
    root = options_dir()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob('*.yml'))


def resolve_option(name: str | os.PathLike) -> str:
    """``name`` itself when it is an existing file; else the bundled option it names: an alias (``demo``), a bundled
    name with or without ``.yml`` and with or without a leading ``options/``. Raises :class:`OptionNotFoundError`
    with one line listing the bundled names when neither exists."""
    name = os.fspath(name)
    if os.path.isfile(name):
        return name
    root, names = options_dir(), bundled_options()
    stem = ALIASES.get(name, name).replace(os.sep, '/').removeprefix('./').removeprefix('options/')
    for candidate in (stem, f'{stem}.yml'):
        if candidate in names:
            return str(root / candidate)
    aliases = ', '.join(f'{alias} ({target})' for alias, target in ALIASES.items())
    raise OptionNotFoundError(f'option file not found: {name} (not a file here, nor a bundled option; bundled: '
                              f'{aliases}, {", ".join(names)}; their folder: {root})')
