"""LIPT support for spandrel (https://github.com/chaiNNer-org/spandrel), the loader behind chaiNNer and ComfyUI.

One line, once, before loading::

    import lipt_arch.integrations.spandrel as lipt_spandrel; lipt_spandrel.install()

after which ``spandrel.ModelLoader().load_from_file(path)`` opens every LIPT checkpoint ``lipt_arch`` opens (our
fused ``.pth`` / ``.safetensors``, BasicSR ``net_g_<iter>.pth`` training checkpoints, the authors' checkpoints in
training or converted form) as an ``ImageModelDescriptor`` holding the fused network. ``import lipt_arch`` does not
install it by itself (importing spandrel costs seconds, and importing one package should not change another's
behaviour unasked).

spandrel hands an architecture the bare tensors: it drops a ``.pth``'s ``config`` entry and a ``.safetensors``'s
metadata, which hold the options the tensors cannot show (``window_size``, ``img_range``, ``rgb_mean``,
``img_residual``), and its restricted unpickler refuses the authors' training checkpoints (their scheduler state
holds a ``collections.Counter``). So :func:`install` also wraps two public methods of ``spandrel.ModelLoader``,
acting only on LIPT checkpoints: ``load_state_dict_from_file`` re-reads a LIPT file (or one spandrel refused) with
lipt_arch's weights-only reader and keeps its config with the tensors; ``load_from_state_dict`` keeps the config of a
``{'params', 'config'}`` dict. A bare state dict (no config anywhere) loads with the options read off the tensors and
defaults for the rest, and a warning names what was assumed. LIPT files pass lipt_arch's loading gate
(:func:`lipt_arch.checkpoints.check_weights`: archive CRCs, a consistent safetensors header, finite floating-point
tensors, a config that fits them) and fail with one ``CheckpointError`` line naming the file.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from spandrel import (
    MAIN_REGISTRY,
    Architecture,
    ArchRegistry,
    ArchSupport,
    ImageModelDescriptor,
    ModelLoader,
    ModelTiling,
    SizeRequirements,
    StateDict,
    canonicalize_state_dict,
)

from lipt_arch.archs import LIPT
from lipt_arch.checkpoints import CheckpointError, load_any, matching_preset, read_checkpoint, verify_archive

ARCH_ID = 'LIPT'
# Key sets that only LIPT state dicts have: ours (fused or training form) and the authors' (training or converted).
OUR_KEYS = ('head.weight', 'tail.weight', 'body.0.layers.0.attn.proj_in.weight')
OUR_HRM_KEYS = ('body.0.layers.0.hrm_a.conv0.weight', 'body.0.layers.0.hrm_a.conv0.conv3x3.weight')
AUTHORS_KEYS = ('head.0.weight', 'tail.0.weight', 'body.0.modules_nvsm_sa.smmsa_0.project_inp.0.weight')
AUTHORS_HRM_KEYS = ('body.0.modules_hrm_a.lcs_a_0.conv0.dbb_origin.conv.weight',
                    'body.0.modules_hrm_a.lcs_a_0.conv0.dbb_reparam.weight')
# fp16 / bf16: measured against fp32 on CPU (tests/test_spandrel.py; docs/spandrel.md has the numbers).
SUPPORTS_HALF = True
SUPPORTS_BFLOAT16 = True


class LIPTStateDict(dict):
    """A state dict that carries the LIPT constructor options of the file it came from (``lipt_config``) and that
    file's path (``lipt_source``, named in errors)."""

    lipt_config: dict[str, Any]
    lipt_source: str


