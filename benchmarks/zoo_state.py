"""Carry a model-zoo training from one machine to the next through git: save its newest state under zoo/training/,
restore it into experiments/ and continue with ``--auto_resume``.

    python benchmarks/zoo_state.py save options/zoo/train_LIPT_tiny_x2_lr48.yml      # after (or during) training
    python benchmarks/zoo_state.py restore options/zoo/train_LIPT_tiny_x2_lr48.yml   # on a fresh checkout
    basicsr train -opt options/zoo/train_LIPT_tiny_x2_lr48.yml --auto_resume

    python benchmarks/zoo_state.py gray-start zoo/training/starts/LIPT_tiny_x2_lr48_3000.pth \
        zoo/training/starts/LIPT_tiny_x2_lr48_3000_gray.pth     # an RGB start for a one-channel network

``save`` copies the newest ``experiments/<name>/models/net_g_<iter>.pth`` (training form: ``params`` and
``params_ema`` with their BatchNorm statistics) and ``training_states/<iter>.state`` to ``zoo/training/<name>/``,
replacing what was there. To keep the files small enough for git, the optimizer's moment estimates are left out of
the saved state (its learning rates, the scheduler, the iteration, the data position and the random generators stay):
Adam restarts its moments on resume, which its bias correction handles; the weights are exact. ``restore`` copies
them back unless ``experiments/<name>/`` already has a state at least as new. ``gray-start`` folds an RGB network's
head into a one-channel one (:func:`gray_start`).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lipt_arch.archs.lipt_arch import RGB_MEAN  # noqa: E402
from lipt_arch.checkpoints import atomic_save, read_checkpoint  # noqa: E402

ZOO_TRAINING = REPO / 'zoo' / 'training'


def newest_iteration(folder: Path) -> int | None:
    """The largest ``<iter>`` of the ``<iter>.state`` files in ``folder`` (None when there is none)."""
    iters = [int(p.stem) for p in folder.glob('*.state') if p.stem.isdigit()] if folder.is_dir() else []
    return max(iters, default=None)


def save(name: str, experiments: Path) -> Path:
    """Copy the newest state of ``experiments/<name>`` to ``zoo/training/<name>/``; returns that folder."""
    exp = experiments / name
    it = newest_iteration(exp / 'training_states')
    if it is None:
        raise SystemExit(f'zoo_state: no <iter>.state in {exp / "training_states"}')
    target = ZOO_TRAINING / name
    if target.is_dir():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(exp / 'models' / f'net_g_{it}.pth', target / f'net_g_{it}.pth')
    state = read_checkpoint(exp / 'training_states' / f'{it}.state')
    for optimizer in state['optimizers']:
        optimizer['state'] = {}
    atomic_save(state, target / f'{it}.state')
    for log in sorted(exp.glob('train_*.log')):  # the validation curve travels with the state
        shutil.copy2(log, target / log.name)
    return target


def restore(name: str, experiments: Path) -> int:
    """Copy ``zoo/training/<name>/`` into ``experiments/<name>/`` when it is newer; returns its iteration."""
    source = ZOO_TRAINING / name
    it = newest_iteration(source)
    if it is None:
        raise SystemExit(f'zoo_state: nothing saved in {source}')
    exp = experiments / name
    have = newest_iteration(exp / 'training_states')
    if have is not None and have >= it:
        print(f'zoo_state: {exp} is at iteration {have} already (saved: {it}); nothing copied')
        return have
    for sub in ('models', 'training_states'):
        (exp / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / f'net_g_{it}.pth', exp / 'models' / f'net_g_{it}.pth')
    shutil.copy2(source / f'{it}.state', exp / 'training_states' / f'{it}.state')
    for log in source.glob('train_*.log'):
        if not (exp / log.name).exists():
            shutil.copy2(log, exp / log.name)
    return it


def gray_start(source: Path, target: Path, key: str = 'params_ema') -> None:
    """Write a start for a one-channel LIPT from an RGB one's checkpoint (``source[key]``, img_range 1): the head
    conv's (C, 3, 3, 3) weights summed over R, G, B, the RGB mean it subtracted folded into its bias, so a gray image
    gives the body the features the RGB network computes for that image in three equal channels (up to the head's
    zero padding at the border). The tail is left out (its shape depends on the task); load with
    ``strict_load_g: false``."""
    params = dict(read_checkpoint(source)[key])
    weight, bias = params['head.weight'], params['head.bias']
    if weight.shape[1] != 3:
        raise SystemExit(f'zoo_state: {source}: the head takes {weight.shape[1]} channels, not 3 (RGB)')
    mean = torch.tensor(RGB_MEAN, dtype=weight.dtype).view(1, 3, 1, 1)
    params['head.bias'] = bias - (weight * mean).sum(dim=(1, 2, 3))
    params['head.weight'] = weight.sum(dim=1, keepdim=True)
    for name in [k for k in params if k.startswith('tail.')]:
        del params[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({key: params}, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('action', choices=['save', 'restore', 'gray-start'])
    parser.add_argument('option', type=Path,
                        help='the zoo option file (its name: is the experiment); gray-start: the RGB checkpoint')
    parser.add_argument('target', type=Path, nargs='?', help='gray-start: the one-channel start to write')
    parser.add_argument('--experiments', type=Path, default=Path('experiments'), help='default: ./experiments')
    args = parser.parse_args(argv)
    if args.action == 'gray-start':
        if args.target is None:
            parser.error('gray-start needs the RGB checkpoint and the file to write')
        gray_start(args.option, args.target)
        print(f'zoo_state: wrote {args.target}')
        return 0
    name = yaml.safe_load(args.option.read_text())['name']
    if args.action == 'save':
        print(f'zoo_state: saved to {save(name, args.experiments)}')
    else:
        print(f'zoo_state: {args.experiments / name} resumes from iteration {restore(name, args.experiments)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
