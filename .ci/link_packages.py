"""Link installed distributions and everything they require into another environment's site-packages.

CI installs torch once: ``python .ci/link_packages.py DEST_SITE_PACKAGES torch torchvision`` (run with the first
environment's python) symlinks torch, torchvision and their requirement closure (files and ``*.dist-info``), so pip in
the second environment sees them installed and installs only the rest.
"""
from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The distributions ``names`` and, recursively, those their requirements name (markers evaluated for this
    interpreter and for the extras asked for)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in names]
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = found.setdefault(key[0], metadata.distribution(name))
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({'extra': extra}) for extra in {'', *extras}):
                todo.append((req.name, frozenset(req.extras)))
    return list(found.values())


def main(dest: str, *names: str) -> None:
    target = Path(dest)
    for dist in closure(list(names)):
        root = Path(dist.locate_file(''))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith('..')}
        for top in sorted(tops):
            link = target / top
            if not link.exists() and (root / top).exists():
                link.symlink_to(root / top)
        print(f'linked {dist.metadata["Name"]} {dist.version}')


if __name__ == '__main__':
    main(*sys.argv[1:])