def is_lipt_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` (a canonical state dict: no wrapper, no ``module.`` prefix) is a LIPT network's."""
    return any(all(key in state for key in keys) and any(key in state for key in hrm)
               for keys, hrm in ((OUR_KEYS, OUR_HRM_KEYS), (AUTHORS_KEYS, AUTHORS_HRM_KEYS)))


class LIPTArch(Architecture[LIPT]):
    """spandrel architecture ``LIPT``: detects LIPT state dicts and loads them fused (deploy form)."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name='LIPT', detect=is_lipt_state_dict)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[LIPT]:
        """The fused LIPT of ``state_dict`` (eval mode, CPU) with spandrel's metadata; raises ``CheckpointError``
        with one line when the tensors do not form a LIPT or fail lipt_arch's loading gate (non-finite or
        non-float tensors, a config that does not fit them)."""
        config = getattr(state_dict, 'lipt_config', None)
        loaded = load_any({'params': dict(state_dict), 'config': config} if config else dict(state_dict),
                          source=getattr(state_dict, 'lipt_source', None))
        model, options = loaded.model, loaded.config
        if loaded.assumed:
            warnings.warn(f"LIPT: {', '.join(loaded.assumed)} assumed (not recorded in this state dict); to set it, "
                          'write a fused checkpoint that records it (lipt convert IN OUT.safetensors --window-size N, '
                          'or lipt_arch.save_model) and load that', stacklevel=2)
        preset = matching_preset(options)
        tags = [f'{options["num_feat"]}nf', f'{options["num_block"]}nb', f'w{options["window_size"]}']
        return ImageModelDescriptor(
            model, model.state_dict(), architecture=self,
            purpose='SR' if options['upscale'] > 1 else 'Restoration',
            tags=([preset] if preset else []) + tags,
            supports_half=SUPPORTS_HALF, supports_bfloat16=SUPPORTS_BFLOAT16,
            scale=options['upscale'], input_channels=options['num_in_ch'], output_channels=options['num_out_ch'],
            size_requirements=SizeRequirements(),  # any H, W >= 1: LIPT mirror-pads to its window internally
            tiling=ModelTiling.SUPPORTED,  # window attention: tiles with some overlap equal the whole image inside
        )


def with_config(checkpoint: Any, source: str | os.PathLike | None = None) -> LIPTStateDict | None:
    """The canonical LIPT state dict of a loaded checkpoint (any wrapper), with the ``config`` of a fused
    ``{'params', 'config'}`` checkpoint and the file's path ``source`` attached; None when it is not a LIPT
    checkpoint."""
    if not isinstance(checkpoint, Mapping):
        return None
    state = canonicalize_state_dict(dict(checkpoint))
    if not isinstance(state, Mapping) or not is_lipt_state_dict(state):
        return None
    out = LIPTStateDict(state)
    if source is not None:
        out.lipt_source = os.fspath(source)
    config = checkpoint.get('config')
    if isinstance(config, Mapping):
        out.lipt_config = dict(config)
    return out


def _wrap_load_state_dict_from_file(original: Callable[..., StateDict]) -> Callable[..., StateDict]:
    def load_state_dict_from_file(self: ModelLoader, path: str | os.PathLike) -> StateDict:
        try:
            state = original(self, path)
        except Exception as refused:
            if os.path.isfile(path):
                verify_archive(path)  # a damaged zip or safetensors file: one CheckpointError saying what is wrong
            if not isinstance(refused, (pickle.UnpicklingError, RuntimeError)):  # a .pt goes through torch.jit first
                raise
            try:
                lipt = with_config(read_checkpoint(path), path)
            except CheckpointError:
                lipt = None
            if lipt is None:
                raise refused from None
            return lipt
        if not is_lipt_state_dict(state):
            return state
        return with_config(read_checkpoint(path), path) or state  # read_checkpoint verifies the file's integrity

    load_state_dict_from_file.lipt_wrapped = True  # type: ignore[attr-defined]
    return load_state_dict_from_file


def _wrap_load_from_state_dict(original: Callable[..., Any]) -> Callable[..., Any]:
    def load_from_state_dict(self: ModelLoader, state_dict: StateDict) -> Any:
        if not isinstance(state_dict, LIPTStateDict) and isinstance(state_dict.get('config'), Mapping):
            state_dict = with_config(state_dict) or state_dict
        return original(self, state_dict)

    load_from_state_dict.lipt_wrapped = True  # type: ignore[attr-defined]
    return load_from_state_dict


def install(registry: ArchRegistry = MAIN_REGISTRY) -> None:
    """Add LIPT to ``registry`` (spandrel's main registry by default) and let ``spandrel.ModelLoader`` keep LIPT
    files' configs and read the authors' training checkpoints. Idempotent."""
    registry.add(ArchSupport.from_architecture(LIPTArch()), ignore_duplicates=True)
    if not getattr(ModelLoader.load_state_dict_from_file, 'lipt_wrapped', False):
        ModelLoader.load_state_dict_from_file = _wrap_load_state_dict_from_file(ModelLoader.load_state_dict_from_file)
    if not getattr(ModelLoader.load_from_state_dict, 'lipt_wrapped', False):
        ModelLoader.load_from_state_dict = _wrap_load_from_state_dict(ModelLoader.load_from_state_dict)
