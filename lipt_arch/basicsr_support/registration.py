"""Import every ``*_arch.py`` / ``*_model.py`` / ``*_dataset.py`` of a subpackage so its classes register."""
from __future__ import annotations

import importlib
from pathlib import Path


def import_modules(package: str, package_file: str, suffix: str) -> list:
    """Import the modules in ``package`` whose file names end in ``suffix`` (e.g. ``'_arch.py'``), sorted by name."""
    folder = Path(package_file).parent
    names = sorted(p.stem for p in folder.glob(f'*{suffix}'))
    return [importlib.import_module(f'{package}.{name}') for name in names]
