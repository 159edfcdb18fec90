"""The arbiter: tensors produced by the authors' reference code (../shared/golden/<case>/)."""
import json

import pytest
import torch

from lipt_arch import load_official, reparameterize
from lipt_arch.archs.hrm import RepConv3x3

from .conftest import SHARED, shared_path

TOL = 5e-3  # max abs, on the 0..255 scale
CASES = sorted(p.name for p in (SHARED / 'golden').glob('*') if (p / 'config.json').is_file()) or ['<missing>']


@pytest.fixture(scope='module', params=CASES)
def case(request):
    folder = shared_path('golden', request.param)
    config = json.loads((folder / 'config.json').read_text())
    args = config['constructor_args']
    load = dict(upscale=args['scale'], window_size=args['window_sizes'][0])
    return dict(folder=folder, load=load, config=config,
                input=torch.load(folder / 'input.pt', weights_only=True),
                model=load_official(folder / 'state_dict.pt', **load))


def _run(model, inp):
    with torch.no_grad():
        return model(inp / 255.0) * 255.0


def _expected(case, name):
    return torch.load(case['folder'] / name, weights_only=True)


def test_structure_is_inferred(case):
    args, model = case['config']['constructor_args'], case['model']
    assert model.config['num_feat'] == args['c_elan']
    assert model.config['num_block'] * (1 + model.config['shared_depth']) == args['m_elan']
    assert model.config['shared_depth'] == args['n_share']
    assert model.config['img_range'] == 255.0 and not model.training


def test_eval_output(case):
    out = _run(case['model'], case['input'])
    assert out.shape == tuple(case['config']['structure']['output_shape'])
    assert (out - _expected(case, 'output_eval.pt')).abs().max().item() < TOL


def test_train_output(case):
    import copy
    model = copy.deepcopy(case['model']).train()
    assert (_run(model, case['input']) - _expected(case, 'output_train.pt')).abs().max().item() < TOL


def test_reparameterized_output(case):
    fused = reparameterize(case['model'])
    out = _run(fused, case['input'])
    assert (out - _expected(case, 'output_deploy.pt')).abs().max().item() < TOL
    assert (out - _expected(case, 'output_eval.pt')).abs().max().item() < TOL


def test_fused_kernels_match_reference_conversion(case):
    reference = torch.load(case['folder'] / 'deploy_state_dict.pt', weights_only=True)
    blocks = {n: m for n, m in case['model'].named_modules() if isinstance(m, RepConv3x3)}
    assert len(blocks) == sum(k.endswith('dbb_reparam.weight') for k in reference)
    name, block = next(iter(blocks.items()))  # body.0.layers.0.hrm_a.conv0
    kernel, bias = block.equivalent_kernel_bias()
    prefix = 'body.0.modules_hrm_a.lcs_a_0.conv0.dbb_reparam.'
    assert name == 'body.0.layers.0.hrm_a.conv0'
    assert (kernel - reference[prefix + 'weight']).abs().max().item() < 1e-5
    assert (bias - reference[prefix + 'bias']).abs().max().item() < 1e-5


def test_reference_converted_checkpoint(case):
    model = load_official(case['folder'] / 'deploy_state_dict.pt', **case['load'])
    assert model.config['deploy'] and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (_run(model, case['input']) - _expected(case, 'output_deploy.pt')).abs().max().item() < TOL
