"""Console scripts: ``basicsr`` (train/test through BasicSR) and ``lipt`` (inference, conversion, export)."""
