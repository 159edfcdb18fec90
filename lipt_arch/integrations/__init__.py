"""Glue for libraries that load or train LIPT outside BasicSR (imported on demand, never by ``import lipt_arch``):

- :mod:`lipt_arch.integrations.spandrel`: LIPT in spandrel's architecture registry (chaiNNer, ComfyUI, scripts).
"""
