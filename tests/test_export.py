"""ONNX export: traceable helpers equal the arch's, and onnxruntime matches PyTorch on sizes the export never saw."""
import numpy as np
import pytest
import torch

from lipt_arch import LIPT, save_model
from lipt_arch.archs import lipt_arch as lipt_module
from lipt_arch.archs import nvsm_attention
from lipt_arch.archs.lipt_arch import reflect_pad
from lipt_arch.cli.lipt_cli import main
from lipt_arch.export import ExportableLIPT, mirror_pad, traced_sparse_index, traced_token_index

from .conftest import randomize_

onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')


def small_net(upscale: int = 3) -> LIPT:
    return randomize_(LIPT(upscale=upscale, num_feat=8, num_block=2, shared_depth=1), seed=5)


@pytest.mark.parametrize('size', [1, 2, 3, 7, 8, 9, 15, 16, 17, 30])
def test_mirror_pad_equals_reflect_pad(size):
    x = torch.rand(1, 2, size, size + 3)
    for multiple in (8, 16):
        assert torch.equal(mirror_pad(x, multiple), reflect_pad(x, multiple))


@pytest.mark.parametrize('height, width, window, shift, sparse', [
    (8, 16, 8, 0, False), (24, 16, 8, 4, False), (16, 32, 8, 0, True), (24, 40, 8, 4, True), (32, 48, 16, 8, True)])
def test_traced_indices_equal_the_arch(height, width, window, shift, sparse):
    if hasattr(nvsm_attention, 'token_index'):
        index, inverse = traced_token_index(height, width, window, shift, sparse)
        ref_index, ref_inverse = nvsm_attention.token_index(height, width, window, shift, sparse)
        assert torch.equal(index, ref_index) and torch.equal(inverse, ref_inverse)
    if hasattr(nvsm_attention, 'sparse_index'):
        expected = nvsm_attention.sparse_index(height, window, shift)
        assert torch.equal(traced_sparse_index(height, window, shift), expected)


def test_exportable_wrapper_equals_the_network():
    net = small_net().eval()
    wrapper = ExportableLIPT(net)
    for size in [(1, 1), (5, 13), (16, 24), (19, 8)]:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(wrapper(x), net(x), rtol=0, atol=2e-6)
    assert lipt_module.reflect_pad is reflect_pad  # the arch's own helpers are back after each call


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """(fused torch model, onnx path), exported once through ``lipt export`` from a training-form checkpoint."""
    folder = tmp_path_factory.mktemp('export')
    net = small_net()
    ckpt = folder / 'net_g_5.pth'
    torch.save({'params': net.state_dict()}, ckpt)
    out = folder / 'lipt.onnx'
    assert main(['export', '--onnx', str(out), '--model', str(ckpt), '--no-check']) == 0
    fused = folder / 'fused.pth'
    save_model(net, fused)
    from lipt_arch import load_model
    return load_model(fused), out


@pytest.mark.parametrize('batch, height, width', [(1, 37, 45), (2, 16, 24), (1, 5, 3)])
def test_onnxruntime_matches_pytorch(exported, batch, height, width):
    model, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
    got = session.run(None, {'image': x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (batch, 3, 3 * height, 3 * width)
    assert np.abs(got - expected).max() <= 1e-4


def test_graph_is_dynamic_and_has_no_boolean_indexing(exported):
    graph = onnx.load(str(exported[1])).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1] == 3
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # batch, height, width symbolic
    ops = {node.op_type for node in graph.node}
    assert not ops & {'NonZero', 'Compress'}


def test_check_onnx_reports_the_parity(exported):
    from lipt_arch.export import check_onnx

    model, path = exported
    assert check_onnx(model, path) <= 1e-4
