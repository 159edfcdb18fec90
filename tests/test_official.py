"""load_official: wrappers, prefixes, structure inference and clear errors (synthetic reference-style dicts)."""
import pickle

import pytest
import torch

from lipt_arch import CheckpointError, load_official

from .conftest import shared_path


@pytest.fixture(scope='module')
def reference_state():
    return torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True)


def test_wrappers_and_prefix(reference_state, tmp_path):
    wrapped = {'model_state_dict': {f'module.{k}': v for k, v in reference_state.items()}, 'epoch': 3}
    path = tmp_path / 'ckpt.pt'
    torch.save(wrapped, path)
    a, b = load_official(path, upscale=2), load_official(reference_state, upscale=2)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_scale_mismatch(reference_state):
    with pytest.raises(CheckpointError, match='scale mismatch: asked for upscale=4, but its tail fits scale 2'):
        load_official(reference_state, upscale=4)


def test_not_lipt(tmp_path):
    with pytest.raises(CheckpointError, match='not a LIPT checkpoint'):
        load_official({'conv.weight': torch.zeros(1)}, upscale=2)
    with pytest.raises(CheckpointError, match='unexpected key'):
        state = torch.load(shared_path('golden', 'A_tiny_x2', 'state_dict.pt'), weights_only=True)
        load_official(dict(state, **{'extra.weight': torch.zeros(1)}), upscale=2)


class _Payload:
    def __reduce__(self):
        return (print, ('code ran',))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / 'evil.pt'
    with open(path, 'wb') as f:
        pickle.dump({'head.0.weight': _Payload()}, f)
    with pytest.raises(CheckpointError, match='refused to load'):
        load_official(path, upscale=2)
    assert 'code ran' not in capsys.readouterr().out


def test_truncated_file(tmp_path, reference_state):
    path = tmp_path / 'cut.pt'
    torch.save(reference_state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='cut.pt'):
        load_official(path, upscale=2)
    with pytest.raises(CheckpointError, match='checkpoint not found'):
        load_official(tmp_path / 'missing.pt', upscale=2)
