"""Checkpoints, one concept in four modules:

- :mod:`.files`: safe reading (weights-only / safetensors), the loading gate every loader runs before it builds a
  network (``check_weights``: archive integrity, floating point, finite, config against tensor shapes), atomic
  writing, the state dict inside wrappers (``params_ema`` / ``params`` / ``module.``), loading a state dict with
  one-line errors.
- :mod:`.lipt_format`: our format (``save_model`` / ``load_model``: weights + constructor keywords) and config
  inference for state dicts with our key names (BasicSR training checkpoints).
- :mod:`.official`: the authors' reference-code format (``load_official``).
- :mod:`.dispatch`: ``load_any``, which opens any of them and fuses (used by the ``lipt`` command).
"""
from lipt_arch.errors import CheckpointError

from .dispatch import KINDS, LoadedModel, count_parameters, load_any
from .files import (
    atomic_save,
    check_distinct,
    check_weights,
    checkpoint_format,
    load_weights,
    read_checkpoint,
    unwrap_state_dict,
    verify_archive,
)
from .lipt_format import infer_lipt_config, load_model, matching_preset, matching_window, save_model
from .official import load_official

__all__ = ['KINDS', 'CheckpointError', 'LoadedModel', 'atomic_save', 'check_distinct', 'check_weights',
           'checkpoint_format', 'count_parameters', 'infer_lipt_config', 'load_any', 'load_model', 'load_official',
           'load_weights', 'matching_preset', 'matching_window', 'read_checkpoint', 'save_model', 'unwrap_state_dict',
           'verify_archive']
