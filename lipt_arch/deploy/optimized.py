"""A LIPT in its fastest inference form for a device and precision: :func:`optimize`.

- fp32, bf16, fp16: the fused network (reparameterized if given in training form) in PyTorch, weights cast to the
  precision, channels-last convs; optionally ``torch.compile`` with Inductor freezing (weights become constants,
  oneDNN prepacks them and fuses conv + ReLU / add).
- int8 (CPU): the fused network, its channel ranges equalized (:mod:`lipt_arch.deploy.equalize`), exported to ONNX and
  quantized statically with ONNX Runtime: every 3x3 (and 1x1) conv of the body in int8 with per-channel weight
  scales and per-tensor activation scales calibrated on LR crops of real images (:func:`calibration_inputs`); head
  and tail convs, attention and the residual stream with its adds stay fp32 (:func:`quantize_int8`). Chosen
  over torch.ao PT2E + Inductor and OpenVINO + NNCF by measurement (docs/inference.md): as fast or faster on an
  AVX2 CPU, no compilation wait, any image size, no new dependency, and the same file is what ``lipt export
  --dtype int8`` writes.
"""
from __future__ import annotations

import contextlib
import copy
import os
import random
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..archs import reparameterize
from ..archs.hrm import has_cpp_compiler
from ..archs.lipt_arch import memory_format_of
from ..image_io import write_bytes
from ..validation import PRECISIONS
from .inference import resolve_device, resolve_dtype

CALIBRATION_CROPS = 32  # LR crops used to calibrate the activation scales
CALIBRATION_CROP_SIZE = 64  # LR pixels (a multiple of both window sizes)
CALIBRATION_PERCENTILE = 99.99  # activation ranges: this percentile of |x| (min/max loses 0.1 dB more at x2)

Calibration = str | os.PathLike | Sequence[Tensor]


class OptimizedLIPT(nn.Module):
    """A LIPT in an inference form: (B, C_in, H, W) float in [0, 1], any H and W, on any device ->
    (B, C_out, H * upscale, W * upscale) float32 on the input's device and in its memory format (not clamped).
    Inference only (no gradients). Built by :func:`optimize`; ``precision`` says which form (fp32, bf16, fp16,
    int8), ``device`` where it computes. The int8 form runs in ONNX Runtime; :meth:`save_onnx` writes it."""

    def __init__(self, config: dict[str, Any], precision: str, device: torch.device, dtype: torch.dtype,
                 net: nn.Module | None = None, onnx_model: bytes | None = None, compiled: bool = False) -> None:
        super().__init__()
        self.config, self.precision, self.device, self.dtype = dict(config), precision, device, dtype
        self.upscale, self.window_size, self.compiled = config['upscale'], config['window_size'], compiled
        self.net = net
        self.onnx_model = onnx_model
        self._session = _ort_session(onnx_model) if onnx_model is not None else None

    def forward(self, x: Tensor) -> Tensor:
        channels = self.config['num_in_ch']
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f'LIPT expects a (B, {channels}, H, W) tensor, got {tuple(x.shape)}')
        if self._session is not None:
            out = self._session.run(None, {'image': x.detach().float().cpu().numpy()})[0]
            return torch.from_numpy(out).to(x.device)
        x_in = x.to(self.device, self.dtype)
        if not self.compiled:
            with torch.no_grad():
                return self.net(x_in).float().to(x.device)
        with torch.no_grad(), inductor_freezing():  # the attention indices as graph inputs: LIPT.window_indices
            out = self.net(x_in, self.net.window_indices(x_in)).float().to(x.device)
        return out.contiguous(memory_format=memory_format_of(x))  # Inductor picks its own output strides

    def save_onnx(self, path: str | os.PathLike) -> None:
        """Write the int8 form's ONNX model (QDQ: QuantizeLinear / DequantizeLinear around int8 convs) atomically
        (:func:`lipt_arch.image_io.write_bytes`): a failed write keeps an existing file and leaves no partial one."""
        if self.onnx_model is None:
            raise ValueError(f'only the int8 form is an ONNX model; this one is {self.precision}')
        write_bytes(path, self.onnx_model)

    def extra_repr(self) -> str:
        runtime = 'onnxruntime' if self._session is not None else 'torch' + (' compiled' if self.compiled else '')
        return f'{self.precision}, {self.device}, {runtime}, x{self.upscale}'

    def __getstate__(self) -> dict[str, Any]:  # an InferenceSession cannot be pickled (deepcopy, save)
        state = self.__dict__.copy()
        state['_session'] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.onnx_model is not None:
            self._session = _ort_session(self.onnx_model)


