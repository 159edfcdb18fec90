"""ONNX export: onnxruntime matches PyTorch on sizes the export never saw; the graph is dynamic."""
import numpy as np
import pytest
import torch

from lipt_arch import LIPT, save_model
from lipt_arch.cli.lipt_cli import main

from .conftest import randomize_

onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')


def small_net(upscale: int = 3) -> LIPT:
    return randomize_(LIPT(upscale=upscale, num_feat=8, num_block=2, shared_depth=1), seed=5)


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
    runtime = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
    got = runtime.run(None, {'image': x.numpy()})[0]
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
    from lipt_arch.deploy.export import check_onnx

    model, path = exported
    assert check_onnx(model, path) <= 1e-4


def test_window16_without_sharing_exports(tmp_path):
    """The scaled_dot_product_attention path (window 16, shared_depth 0) exports with dynamic sizes too."""
    from lipt_arch import reparameterize
    from lipt_arch.deploy.export import check_onnx, export_onnx

    net = reparameterize(randomize_(LIPT(upscale=2, num_feat=8, num_block=1, shared_depth=0, window_size=16), seed=3))
    path = tmp_path / 'w16.onnx'
    export_onnx(net, path)
    assert check_onnx(net, path) <= 1e-4
