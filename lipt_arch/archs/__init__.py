"""LIPT network parts. Importing this package registers every ``*_arch.py`` (and the presets) with BasicSR."""
from lipt_arch.basicsr_support.registration import import_modules

from .hrm import HRM, RepConv3x3, compile_rep_convs
from .lipt_arch import LIPT, zero_init_residual_
from .nvsm_attention import NVSMAttention
from .presets import PRESETS, preset_config
from .reparameterize import is_fusable, reparameterize

_modules = import_modules(__name__, __file__, '_arch.py')

__all__ = ['HRM', 'LIPT', 'NVSMAttention', 'PRESETS', 'RepConv3x3', 'compile_rep_convs', 'is_fusable',
           'preset_config', 'reparameterize', 'zero_init_residual_']
