"""The benchmark's restatement of the authors' structure computes the same function (so its timings compare)."""
import copy
import sys

import torch

from lipt_arch import LIPT, load_official

from .conftest import REPO, randomize_, shared_path

sys.path.insert(0, str(REPO))
from benchmarks.reference_structure import ReferenceLIPT  # noqa: E402


def test_reference_structure_reproduces_golden_train_and_eval():
    folder = shared_path('golden', 'A_tiny_x2')
    model = load_official(folder / 'state_dict.pt', upscale=2)
    x = torch.load(folder / 'input.pt', weights_only=True) / 255.0
    with torch.no_grad():
        for converted, mode, name in [(False, 'eval', 'output_eval.pt'), (True, 'eval', 'output_deploy.pt'),
                                      (False, 'train', 'output_train.pt')]:
            ref = ReferenceLIPT(model, converted)
            ref.train(mode == 'train')
            expected = torch.load(folder / name, weights_only=True)
            assert (ref(x) * 255 - expected).abs().max().item() < 5e-3, (converted, mode)


def test_reference_structure_matches_ours_window16_shifted():
    model = randomize_(LIPT(upscale=3, num_feat=16, num_block=2, shared_depth=1, window_size=16), seed=7)
    x = torch.rand(2, 3, 21, 35)
    with torch.no_grad():
        for mode in (False, True):
            ours = copy.deepcopy(model).train(mode)
            ref = ReferenceLIPT(model, converted=False).train(mode)
            assert (ours(x) - ref(x)).abs().max().item() < 1e-4


def test_reference_structure_trains_like_ours():
    """Same training step: output, every parameter gradient and the updated BatchNorm statistics (fp64)."""
    model = randomize_(LIPT(upscale=2, num_feat=8, num_block=2, shared_depth=1), seed=5).double()
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    ours = copy.deepcopy(model).train()
    ref = ReferenceLIPT(model, converted=False).train()
    def ours_name(name: str) -> str:  # the restatement wraps our modules: net. ... .block. / .attn.attn.
        return name.removeprefix('net.').replace('.block.', '.').replace('.attn.attn.', '.attn.')

    results = []
    for net in (ours, ref):
        out = net(x)
        out.square().mean().backward()
        results.append((out, {ours_name(n): p.grad for n, p in net.named_parameters()},
                        {ours_name(n): b for n, b in net.named_buffers() if 'running' in n}))
    (out_o, grad_o, stats_o), (out_r, grad_r, stats_r) = results
    assert (out_o - out_r).abs().max().item() < 1e-10
    assert grad_o.keys() == grad_r.keys()
    for name, grad in grad_o.items():
        assert (grad - grad_r[name]).abs().max().item() <= 1e-9 * (1 + grad.abs().max().item()), name
    for name, stat in stats_o.items():
        assert torch.allclose(stat, stats_r[name], rtol=0, atol=1e-12), name


def test_fused_attention_without_shared_layers_matches_the_explicit_one():
    """shared_depth 0, window 16: the attention runs as scaled_dot_product_attention (no maps kept); it equals the
    reference's explicit softmax(q q^T) v, forward (train and eval) and gradients."""
    model = randomize_(LIPT(upscale=2, num_feat=8, num_block=2, shared_depth=0, window_size=16), seed=9).double()
    assert sum(m.fused_sdpa for m in model.modules() if hasattr(m, 'fused_sdpa')) == 2
    x = torch.rand(1, 3, 20, 36, dtype=torch.float64)
    for mode in (False, True):
        ours = copy.deepcopy(model).train(mode)
        explicit = copy.deepcopy(model).train(mode)
        for m in explicit.modules():
            if hasattr(m, 'fused_sdpa'):
                m.fused_sdpa = False
        out_o, out_e = ours(x), explicit(x)
        with torch.no_grad():
            assert (out_o - ReferenceLIPT(model, converted=False).train(mode)(x)).abs().max().item() < 1e-10
        assert (out_o - out_e).abs().max().item() < 1e-10
        out_o.square().mean().backward()
        out_e.square().mean().backward()
        for (name, p), q in zip(ours.named_parameters(), explicit.parameters()):
            assert (p.grad - q.grad).abs().max().item() <= 1e-9 * (1 + q.grad.abs().max().item()), name
