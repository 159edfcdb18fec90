"""Deployment: a LIPT made ready for inference and run on whole images.

- :mod:`.optimized`: :func:`optimize` / :class:`OptimizedLIPT`, the fastest form per device and precision (fp32,
  bf16, fp16 in PyTorch, optionally compiled; int8 through ONNX Runtime).
- :mod:`.equalize`: cross-layer channel equalization of a fused LIPT (exact in float; prepares int8).
- :mod:`.export`: ONNX export with dynamic batch, height and width.
- :mod:`.inference`: overlapping-tile inference, device / precision choice, OpenCV arrays in and out.
"""
from .inference import resolve_device, resolve_dtype, tiled_forward, upscale_array
from .optimized import OptimizedLIPT, optimize

__all__ = ['OptimizedLIPT', 'optimize', 'resolve_device', 'resolve_dtype', 'tiled_forward', 'upscale_array']
