"""Registers every `*_model.py` in this folder with BasicSR on import."""
from lipt_arch.basicsr_support.registration import import_modules

_modules = import_modules(__name__, __file__, '_model.py')
