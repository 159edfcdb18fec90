"""Image files in and out through OpenCV, with one-line errors (:class:`ImageError`) for files that are not images.

Arrays are as OpenCV gives them: (H, W) grey or (H, W, C) BGR / BGRA, uint8 or uint16 (float32 TIFF too).
Paths may be non-ASCII (``np.fromfile`` + ``cv2.imdecode``).
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from lipt_arch.errors import ImageError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')  # the one list
DEEP_EXTENSIONS = ('.png', '.tif', '.tiff')  # can hold 16 bits per channel
ALPHA_EXTENSIONS = ('.png', '.tif', '.tiff', '.webp')
END_MARKERS = {'.png': b'IEND', '.jpg': b'\xff\xd9', '.jpeg': b'\xff\xd9'}
END_MARKER_SEARCH = 65536  # bytes from the end searched for the marker: writers may append data after it


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def check_extension(path: str | os.PathLike) -> str:
    """The lower-case extension of ``path``; :class:`ImageError` when it is not an image extension we handle."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        shown = repr(ext) if ext else 'none'
        known = ', '.join(IMAGE_EXTENSIONS)
        raise ImageError(f'{os.fspath(path)}: unknown image extension {shown} (use one of {known})')
    return ext


def lacks_end_marker(tail: bytes, ext: str) -> bool:
    """Whether a PNG / JPEG whose last bytes are ``tail`` misses its end marker (cut short, e.g. by an interrupted
    copy); False for other formats. JPEG byte stuffing keeps FFD9 unique."""
    marker = END_MARKERS.get(ext.lower())
    return marker is not None and marker not in tail


def file_is_truncated(path: str | os.PathLike) -> bool:
    """:func:`lacks_end_marker` for the file at ``path`` (reads only its last bytes)."""
    with open(path, 'rb') as f:
        f.seek(max(os.path.getsize(path) - END_MARKER_SEARCH, 0))
        return lacks_end_marker(f.read(), os.path.splitext(os.fspath(path))[1])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` unchanged (depth and alpha kept): (H, W) or (H, W, C), uint8 / uint16 / float32."""
    path = os.fspath(path)
    ext = check_extension(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(f'{path}: cannot read: {err.strerror or err}') from None
    if data.size == 0:
        raise ImageError(f'{path}: empty file (0 bytes)')
    if lacks_end_marker(data[-END_MARKER_SEARCH:].tobytes(), ext):
        raise ImageError(f'{path}: truncated {ext[1:].upper()} file (no end marker)')
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f'{path}: not a readable image (corrupt, truncated, or not a {ext[1:].upper()} file)')
    return img


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Encode ``img`` by the extension of ``path`` and write it (parent folder must exist)."""
    path = os.fspath(path)
    ext = check_extension(path)
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error as err:
        raise ImageError(f'{path}: OpenCV cannot encode a {img.dtype} {img.shape} image as {ext}: {err}') from None
    if not ok:
        raise ImageError(f'{path}: OpenCV cannot encode a {img.dtype} {img.shape} image as {ext}')
    try:
        buf.tofile(path)
    except OSError as err:
        raise ImageError(f'{path}: cannot write: {err.strerror or err}') from None


def fit_to_format(img: np.ndarray, ext: str) -> tuple[np.ndarray, list[str]]:
    """``img`` made storable as ``ext``: 16-bit reduced to 8 and alpha dropped where the format cannot hold them.

    Returns the array and a note per change (empty when nothing changed).
    """
    notes = []
    if img.dtype == np.uint16 and ext not in DEEP_EXTENSIONS:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
        notes.append(f'16-bit reduced to 8-bit ({ext} cannot hold 16 bits)')
    if img.dtype == np.float32 and ext not in ('.tif', '.tiff'):
        img = np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
        notes.append(f'float reduced to 8-bit ({ext})')
    if img.ndim == 3 and img.shape[2] == 4 and ext not in ALPHA_EXTENSIONS:
        img = np.ascontiguousarray(img[:, :, :3])
        notes.append(f'alpha dropped ({ext} has no alpha channel)')
    return img, notes
