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
