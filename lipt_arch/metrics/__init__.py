"""Metrics registered in BasicSR's ``METRIC_REGISTRY`` on ``import lipt_arch``."""
from lipt_arch.metrics.psnrb import blocking_effect_factor, calculate_psnrb

__all__ = ['blocking_effect_factor', 'calculate_psnrb']