def optimize(model: nn.Module, dtype: str = 'fp32', device: str | torch.device = 'cpu', compile: bool = False,
             calibration: Calibration | None = None) -> OptimizedLIPT:
    """``model`` (a LIPT, fused or training form; left untouched) in its fastest form for ``device`` and ``dtype``.

    Args:
        model: a :class:`~lipt_arch.LIPT` (training form is fused first, :func:`~lipt_arch.reparameterize`).
        dtype: 'fp32', 'bf16', 'fp16' (on CPU: fp32 with a warning, as ``lipt infer``) or 'int8' (CPU only).
        device: 'cpu', 'cuda[:i]' or 'auto'.
        compile: ``torch.compile`` with Inductor freezing (fp32 / bf16 / fp16; the first call of each image size
            compiles, tens of seconds on a CPU, which needs a C++ compiler).
        calibration: int8 only, and needed there: a folder of training images (HR; LR crops are made by bicubic
            downsampling, :func:`calibration_inputs`) or a sequence of (1, C_in, h, w) LR tensors in [0, 1]. Never
            calibrate on the test set you report.

    Returns an :class:`OptimizedLIPT`. Raises ValueError (one line) for an unknown dtype, int8 off the CPU, int8
    without calibration, calibration without int8 or compile with int8.
    """
    if dtype not in PRECISIONS:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(PRECISIONS)}")
    config = getattr(model, 'config', None)
    if not isinstance(config, dict) or 'deploy' not in config:
        raise ValueError(f'optimize() takes a LIPT, got {type(model).__name__}')
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    fused = reparameterize(model) if not config['deploy'] else copy.deepcopy(model).eval()
    fused = fused.float().cpu()
    if dtype == 'int8':
        if target.type != 'cpu':
            raise ValueError(f'int8 runs on the CPU (ONNX Runtime); got device {target} (use --device cpu, or bf16 / '
                             'fp16 on a GPU)')
        if compile:
            raise ValueError('compile applies to the PyTorch forms (fp32, bf16, fp16); the int8 form runs in ONNX '
                             'Runtime, which optimizes its graph itself')
        if calibration is None:
            raise ValueError('int8 needs calibration images: a folder of training images (e.g. the training set '
                             'the model was trained on; never a test set)')
        inputs = calibration_inputs(calibration, fused.config) if _is_path(calibration) else list(calibration)
        return OptimizedLIPT(fused.config, 'int8', target, torch.float32, onnx_model=quantize_int8(fused, inputs))
    if calibration is not None:
        raise ValueError(f'calibration images are for int8 only; dtype is {dtype}')
    compute = resolve_dtype(dtype, target)
    if compute == torch.bfloat16 and target.type == 'cpu' and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn('this CPU has no fast bf16 (no AVX-512 / AMX): bf16 is emulated here and slower than fp32',
                      stacklevel=2)
    net = fused.to(target, compute).to(memory_format=torch.channels_last).eval()
    if compile:
        _check_compiler(target)
        net = torch.compile(net)  # frozen when called: OptimizedLIPT.forward, inductor_freezing
    return OptimizedLIPT(fused.config, dtype if compute != torch.float32 else 'fp32', target, compute, net=net,
                         compiled=compile)


def inductor_freezing() -> contextlib.AbstractContextManager:
    """Inductor freezing for the calls of a compiled network (any ``torch.compile``-d module): weights become constants,
    oneDNN prepacks them and fuses bias, ReLU and residual adds into the convs. Dynamo decides whether parameters are
    graph inputs when it traces (each new image size may retrace), from the global Inductor config, so the setting must
    be active during the call itself: ``torch.compile(net, options={'freezing': True})`` alone leaves the weights as
    inputs and nothing is frozen (torch 2.14)."""
    return torch._inductor.config.patch(freezing=True)


def _is_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike))


def _check_compiler(device: torch.device) -> None:
    if device.type == 'cpu' and not has_cpp_compiler():
        raise ValueError('compile on a CPU needs a C++ compiler (g++, c++ or clang++) on PATH')


# ------------------------------------------------------------------------------------------------------ int8
def calibration_inputs(folder: str | os.PathLike, config: dict[str, Any], count: int = CALIBRATION_CROPS,
                       size: int = CALIBRATION_CROP_SIZE, seed: int = 0) -> list[Tensor]:
    """``count`` LR crops (1, C_in, h, w) in [0, 1] from the images of ``folder``, all of one size: random
    ``size * upscale`` HR crops (seeded) taken in turn from the images at least that large (when none is, crops of
    the smallest height and width among the images, modcropped to the scale), bicubic-downsampled (MATLAB-style,
    8-bit rounded) as the model's training LR was, so h = w = ``size`` unless every image is smaller. 1-channel
    models get the luma (BT.601). One size because the percentile calibration pools same-shaped activations."""
    from ..data.sr_pairs import bicubic_downsample, list_images, read_rgb_uint8

    scale, channels = config['upscale'], config['num_in_ch']
    if channels not in (1, 3):
        raise ValueError(f'calibration from image files needs a 1- or 3-channel model, not {channels} channels')
    try:
        images = [read_rgb_uint8(p) for p in list_images(folder)]
    except (FileNotFoundError, OSError) as err:
        raise ValueError(f'calibration: {err}') from None
    large = [img for img in images if min(img.shape[:2]) >= size * scale]
    images = large or images
    crop_h, crop_w = (min(min(img.shape[axis] for img in images), size * scale) // scale * scale for axis in (0, 1))
    if min(crop_h, crop_w) == 0:
        raise ValueError(f'calibration: an image in {folder} is smaller than the scale {scale}')
    rng = random.Random(seed)
    crops = []
    for i in range(count):
        img = images[i % len(images)]
        top, left = rng.randrange(img.shape[0] - crop_h + 1), rng.randrange(img.shape[1] - crop_w + 1)
        hr = img[top:top + crop_h, left:left + crop_w].astype(np.float32) / 255.0
        lr = bicubic_downsample(hr, scale) if scale > 1 else hr
        if channels == 1:
            lr = lr @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)
        crops.append(torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None])
    return crops


