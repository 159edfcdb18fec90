"""Options the weights do not record (window, img_range, rgb_mean, img_residual) of a BasicSR training checkpoint:
read from the option file BasicSR copies into the experiment folder, and named as assumed when there is none."""
import pytest
import torch
import yaml

from lipt_arch import LIPT, reparameterize
from lipt_arch.checkpoints import load_any
from lipt_arch.checkpoints.dispatch import experiment_options
from lipt_arch.cli.lipt_cli import main
from lipt_arch.errors import CheckpointError

from .conftest import randomize_

OPTIONS = dict(upscale=1, num_feat=8, num_block=2, shared_depth=1, window_size=16, img_range=255.0,
               img_residual=True)


@pytest.fixture()
def experiment(tmp_path):
    """experiments/denoise/{train_denoise.yml, models/net_g_10.pth}, as `basicsr train` leaves them."""
    net = randomize_(LIPT(**OPTIONS), seed=5).eval()
    root = tmp_path / 'experiments' / 'denoise'
    (root / 'models').mkdir(parents=True)
    checkpoint = root / 'models' / 'net_g_10.pth'
    torch.save({'params': net.state_dict()}, checkpoint)
    opt = {'name': 'denoise', 'model_type': 'LIPTModel', 'network_g': {'type': 'LIPT', **OPTIONS}}
    (root / 'train_denoise.yml').write_text('# GENERATE TIME: ...\n' + yaml.safe_dump(opt))
    return net, checkpoint, root


def test_the_option_file_supplies_what_the_weights_do_not_record(experiment):
    net, checkpoint, _ = experiment
    loaded = load_any(checkpoint)
    assert loaded.assumed == []
    for key in ('window_size', 'img_range', 'img_residual'):
        assert loaded.config[key] == OPTIONS[key]
    x = torch.rand(1, 3, 20, 17)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), reparameterize(net)(x), rtol=0, atol=1e-4)


def test_without_the_option_file_the_defaults_are_named_as_assumed(experiment, capsys):
    _, checkpoint, root = experiment
    (root / 'train_denoise.yml').unlink()
    loaded = load_any(checkpoint)
    assert loaded.assumed == ['window_size=8', 'img_residual=False']
    assert not loaded.config['img_residual']
    assert main(['info', str(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert 'img_residual=False assumed' in err and "experiment's option file" in err


def test_option_files_that_disagree_are_refused(experiment):
    _, checkpoint, root = experiment
    other = yaml.safe_load((root / 'train_denoise.yml').read_text())
    other['network_g']['img_residual'] = False
    (root / 'train_denoise_v2.yml').write_text(yaml.safe_dump(other))
    with pytest.raises(CheckpointError, match='train_denoise.yml, train_denoise_v2.yml.*set different LIPT options'):
        load_any(checkpoint)


def test_a_window_that_contradicts_the_option_file_is_refused(experiment):
    _, checkpoint, _ = experiment
    with pytest.raises(CheckpointError, match="window mismatch: asked for 8, but its experiment's option file"):
        load_any(checkpoint, window_size=8)


def test_only_lipt_option_files_in_an_experiment_folder_count(tmp_path):
    models = tmp_path / 'exp' / 'models'
    models.mkdir(parents=True)
    (tmp_path / 'exp' / 'other.yml').write_text(yaml.safe_dump({'network_g': {'type': 'SwinIR', 'img_range': 1.0}}))
    (tmp_path / 'exp' / 'broken.yml').write_text('network_g: [unclosed')
    assert experiment_options(models / 'net_g_1.pth') == {}
    assert experiment_options(tmp_path / 'net_g_1.pth') == {}  # not in a models/ folder
