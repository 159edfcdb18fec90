"""Everything that adapts basicsr 1.4.2 to today's stack, from our side (basicsr's files are never edited):

- :mod:`.compat`: the torchvision module basicsr imports but torchvision 0.17 removed (runs before ``import basicsr``).
- :mod:`.fixes`: what basicsr gets wrong (resume on CPU, weights-only loading, gloo on CPU, ``--local-rank``,
  atomic saves, option checking right after parsing), installed into basicsr's modules by ``import lipt_arch``.
- :mod:`.resume`: exact resume (same batches and random crops as an uninterrupted run).
- :mod:`.ema`, :mod:`.fused_validation`, :mod:`.realesrgan`: BatchNorm-aware EMA, the fused LIPT in every model
  type's validation, RealESRNet / RealESRGAN on any device.
- :mod:`.registration`: imports our ``*_arch.py`` / ``*_dataset.py`` / ``*_model.py`` so they register.
- :mod:`.bundled_options`: the option files inside the package (``basicsr train -opt demo``).
- :mod:`.command`: the ``basicsr`` command (``basicsr train`` / ``basicsr test``) and ``python -m lipt_arch.train``.

Kept light: importing this package imports nothing of basicsr.
"""