def quantize_int8(fused: nn.Module, calibration: Sequence[Tensor], equalize: bool = True,
                  float_residual: bool = True) -> bytes:
    """The fused LIPT as an int8 ONNX model (QDQ format, bytes), calibrated on ``calibration`` (LR tensors in [0, 1]).

    Convs of the body: int8 weights (per output channel, symmetric, 7-bit range) and uint8 activations (per tensor,
    range: the ``CALIBRATION_PERCENTILE`` percentile of the magnitudes over the calibration inputs, which are cut to
    their common smallest height and width first); the head and tail convs, the attention and everything else
    stay fp32.
    The 7-bit weight range (``reduce_range``) keeps the u8 x s8 pair products of CPUs without VNNI (AVX2, plain
    AVX-512: ``vpmaddubsw``) from saturating 16 bits; measured on AVX2 it loses less PSNR than the full range.

    ``equalize``: first rescale the residual stream's and each HRM's inner channels to equal ranges on the
    calibration inputs (:func:`lipt_arch.deploy.equalize.equalize`, exact in float). ``float_residual``: the residual
    stream stays float32 (the adds read the float tensors; only the convs' inputs are quantized) instead of being
    re-rounded to uint8 after every add (ONNX Runtime's ``QLinearAdd``). Shipped LIPT-Tiny x4, Set5: -0.24 dB
    without both, -0.02 dB with both (docs/precision.md); the float adds cost 5-15 % of the int8 speed.
    """
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise ValueError(f'int8 needs onnx and onnxruntime (pip install onnx onnxscript onnxruntime): {err}') from None
    from .equalize import equalize as equalized
    from .export import export_onnx

    if not calibration:
        raise ValueError('calibration: no calibration inputs')
    if equalize:
        fused = equalized(fused, calibration)

    height, width = (min(t.shape[axis] for t in calibration) for axis in (2, 3))
    calibration = [t[:, :, :height, :width].detach().float().cpu() for t in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{'image': t.numpy()} for t in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / name for name in ('fp32.onnx', 'prepared.onnx', 'int8.onnx'))
        export_onnx(fused, fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == 'Conv']
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=['Conv', 'Relu'], nodes_to_exclude=[convs[0], convs[-1]],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        calibrate_method=CalibrationMethod.Percentile,
                        extra_options={'CalibPercentile': CALIBRATION_PERCENTILE})
        if not float_residual:
            return int8.read_bytes()
        quantized = onnx.load(str(int8))
        float_activation_consumers(quantized.graph)
        return quantized.SerializeToString()


def float_activation_consumers(graph: Any) -> int:
    """Rewire a QDQ ONNX graph (in place) so that every op other than a conv reads a quantized activation's float
    value, not its QuantizeLinear -> DequantizeLinear rounding; returns how many inputs were rewired.

    Kept as they are: weights (initializers) and the outputs of int8 convs (Conv fed by a DequantizeLinear weight;
    ONNX Runtime fuses DequantizeLinear -> Conv -> QuantizeLinear into one ``QLinearConv``, whose output is
    uint8). In a LIPT this keeps the residual stream float32: each add reads the float stream plus the dequantized
    branch output, and only the copy that enters the next conv is rounded.
    """
    producer = {name: node for node in graph.node for name in node.output}
    initializers = {tensor.name for tensor in graph.initializer}

    def int8_conv(node: Any) -> bool:
        weight = producer.get(node.input[1]) if len(node.input) > 1 else None
        return node.op_type == 'Conv' and weight is not None and weight.op_type == 'DequantizeLinear'

    rounded = {}  # DequantizeLinear output -> the float tensor it rounds
    for node in graph.node:
        quantize = producer.get(node.input[0]) if node.op_type == 'DequantizeLinear' else None
        if quantize is None or quantize.op_type != 'QuantizeLinear' or quantize.input[0] in initializers:
            continue
        source = producer.get(quantize.input[0])
        if source is None or not int8_conv(source):
            rounded[node.output[0]] = quantize.input[0]
    rewired = 0
    for node in graph.node:
        if node.op_type == 'Conv':
            continue
        for i, name in enumerate(node.input):
            if name in rounded:
                node.input[i] = rounded[name]
                rewired += 1
    return rewired


def _ort_session(model: bytes) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])
