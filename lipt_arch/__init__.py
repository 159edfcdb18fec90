"""lipt_arch: LIPT (Latency-aware Image Processing Transformer) as a BasicSR plugin.

``import lipt_arch`` makes basicsr 1.4.2 importable on today's torchvision, fixes what it gets wrong on today's
stack (:mod:`lipt_arch.basicsr_support`) and registers the LIPT arch, model and datasets in BasicSR's registries.
"""
from lipt_arch.basicsr_support import compat

compat.install()

from lipt_arch import archs, data, metrics, models  # noqa: E402  (needs the compat shim first)
from lipt_arch.basicsr_support import fixes  # noqa: E402

fixes.apply()
from lipt_arch.archs import LIPT, PRESETS, preset_config, reparameterize  # noqa: E402
from lipt_arch.checkpoints import CheckpointError, load_model, load_official, save_model  # noqa: E402
from lipt_arch.deploy import OptimizedLIPT, optimize  # noqa: E402

__version__ = '0.1.0'
__all__ = ['LIPT', 'PRESETS', 'CheckpointError', 'OptimizedLIPT', 'archs', 'data', 'load_model', 'load_official',
           'metrics', 'models', 'optimize', 'preset_config', 'reparameterize', 'save_model']
