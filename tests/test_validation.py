"""lipt_arch.validation: YAML values basicsr's own parser trips over, --force_yml entries and lipt flags are refused
with one line naming the key or flag, before any folder is made."""
from __future__ import annotations

import sys

import pytest

from lipt_arch.basicsr_support.command import main as basicsr_main
from lipt_arch.cli.lipt_cli import main as lipt_main
from lipt_arch.errors import OptionError
from lipt_arch.validation import check_raw_options, positive_option

from .basicsr_helpers import merge, train_options, write_options
from .conftest import REPO


@pytest.fixture(autouse=True)
def _keep_argv(monkeypatch):
    monkeypatch.setattr(sys, 'argv', list(sys.argv))


def _train(root, opt, capsys, *flags: str) -> tuple[int, list[str]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        status = basicsr_main(['train', '-opt', str(write_options(opt, root / 'run.yml')), *flags])
    return status, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize('entry, expected', [
    ('train:ema_decay', "--force_yml: expected KEY[:KEY...]=VALUE"),
    ('nosuch:key=1', "--force_yml: 'nosuch:key=1': no section nosuch in"),
    ('name"]=1;import os;x["a=2', '--force_yml: expected KEY[:KEY...]=VALUE'),
])
def test_bad_force_yml_is_one_line(tmp_path, capsys, entry, expected):
    status, err = _train(tmp_path, train_options(tmp_path), capsys, '--force_yml', entry)
    assert status == 1 and len(err) == 1 and err[0].startswith(f'basicsr train: error: {expected}'), err
    assert not (tmp_path / 'experiments').exists()


def test_missing_option_file_is_one_line(tmp_path, capsys):
    assert basicsr_main(['test', '-opt', str(tmp_path / 'nope.yml')]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'basicsr test: error: -opt: option file not found: {tmp_path}/nope.yml') and '\n' not in err


def test_raw_check_names_missing_sections():
    with pytest.raises(OptionError, match='^datasets: missing'):
        check_raw_options({'name': 'x', 'path': {}})
    check_raw_options({})  # nothing read: basicsr's own parser reports the missing -opt


def test_dataset_option_ints_share_one_rule():
    assert positive_option({'gt_size': 4}, 'gt_size', 'X') == 4
    assert positive_option({}, 'gt_size', 'X') is None
    for value in (0, -1, 2.0, True, '4'):
        with pytest.raises(OptionError, match=f"^X option 'gt_size' must be a positive integer, got {value!r}"):
            positive_option({'gt_size': value}, 'gt_size', 'X')
    with pytest.raises(OptionError, match="^X needs option 'gt_size'$"):
        positive_option({}, 'gt_size', 'X', required=True)


@pytest.mark.parametrize('flags, expected', [
    (['infer', '-i', 'a.png', '-o', 'b.png', '--model', 'm.pth', '--tile', '-1'], '--tile: must be an integer >= 0'),
    (['infer', '-i', 'a.png', '-o', 'b.png', '--model', 'm.pth', '--tile-pad', '-8'],
     '--tile-pad: must be an integer >= 0'),
    (['export', '--onnx', 'a.onnx', '--model', 'm.pth', '--opset', '0'], '--opset: must be an integer >= 1'),
])
def test_lipt_flag_out_of_range_is_usage_error(capsys, flags, expected):
    with pytest.raises(SystemExit) as exit_info:
        lipt_main(flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].endswith(f'error: {expected}, got {flags[-1]}'), err


def test_deprecated_arch_type_is_one_warning_line(tmp_path, capsys):
    import torch

    torch.save({'params': {'x': torch.zeros(1)}}, tmp_path / 'wrong.pth')  # stops the run right after the build
    opt = merge(train_options(tmp_path), {'network_g': {'type': 'LIPT_zero_init'},
                                          'path': {'pretrain_network_g': str(tmp_path / 'wrong.pth')}})
    status, err = _train(tmp_path, opt, capsys)
    warning = ('basicsr train: warning: network_g type LIPT_zero_init is deprecated: use type: LIPT with '
               'zero_init_residual: true')
    assert status == 1 and warning in err and 'weights do not fit' in err[-1], err


@pytest.mark.parametrize('path', sorted((REPO / 'options').rglob('*.yml')), ids=lambda p: p.stem)
def test_shipped_option_files_pass_the_raw_checks(path):
    import yaml

    check_raw_options(yaml.safe_load(path.read_text()))
