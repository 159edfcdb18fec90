"""benchmarks/zoo_state.py: a training state travels through git without the optimizer's moments, and comes back."""
from __future__ import annotations

import torch

from benchmarks import zoo_state
from lipt_arch.checkpoints import read_checkpoint


def _experiment(root, name: str, iters: list[int]) -> None:
    exp = root / name
    (exp / 'models').mkdir(parents=True)
    (exp / 'training_states').mkdir()
    for it in iters:
        torch.save({'params': {'w': torch.full((2,), float(it))}, 'params_ema': {'w': torch.zeros(2)}},
                   exp / 'models' / f'net_g_{it}.pth')
        torch.save({'epoch': 0, 'iter': it, 'schedulers': [{'last_epoch': it}],
                    'optimizers': [{'state': {0: {'exp_avg': torch.ones(2)}}, 'param_groups': [{'lr': 1e-3}]}]},
                   exp / 'training_states' / f'{it}.state')
    (exp / 'train_x_1.log').write_text('log')


def test_save_then_restore(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_state, 'ZOO_TRAINING', tmp_path / 'zoo' / 'training')
    _experiment(tmp_path / 'a', 'run', [4, 8])
    saved = zoo_state.save('run', tmp_path / 'a')
    assert sorted(p.name for p in saved.iterdir()) == ['8.state', 'net_g_8.pth', 'train_x_1.log']
    state = read_checkpoint(saved / '8.state')
    assert state['optimizers'][0] == {'state': {}, 'param_groups': [{'lr': 1e-3}]} and state['iter'] == 8

    assert zoo_state.restore('run', tmp_path / 'b') == 8
    restored = tmp_path / 'b' / 'run'
    assert read_checkpoint(restored / 'models' / 'net_g_8.pth')['params']['w'].tolist() == [8.0, 8.0]
    assert (restored / 'training_states' / '8.state').is_file() and (restored / 'train_x_1.log').is_file()
    _experiment(tmp_path / 'c', 'run', [12])  # a newer local state is kept
    assert zoo_state.restore('run', tmp_path / 'c') == 12
    assert not (tmp_path / 'c' / 'run' / 'models' / 'net_g_8.pth').exists()


def test_gray_start_gives_the_rgb_features_of_a_gray_image(tmp_path):
    """A one-channel network started by ``gray-start`` computes, on a gray image, what the RGB network computes on
    that image in three equal channels (away from the head's zero-padded border); the tail is left out."""
    from lipt_arch.archs import LIPT

    torch.manual_seed(0)
    config = dict(upscale=2, num_feat=8, num_block=2, shared_depth=1, window_size=8)
    rgb = LIPT(**config).eval()
    torch.save({'params_ema': rgb.state_dict()}, tmp_path / 'rgb.pth')
    assert zoo_state.main(['gray-start', str(tmp_path / 'rgb.pth'), str(tmp_path / 'gray.pth')]) == 0
    params = read_checkpoint(tmp_path / 'gray.pth')['params_ema']
    assert params['head.weight'].shape[1] == 1 and not any(k.startswith('tail.') for k in params)
    gray = LIPT(**config, num_in_ch=1).eval()
    assert gray.load_state_dict(params, strict=False).missing_keys == ['tail.weight', 'tail.bias']
    gray.tail.load_state_dict(rgb.tail.state_dict())
    x = torch.rand(1, 1, 128, 128)  # the border's difference spreads through the attention windows
    with torch.no_grad():
        diff = (rgb(x.expand(1, 3, 128, 128)) - gray(x)).abs()
    assert diff[..., 112:144, 112:144].max() < 1e-4
    assert diff.max() > 1e-4  # the border does differ: the check above is not vacuous
