"""ONNX export of a fused LIPT with dynamic batch, height and width.

The network sizes its padding and attention indices with tensor ops (``reflect_pad``, ``token_index``), so the
exported graph keeps batch, height and width symbolic; the sparse mask is a gather (no boolean indexing).
"""
from __future__ import annotations

import copy
import math
import os

import torch

from ..archs import LIPT, reparameterize
from ..image_io import atomic_write


def export_onnx(model: LIPT, path: str | os.PathLike, opset: int = 18, sample_size: tuple[int, int] = (37, 45)
                ) -> None:
    """Write ``model`` (fused first if needed) to ONNX at ``path``: input ``image`` (B, C_in, H, W) float32 in
    [0, 1], output ``output`` (B, C_out, H * scale, W * scale); B, H and W dynamic. Written atomically
    (:func:`lipt_arch.image_io.atomic_write`): a failed write keeps an existing file and leaves no partial one."""
    net = copy.deepcopy(model).float().cpu()
    net = (net if net.config.get('deploy') else reparameterize(net)).eval()
    sample = torch.rand(2, model.config['num_in_ch'], *sample_size)  # sizes of 1 would be specialised
    dynamic = {'x': {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    with torch.no_grad():
        program = torch.onnx.export(net, (sample,), dynamo=True, dynamic_shapes=dynamic, opset_version=opset,
                                    input_names=['image'], output_names=['output'], external_data=False,
                                    verbose=False)
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))


def check_onnx(model: LIPT, path: str | os.PathLike, sizes: tuple[tuple[int, int], ...] = ((19, 27), (40, 33)),
               seed: int = 0) -> float | None:
    """Max abs difference between ``model`` (float32, CPU) and the ONNX file under onnxruntime on random [0, 1]
    inputs of ``sizes``; None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    runtime = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    name = runtime.get_inputs()[0].name
    net = copy.deepcopy(model).float().cpu().eval()
    gen = torch.Generator().manual_seed(seed)
    error = 0.0
    for size in sizes:
        x = torch.rand(1, model.config['num_in_ch'], *size, generator=gen)
        with torch.no_grad():
            expected = net(x)
        got = torch.from_numpy(runtime.run(None, {name: x.numpy()})[0])
        error = max(error, (got - expected).abs().max().item())
    return error


def onnx_psnr(model: LIPT, path: str | os.PathLike, inputs: list[torch.Tensor]) -> float:
    """Lowest PSNR (dB, peak 1, outputs clamped to [0, 1]) of the ONNX file under onnxruntime against ``model``
    (float32, CPU) over ``inputs`` ((1, C_in, h, w) in [0, 1]): the check for a quantized export, whose error is
    not ~1e-5. Needs onnxruntime."""
    import onnxruntime

    runtime = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    name = runtime.get_inputs()[0].name
    net = copy.deepcopy(model).float().cpu().eval()
    lowest = math.inf
    for x in inputs:
        with torch.no_grad():
            expected = net(x).clamp(0, 1)
        got = torch.from_numpy(runtime.run(None, {name: x.numpy()})[0]).clamp(0, 1)
        mse = (got - expected).square().mean().item()
        lowest = min(lowest, math.inf if mse == 0 else -10 * math.log10(mse))
    return lowest
