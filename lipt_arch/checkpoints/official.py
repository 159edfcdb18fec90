"""Load checkpoints written by the authors' reference LIPT code into :class:`~lipt_arch.archs.LIPT`.

Both the training-time (multi-branch) form and the form after the authors' ``convert.py`` (``dbb_reparam``) load.
Width, depth, sharing, expansion and colours are read off the tensors; the scale is checked against the tail.
"""
from __future__ import annotations

import re

from torch import Tensor, nn

from lipt_arch.archs.lipt_arch import LIPT, RGB_MEAN
from lipt_arch.archs.nvsm_attention import NVSMAttention
from lipt_arch.errors import CheckpointError

from .files import PathOrState, as_state_dict, check_shapes, check_tensors, load_weights
from .lipt_format import matching_window, tail_scale

_HRM_KEY = re.compile(r'^body\.(\d+)\.modules_hrm_([acb])\.lcs_\2_(\d+)\.(conv[01])\.(.+)$')
_ATTN_KEY = re.compile(r'^body\.(\d+)\.modules_nvsm_sa\.smmsa_(\d+)\.(project_inp\.[01]|project_out)\.(.+)$')
_FLAT = {'head.0.': 'head.', 'tail.0.': 'tail.'}
_ATTN_PARTS = {'project_inp.0': 'proj_in', 'project_inp.1': 'proj_bn', 'project_out': 'proj_out'}
# Reference DiverseBranchBlock entries -> RepConv3x3 entries (a trailing '.' maps a whole sub-module).
_DBB_PARTS = {
    'dbb_origin.conv.weight': 'conv3x3.weight', 'dbb_origin.bn.': 'bn3x3.',
    'dbb_1x1.conv.weight': 'conv1x1.weight', 'dbb_1x1.bn.': 'bn1x1.',
    'dbb_avg.conv.weight': 'avg_conv.weight', 'dbb_avg.bn.bn.': 'avg_bn.', 'dbb_avg.avgbn.': 'avg_bn_out.',
    'dbb_1x1_kxk.idconv1.weight': 'seq_delta', 'dbb_1x1_kxk.bn1.bn.': 'seq_bn.',
    'dbb_1x1_kxk.conv2.weight': 'seq_conv.weight', 'dbb_1x1_kxk.bn2.': 'seq_bn_out.',
    'dbb_sobelx.k0': 'sobel_x_conv.weight', 'dbb_sobelx.scale': 'sobel_x_scale', 'dbb_sobelx.bias': 'sobel_x_bias',
    'dbb_sobely.k0': 'sobel_y_conv.weight', 'dbb_sobely.scale': 'sobel_y_scale', 'dbb_sobely.bias': 'sobel_y_bias',
    'dbb_reparam.': '',
}
# Constant in the reference (the Sobel 1x1 bias cancels; masks and mean shift are fixed), not stored by us.
_DROPPED = re.compile(r'(^(sub|add)_mean\.|\.dbb_sobel[xy]\.(b0|mask)$)')


def _translate(key: str) -> str | None:
    """Our key for a reference key; None for reference constants we do not store."""
    if _DROPPED.search(key):
        return None
    for old, new in _FLAT.items():
        if key.startswith(old):
            return new + key[len(old):]
    if m := _HRM_KEY.match(key):
        block, which, layer, conv, rest = m.groups()
        for old, new in _DBB_PARTS.items():
            if rest == old or (old.endswith('.') and rest.startswith(old)):
                return f'body.{block}.layers.{layer}.hrm_{which}.{conv}.{new}{rest[len(old):]}'
    if m := _ATTN_KEY.match(key):
        block, layer, part, rest = m.groups()
        return f'body.{block}.layers.{layer}.attn.{_ATTN_PARTS[part]}.{rest}'
    raise CheckpointError(f'unexpected key {key!r}: this is not a LIPT checkpoint of the reference code')


