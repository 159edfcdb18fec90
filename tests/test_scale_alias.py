"""`scale` as an alias of `upscale` (traiNNer-redux / neosr / spandrel name it so) in LIPT, the presets and
LIPT_zero_init; one clear error when both are given and disagree."""
import pytest
from basicsr.utils.registry import ARCH_REGISTRY

from lipt_arch import LIPT, preset_config
from lipt_arch.models.lipt_model import OptionError
from lipt_arch.validation import check_lipt_options

SMALL = dict(num_feat=8, num_block=1)


def test_lipt_takes_scale():
    assert LIPT(scale=3, **SMALL).upscale == 3
    assert LIPT(upscale=3, scale=3, **SMALL).config['upscale'] == 3
    assert LIPT(**SMALL).upscale == 4  # the default is unchanged
    assert 'scale' not in LIPT(scale=2, **SMALL).config  # configs (and checkpoints) keep one name


def test_disagreeing_scale_and_upscale_is_one_error():
    with pytest.raises(ValueError, match=r"'upscale' \(2\) and its alias 'scale' \(4\) disagree"):
        LIPT(upscale=2, scale=4, **SMALL)
    with pytest.raises(ValueError, match="'upscale' must be one of"):
        LIPT(scale=5, **SMALL)


@pytest.mark.parametrize('name', ['LIPT_tiny', 'LIPT_small', 'LIPT_base', 'LIPT_zero_init'])
def test_registered_builders_take_scale_as_trainner_calls_them(name):
    network_g = {'type': name, 'num_block': 1, 'num_feat': 8}
    build = ARCH_REGISTRY.get(network_g.pop('type'))
    assert build(**network_g, scale=3).upscale == 3  # traiNNer-redux: build_network({**network_g, 'scale': ...})
    assert build(**network_g).upscale == 2  # the presets' default scale stays 2
    with pytest.raises(ValueError, match='disagree'):
        build(**network_g, upscale=2, scale=4)


def test_preset_config_takes_scale():
    assert preset_config('small', scale=3) == preset_config('small', 3)
    with pytest.raises(ValueError, match='needs upscale'):
        preset_config('small')


def test_option_check_names_the_keys():
    with pytest.raises(OptionError, match='network_g.scale: 4 differs from network_g.upscale: 2'):
        check_lipt_options({'network_g': {'type': 'LIPT', 'upscale': 2, 'scale': 4}})
    with pytest.raises(OptionError, match='scale: 2 differs from network_g.scale: 4'):
        check_lipt_options({'scale': 2, 'network_g': {'type': 'LIPT_small', 'scale': 4}})
    with pytest.raises(OptionError, match='network_g.scale: must be one of'):
        check_lipt_options({'network_g': {'type': 'LIPT', 'scale': 8}})
    check_lipt_options({'scale': 4, 'network_g': {'type': 'LIPT_small', 'scale': 4}})
