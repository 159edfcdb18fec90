"""torch.compile of the fused network, and of the six-branch convs for training, gives the eager result (CPU)."""
import copy

import pytest
import torch

from lipt_arch import LIPT, reparameterize
from lipt_arch.archs import compile_rep_convs

from .conftest import randomize_


@pytest.mark.timeout(900)
def test_compiled_fused_model_matches_eager():
    fused = reparameterize(randomize_(LIPT(upscale=2, num_feat=8, num_block=2), seed=11))
    compiled = torch.compile(fused)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        expected, got = fused(x), compiled(x)
    assert got.shape == (1, 3, 40, 56)
    assert (got - expected).abs().max().item() < 1e-4


def _train_step(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    out = net(x)
    out.square().mean().backward()
    return out.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.timeout(900)
def test_compiled_rep_convs_train_like_eager():
    """compile_rep_convs: same training output, gradients and BatchNorm statistics as eager, same state dict."""
    eager = randomize_(LIPT(upscale=2, num_feat=8, num_block=2), seed=12).train()
    compiled = copy.deepcopy(eager)
    assert compile_rep_convs(compiled) == 2 * 2 * 3 * 2  # blocks x layers x HRMs x convs
    x = torch.rand(2, 3, 16, 16)
    out_e, grads_e = _train_step(eager, x)
    out_c, grads_c = _train_step(compiled, x)
    assert (out_c - out_e).abs().max().item() < 1e-4 * out_e.abs().max().item()
    for name, grad in grads_e.items():
        assert (grads_c[name] - grad).abs().max().item() <= 1e-3 * grad.abs().max().item() + 1e-7, name
    state_e, state_c = eager.state_dict(), compiled.state_dict()
    assert state_e.keys() == state_c.keys()
    for name in state_e:
        assert torch.allclose(state_c[name].float(), state_e[name].float(), rtol=1e-4, atol=1e-6), name


@pytest.mark.timeout(900)
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='Inductor prepacks weights for oneDNN only')
def test_optimize_compile_freezes_the_weights():
    """``optimize(compile=True)`` must really freeze: weights as constants, prepacked for oneDNN, ReLU and residual
    adds fused into the convs (``torch.compile(options={'freezing': True})`` alone silently does not)."""
    from torch._dynamo.utils import counters

    from lipt_arch import optimize

    torch.compiler.reset()
    counters.clear()
    fused = reparameterize(randomize_(LIPT(upscale=2, num_feat=8, num_block=2), seed=12))
    x = torch.rand(1, 3, 16, 24)
    with torch.compiler.config.patch(force_disable_caches=True):  # a cache hit counts no patterns
        assert (optimize(fused, 'fp32', compile=True)(x) - fused(x)).abs().max().item() < 1e-4
    packed = counters['inductor']['mkldnn_conv_weight_pack_matcher_count']
    assert packed == 2 + 2 * 2 * (3 * 2 + 1)  # head, tail, every HRM conv and attention proj_in (1x1)
    assert counters['inductor']['mkldnn_conv_binary_unary_fusion_matcher_count'] == 2 * 2 * 3  # residual adds


def test_optimize_compile_takes_the_attention_indices_as_graph_inputs(monkeypatch):
    """``optimize(compile=True)`` passes ``LIPT.window_indices`` in, so the traced graph holds no index arithmetic
    (``token_index``'s scatter), which Inductor would otherwise redo inside every gather; a plain compile of a LIPT
    still builds them in the graph. Both give the eager result."""
    from lipt_arch import optimize

    graphs = []

    def record(gm, example_inputs):
        graphs.append({str(node.target) for node in gm.graph.nodes})
        return gm.forward

    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda net: compile_(net, backend=record))
    fused = reparameterize(randomize_(LIPT(upscale=2, num_feat=8, num_block=2), seed=13))
    x = torch.rand(1, 3, 19, 27)
    with torch.no_grad():
        expected = fused(x)
        assert (optimize(fused, 'fp32', compile=True)(x) - expected).abs().max().item() < 1e-4
        assert len(graphs) == 1 and not any('scatter' in target for target in graphs[0])
        assert torch.equal(fused(x, fused.window_indices(x)), expected)
        plain = torch.compile(fused)
        assert (plain(x) - expected).abs().max().item() < 1e-4
    assert len(graphs) == 2 and any('scatter' in target for target in graphs[1])
