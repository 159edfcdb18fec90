"""The errors lipt_arch raises for bad user input: each carries one line that names the file, option or flag."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe, or not what the caller expects."""


class ImageError(ValueError):
    """An image file is missing, empty, truncated, not an image, or cannot be written."""


class OptionError(ValueError):
    """An option (YAML key or command-line flag) names something that does not exist or does not fit."""


class NonFiniteLossError(ArithmeticError):
    """A training loss or gradient is NaN or infinite; raised before the optimizer step changes the weights."""