def infer_config(state: dict[str, Tensor], upscale: int | None = None, window_size: int | None = None) -> dict:
    """LIPT constructor keywords for a reference state dict (``img_range`` 255, as the reference trains).

    The scale is read off the tail (checked against ``upscale`` when given); ``window_size`` leaves no trace in the
    weights and defaults to the window of the preset the weights match, else 8.
    """
    if 'head.0.weight' not in state or 'tail.0.weight' not in state:
        raise CheckpointError('not a LIPT checkpoint of the reference code: no head.0.weight / tail.0.weight')
    num_feat, num_in_ch = state['head.0.weight'].shape[:2]
    blocks = {int(m.group(1)) for k in state if (m := _ATTN_KEY.match(k))}
    layers = {int(m.group(2)) for k in state if (m := _ATTN_KEY.match(k)) and m.group(1) == '0'}
    if not blocks or blocks != set(range(len(blocks))) or layers != set(range(len(layers))):
        raise CheckpointError('not a LIPT checkpoint of the reference code: no consistent body.<i>.modules_nvsm_sa')
    conv0 = next((v for k, v in state.items() if k.startswith('body.0.modules_hrm_a.lcs_a_0.conv0.')
                  and k.endswith(('dbb_origin.conv.weight', 'dbb_reparam.weight'))), None)
    if conv0 is None:
        raise CheckpointError('not a LIPT checkpoint of the reference code: no body.0.modules_hrm_a.lcs_a_0.conv0 '
                              'weights')
    scale = tail_scale(int(state['tail.0.weight'].shape[0]), int(num_in_ch), upscale)
    rgb_mean = RGB_MEAN
    if 'sub_mean.bias' in state and num_in_ch == 3:
        rgb_mean = tuple(round(float(v), 6) for v in (-state["sub_mean.bias"].double() / 255.0))
    config = dict(upscale=scale, num_in_ch=int(num_in_ch), num_out_ch=int(num_in_ch), num_feat=int(num_feat),
                  num_block=len(blocks), shared_depth=len(layers) - 1, exp_ratio=int(conv0.shape[0] // num_feat),
                  img_range=255.0, rgb_mean=rgb_mean, deploy=any('.dbb_reparam.' in k for k in state))
    config['window_size'] = window_size or matching_window(config)
    return config


def load_official(checkpoint: PathOrState, upscale: int | None = None, window_size: int | None = 8) -> LIPT:
    """A LIPT (eval mode, ``img_range=255``) with the weights of a reference-code checkpoint.

    ``checkpoint`` is a path or a state dict, in training form or after the reference ``convert.py``, with or
    without a ``module.`` prefix or a ``model_state_dict`` wrapper. ``upscale`` is checked against the tail (read
    off it when None); ``window_size`` None takes the matching preset's window. The reference's converted form keeps
    each attention projection's BatchNorm; it is folded here, so a converted checkpoint gives a fully fused model.
    """
    state, source = as_state_dict(checkpoint)
    return official_model(state, source, upscale, window_size)


def official_model(state: dict[str, Tensor], source: str, upscale: int | None = None,
                   window_size: int | None = 8) -> LIPT:
    """:func:`load_official` of a state dict already read from ``source`` (named in the errors)."""
    check_tensors(source, state)  # the gate (check_weights), in two steps: the file's key names, then ours
    try:
        config = infer_config(state, upscale, window_size)
        ours = {new: value for key, value in state.items() if (new := _translate(key)) is not None}
    except CheckpointError as err:
        raise CheckpointError(f'{source}: {err}') from None
    target = f'the LIPT inferred from it ({config})'
    check_shapes(source, ours, config, target, attention_bn=config['deploy'])  # before LIPT(**config)
    model = LIPT(**config)
    attention = [m for m in model.modules() if isinstance(m, NVSMAttention)]
    if config['deploy']:  # the reference's converted form still has the projection BN: load it, then fold it
        for module in attention:
            module.proj_bn = nn.BatchNorm2d(module.proj_in.out_channels)
    load_weights(model, ours, source, target)
    if config['deploy']:
        for module in attention:
            module.fold_bn()
    return model.eval()
