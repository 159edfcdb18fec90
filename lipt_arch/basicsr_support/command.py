"""``basicsr train`` / ``basicsr test``: BasicSR's own ``train_pipeline`` / ``test_pipeline`` with LIPT registered.

Experiments (``experiments/<name>/``), logs and results (``results/<name>/``) go under the current directory.
Bad input (a missing dataset folder, an option out of range (:mod:`lipt_arch.validation`), GT / LQ folders that
do not pair up, a wrong ``network_g`` keyword, a checkpoint that is corrupt or does not fit, a NaN loss) ends with
one line on stderr naming the file, option or iteration and exit status 1, before BasicSR creates any folder where
it can check that early. SIGTERM and Ctrl-C (SIGINT) stop a run with one line, ``basicsr train: stopped by SIGTERM
at iteration N; resume with --auto_resume``, and exit status 128 + the signal number (143, 130). See
docs/robustness.md.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

import yaml

import lipt_arch  # noqa: F401  (registers LIPT; its basicsr_support.fixes check the options as basicsr parses them)
from lipt_arch.basicsr_support import resume
from lipt_arch.basicsr_support.bundled_options import OptionNotFoundError, resolve_option
from lipt_arch.errors import CheckpointError, NonFiniteLossError, OptionError

COMMANDS = {
    'train': ('train a network with BasicSR (basicsr.train.train_pipeline)',
              'Train with an option YAML; checkpoints, logs and validation images go to ./experiments/<name>/. '
              'With a LIPT, any model type also writes fused net_g_deploy_<iter>.pth / net_g_deploy_latest.pth '
              '(load with lipt_arch.load_model). Several processes: torchrun --nproc_per_node=N --no-python '
              'basicsr train -opt X.yml --launcher pytorch (gloo on CPU, nccl on GPUs).'),
    'test': ('evaluate a trained network with BasicSR (basicsr.test.test_pipeline)',
             'Evaluate the datasets of an option YAML; logs, metrics and images go to ./results/<name>/. '
             'A LIPT is evaluated in its fused (deploy) form, whatever the model type.'),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``basicsr`` parser; its flags are BasicSR's own (they are passed on to BasicSR unchanged)."""
    parser = argparse.ArgumentParser(
        prog='basicsr', description='BasicSR training and testing with LIPT registered (lipt_arch). '
        'Runs in the current directory: experiments/, results/ and tb_logger/ are created here.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='{train,test}')
    for name, (summary, description) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=description)
        sub.add_argument('-opt', required=True, metavar='YML',
                         help='option YAML file (e.g. options/train_LIPT_x2.yml), or the name of a bundled one when no '
                              'such file is here (demo, train_LIPT_tiny_x2; `lipt options` lists them)')
        sub.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                         help='distributed launcher: pytorch under torchrun (default: none, one process)')
        sub.add_argument('--auto_resume', action='store_true',
                         help='resume from the newest experiments/<name>/training_states/<iter>.state')
        sub.add_argument('--debug', action='store_true', help="prefix the name with 'debug_', validate every 8 iters")
        sub.add_argument('--force_yml', nargs='+', metavar='KEY=VALUE',
                         help='override options, e.g. train:ema_decay=0.999 datasets:train:batch_size_per_gpu=4')
        sub.add_argument('--local_rank', '--local-rank', type=int, default=0,
                         help='set by torch.distributed.launch (torchrun sets LOCAL_RANK instead)')
    return parser


def run(command: str, argv: Sequence[str], root_path: str | None = None) -> None:
    """Run BasicSR's ``command`` pipeline on BasicSR-style ``argv`` (``-opt X.yml ...``), rooted at ``root_path``
    (default: the current directory). Its ``parse_options`` checks every option
    (:func:`lipt_arch.basicsr_support.fixes.parse_options`)."""
    pipeline = getattr(importlib.import_module(f'basicsr.{command}'), f'{command}_pipeline')
    sys.argv = [f'basicsr {command}', *argv]
    pipeline(os.path.abspath(root_path or os.getcwd()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``basicsr`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    rest = argv[argv.index(args.command) + 1:]
    try:
        rest = _with_option_path(rest, resolve_option(args.opt))
    except OptionNotFoundError as err:
        return _fail(args.command, f'-opt: {err}')
    try:
        with warnings.catch_warnings(), _stop_on_sigterm():
            warnings.showwarning = lambda message, *_: _say(args.command, 'warning', str(message))
            run(args.command, rest)
    except KeyboardInterrupt:
        return _stopped(args.command, signal.SIGINT)
    except StoppedBySignal as err:
        return _stopped(args.command, err.signum)
    except (CheckpointError, OptionError) as err:
        return _fail(args.command, str(err))
    except NonFiniteLossError as err:
        return _fail(args.command, f'{err}; fix the data or lower the learning rate, then resume with --auto_resume')
    except FileNotFoundError as err:
        return _fail(args.command, f'not found: {err.filename or err}')
    except yaml.YAMLError as err:
        return _fail(args.command, f'{args.opt}: not valid YAML: {str(err).splitlines()[0]}')
    return 0


class StoppedBySignal(BaseException):
    """Raised in the main thread by a SIGTERM (a ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`StoppedBySignal` while the block runs (main thread only); the old handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise StoppedBySignal(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(command: str, signum: int) -> int:
    """One line for a run stopped by a signal (training: the iteration, and how to go on); 128 + its number."""
    name = 'Ctrl-C (SIGINT)' if signum == signal.SIGINT else signal.Signals(signum).name
    iteration = resume.current_iteration()
    where = ''
    if command == 'train':
        where = (f' at iteration {iteration}; resume with --auto_resume (from the newest training_states/<iter>.state)'
                 if iteration else ' before the first iteration')
    print(f'basicsr {command}: stopped by {name}{where}', file=sys.stderr, flush=True)
    return 128 + int(signum)


def _with_option_path(argv: list[str], path: str) -> list[str]:
    """``argv`` with the value of ``-opt`` (``-opt X`` or ``-opt=X``) replaced by ``path``."""
    out = list(argv)
    for i, token in enumerate(out):
        if token == '-opt' and i + 1 < len(out):
            out[i + 1] = path
        elif token.startswith('-opt='):
            out[i] = f'-opt={path}'
    return out


def _fail(command: str, message: str) -> int:
    _say(command, 'error', message)
    return 1


def _say(command: str, kind: str, message: str) -> None:
    """One line on stderr: ``basicsr <command>: <kind>: <message>``."""
    print(f'basicsr {command}: {kind}: {" ".join(message.split())}', file=sys.stderr, flush=True)


if __name__ == '__main__':
    sys.exit(main())
