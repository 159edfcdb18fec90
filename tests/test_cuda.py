"""On a CUDA device: the golden cases, fp16 / bf16 parity against fp32, and a training step (skipped without CUDA)."""
import copy
import json
import math

import pytest
import torch

from lipt_arch import LIPT, load_official, preset_config, reparameterize

from .conftest import SHARED, randomize_, shared_path

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')]

TOL = 5e-3  # max abs on the 0..255 scale, as tests/test_golden.py
CASES = sorted(p.name for p in (SHARED / 'golden').glob('*') if (p / 'config.json').is_file()) or ['<missing>']
# Lowest PSNR (dB) of a reduced-precision output against the fp32 output of the same fused network.
PARITY_DB = {'fp16': 55.0, 'bf16': 40.0}  # on CPU (AVX2, torch 2.14): fp16 65.2 dB, bf16 47.2 dB


@pytest.fixture(autouse=True)
def _full_fp32():
    """Exact fp32 (no TF32 in convs or matmuls) for the comparisons with the reference tensors."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize('name', CASES)
def test_golden_case_on_cuda(name):
    folder = shared_path('golden', name)
    args = json.loads((folder / 'config.json').read_text())['constructor_args']
    model = load_official(folder / 'state_dict.pt', upscale=args['scale'], window_size=args['window_sizes'][0]).cuda()
    inp = torch.load(folder / 'input.pt', weights_only=True).cuda()
    expected = {key: torch.load(folder / f'output_{key}.pt', weights_only=True).cuda() for key in ('eval', 'train')}
    with torch.no_grad():
        assert (model(inp / 255) * 255 - expected['eval']).abs().max().item() < TOL
        assert (reparameterize(model)(inp / 255) * 255 - expected['eval']).abs().max().item() < TOL
        train = copy.deepcopy(model).train()
        assert (train(inp / 255) * 255 - expected['train']).abs().max().item() < TOL


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize('dtype', sorted(PARITY_DB))
def test_reduced_precision_parity_with_fp32(dtype):
    """Fused LIPT-Small x4 under autocast (fp16, bf16) against its fp32 output, on a smooth [0, 1] image."""
    torch.manual_seed(0)
    fused = reparameterize(randomize_(LIPT(**preset_config('small', 4)).eval(), seed=3)).cuda()
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing='ij')
    image = torch.stack([x, y, (x * y).sqrt()])[None].cuda()
    amp = {'fp16': torch.float16, 'bf16': torch.bfloat16}[dtype]
    with torch.inference_mode():
        ref = fused(image)
        with torch.autocast('cuda', dtype=amp):
            low = fused(image)
    assert torch.isfinite(low).all()
    assert _psnr(low, ref) >= PARITY_DB[dtype], f'{dtype}: {_psnr(low, ref):.1f} dB'


def test_training_step_on_cuda():
    torch.manual_seed(0)
    net = LIPT(**preset_config('tiny', 2)).cuda().train()
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    lq, gt = torch.rand(4, 3, 32, 32, device='cuda'), torch.rand(4, 3, 64, 64, device='cuda')
    losses = []
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(net(lq), gt)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
